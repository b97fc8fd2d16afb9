"""Per-SSRC RTP reception and sending statistics for RTCP reports.

Implements the receiver-side bookkeeping of RFC 3550 §6.4.1 with the
algorithms of Appendix A.3 (expected/lost packets, fraction lost per report
interval) and A.8 (interarrival jitter), plus the LSR/DLSR fields that let the
media sender compute the round-trip time (RFC 3550 §6.4.1, "last SR
timestamp" and "delay since last SR").
"""

from __future__ import annotations

from typing import NamedTuple

from sfu.core.seqnum import TS_MASK, ts_diff

__all__ = ["ReceiveStats", "ReceptionReport", "SendStats"]

# RFC 3550 §6.4.1: cumulative number of packets lost is a signed 24-bit field.
_LOST_MAX = 0x7FFFFF
_LOST_MIN = -0x800000
_U32 = 0xFFFFFFFF


class ReceptionReport(NamedTuple):
    """Values of one report block, in the field order of ``rtcp.ReportBlock``.

    ``ReportBlock(*stats.report_block(ssrc, now_s))`` builds the wire object.
    """

    ssrc: int
    fraction_lost: int
    cumulative_lost: int
    highest_seq: int
    jitter: int
    lsr: int
    dlsr: int


class ReceiveStats:
    """Reception statistics of one received SSRC (RFC 3550 §6.4.1, A.3, A.8).

    Sequence numbers are extended (unwrapped) ones. The report's "extended
    highest sequence number" counts cycles from the first packet's cycle, so a
    caller whose unwrapper starts at ``2**16 + seq`` still reports cycle 0
    for the first cycle, as RFC 3550 §A.1 ``init_seq`` does.

    Jitter is only updated by packets that advance the highest sequence number
    and carry a new timestamp: a reordered or retransmitted packet measures the
    repair path, not the network's interarrival variation, and packets of one
    frame share a timestamp but are sent back to back (RFC 3550 §6.4.1 notes
    such packets skew the estimate).

    Memory bound: O(1).
    """

    __slots__ = (
        "_base",
        "_bytes",
        "_cycle_base",
        "_expected_prior",
        "_highest",
        "_jitter",
        "_last_arrival_s",
        "_last_ts",
        "_loss_fraction",
        "_packets",
        "_received_prior",
        "_sr_arrival_s",
        "_sr_lsr",
        "clock_rate",
    )

    def __init__(self, clock_rate: int) -> None:
        if clock_rate <= 0:
            raise ValueError(f"clock_rate must be positive, got {clock_rate}")
        self.clock_rate = clock_rate
        self._packets = 0
        self._bytes = 0
        self._base = -1
        self._highest = -1
        self._cycle_base = 0
        self._expected_prior = 0
        self._received_prior = 0
        self._loss_fraction = 0.0
        # Jitter state, in RTP timestamp units (RFC 3550 §A.8 keeps it as a
        # float-like value scaled by 16; a Python float does the same job).
        self._jitter = 0.0
        self._last_ts = -1
        self._last_arrival_s = 0.0
        self._sr_lsr = 0
        self._sr_arrival_s = 0.0

    def on_packet(
        self, ext_seq: int, rtp_timestamp: int, arrival_s: float, size_bytes: int
    ) -> None:
        """Account one received packet (``arrival_s`` on the local clock)."""
        self._packets += 1
        self._bytes += size_bytes
        if self._packets == 1:
            self._base = ext_seq
            self._highest = ext_seq
            self._cycle_base = ext_seq & ~0xFFFF
            self._last_ts = rtp_timestamp
            self._last_arrival_s = arrival_s
            return
        if ext_seq <= self._highest:
            if ext_seq < self._base:
                # Reordered at stream start: the stream really began earlier.
                self._base = ext_seq
            return
        self._highest = ext_seq
        if rtp_timestamp == self._last_ts:
            return
        # RFC 3550 §A.8: D(i-1,i) = (Rj - Ri) - (Sj - Si), in timestamp units.
        # ts_diff keeps the sender-side difference right across a 32-bit wrap.
        d = (arrival_s - self._last_arrival_s) * self.clock_rate - ts_diff(
            rtp_timestamp, self._last_ts
        )
        if d < 0:
            d = -d
        self._jitter += (d - self._jitter) / 16.0
        self._last_ts = rtp_timestamp
        self._last_arrival_s = arrival_s

    def on_sender_report(self, ntp_timestamp: int, arrival_s: float) -> None:
        """Remember a received SR's NTP time (64-bit) and local arrival time."""
        # RFC 3550 §6.4.1 LSR: the middle 32 bits of the 64-bit NTP timestamp.
        self._sr_lsr = (ntp_timestamp >> 16) & _U32
        self._sr_arrival_s = arrival_s

    def report_block(self, ssrc: int, now_s: float) -> ReceptionReport:
        """Build a report block and start a new report interval (RFC 3550 §A.3).

        ``fraction_lost`` covers the packets expected since the previous call;
        calling this therefore resets the interval.
        """
        if self._packets:
            expected = self._highest - self._base + 1
        else:
            expected = 0
        received = self._packets
        lost = expected - received
        if lost > _LOST_MAX:
            lost = _LOST_MAX
        elif lost < _LOST_MIN:
            lost = _LOST_MIN
        expected_interval = expected - self._expected_prior
        self._expected_prior = expected
        received_interval = received - self._received_prior
        self._received_prior = received
        lost_interval = expected_interval - received_interval
        if expected_interval <= 0 or lost_interval <= 0:
            fraction = 0
            self._loss_fraction = 0.0
        else:
            # A.3: (lost_interval << 8) / expected_interval, an 8-bit fixed
            # point fraction; lost_interval <= expected_interval keeps it <= 256
            # and the only way to reach 256 is losing everything, so clamp.
            fraction = (lost_interval << 8) // expected_interval
            if fraction > 255:
                fraction = 255
            self._loss_fraction = lost_interval / expected_interval
        if self._packets:
            highest_seq = (self._highest - self._cycle_base) & _U32
        else:
            highest_seq = 0
        lsr = self._sr_lsr
        if lsr:
            # DLSR in units of 1/65536 s (RFC 3550 §6.4.1).
            dlsr = int((now_s - self._sr_arrival_s) * 65536.0)
            if dlsr < 0:
                dlsr = 0
            elif dlsr > _U32:
                dlsr = _U32
        else:
            dlsr = 0
        return ReceptionReport(ssrc, fraction, lost, highest_seq, int(self._jitter), lsr, dlsr)

    @property
    def packets(self) -> int:
        """Packets received, duplicates included (RFC 3550 §A.3 ``received``)."""
        return self._packets

    @property
    def bytes(self) -> int:
        """Sum of ``size_bytes`` of all received packets."""
        return self._bytes

    @property
    def highest_ext_seq(self) -> int | None:
        """Highest extended sequence number received (None before any)."""
        return self._highest if self._packets else None

    @property
    def cumulative_lost(self) -> int:
        """Expected minus received so far, unclamped (negative with duplicates)."""
        if not self._packets:
            return 0
        return self._highest - self._base + 1 - self._packets

    @property
    def loss_fraction(self) -> float:
        """Fraction (0.0..1.0) lost in the interval ended by the last report."""
        return self._loss_fraction

    @property
    def jitter(self) -> float:
        """Interarrival jitter estimate in RTP timestamp units."""
        return self._jitter

    @property
    def jitter_ms(self) -> float:
        """Interarrival jitter estimate in milliseconds."""
        return self._jitter * 1000.0 / self.clock_rate


class SendStats:
    """Packet and octet counts of one sent SSRC, for sender reports.

    RFC 3550 §6.4.1: the SR octet count excludes the RTP header and padding,
    so pass the payload size. The SR fields are 32-bit and wrap; the writer
    takes the counts modulo 2**32 (see :attr:`packet_count` /
    :attr:`octet_count`).

    Memory bound: O(1).
    """

    __slots__ = ("octets", "packets")

    def __init__(self) -> None:
        self.packets = 0
        self.octets = 0

    def on_packet(self, size_bytes: int) -> None:
        """Count one sent packet carrying ``size_bytes`` payload octets."""
        self.packets += 1
        self.octets += size_bytes

    @property
    def packet_count(self) -> int:
        """Sender's packet count as carried in an SR (mod 2**32)."""
        return self.packets & TS_MASK

    @property
    def octet_count(self) -> int:
        """Sender's octet count as carried in an SR (mod 2**32)."""
        return self.octets & TS_MASK
