"""RTCP parsing and building.

Covers what an SFU needs to read and write:

* RFC 3550 §6.4-6.6: SR, RR, SDES, BYE,
* RFC 4585 §6: generic NACK (RTPFB FMT 1) and PLI (PSFB FMT 1),
* RFC 5104 §4.3.1: FIR (PSFB FMT 4),
* draft-alvestrand-rmcat-remb-03: REMB (PSFB FMT 15, "REMB" identifier),
* draft-holmer-rmcat-transport-wide-cc-extensions-01: transport-cc feedback
  (RTPFB FMT 15), kept opaque for the congestion controller,
* RFC 3550 §6.4.1 NTP timestamp and round-trip-time arithmetic.

Anything else (XR, APP, unknown feedback formats) is returned as
:class:`UnknownRtcp` so that nothing in a compound packet is silently lost.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

__all__ = [
    "Bye",
    "Fir",
    "Nack",
    "Pli",
    "ReceiverReport",
    "Remb",
    "ReportBlock",
    "RtcpError",
    "RtcpPacket",
    "SenderReport",
    "SourceDescription",
    "TransportCc",
    "UnknownRtcp",
    "ntp_from_unix",
    "ntp_middle32",
    "pack_bye",
    "pack_fir",
    "pack_nack",
    "pack_pli",
    "pack_receiver_report",
    "pack_remb",
    "pack_sdes_cname",
    "pack_sender_report",
    "parse_compound",
    "rtt_from_report",
    "unix_from_ntp",
]

# RFC 3550 §12.1 packet types, RFC 4585 §6.1 feedback types, RFC 3611 XR.
PT_SR = 200
PT_RR = 201
PT_SDES = 202
PT_BYE = 203
PT_APP = 204
PT_RTPFB = 205
PT_PSFB = 206
PT_XR = 207

# RFC 4585 §6.2 / §6.3 feedback message types (FMT).
FMT_NACK = 1
FMT_TRANSPORT_CC = 15
FMT_PLI = 1
FMT_FIR = 4
FMT_AFB = 15

SDES_CNAME = 1

# RFC 3550 §6.4.1: RC is 5 bits.
MAX_REPORT_BLOCKS = 31

# RFC 3550 §6.1 common header: V/P/count octet, PT, length in 32-bit words minus one.
_HDR = struct.Struct("!BBH")
# RFC 3550 §6.4.1 sender info preceded by the sender SSRC.
_SR_INFO = struct.Struct("!IQIII")
# RFC 3550 §6.4.1 report block: SSRC, fraction|cumulative, ext seq, jitter, LSR, DLSR.
_BLOCK = struct.Struct("!IIIIII")
_U32 = struct.Struct("!I")
_U32X2 = struct.Struct("!II")
# RFC 4585 §6.2.1 generic NACK FCI entry: PID, BLP.
_NACK_ITEM = struct.Struct("!HH")
# RFC 5104 §4.3.1.1 FIR FCI entry: SSRC, Seq nr, 24 reserved bits.
_FIR_ITEM = struct.Struct("!IB3x")
# draft-alvestrand-rmcat-remb-03 §2.2: "REMB", then Num SSRC | BR Exp | BR Mantissa.
_REMB = struct.Struct("!4sI")

_REMB_ID = b"REMB"
_REMB_MAX_EXP = 63

# RFC 868 / RFC 5905: seconds between the NTP epoch (1900) and the Unix epoch (1970).
_NTP_UNIX_OFFSET = 2_208_988_800
_TWO_32 = 4_294_967_296.0
_MASK32 = 0xFFFFFFFF
_MASK64 = 0xFFFFFFFFFFFFFFFF


class RtcpError(ValueError):
    """Raised for malformed RTCP packets or unencodable RTCP fields."""


@dataclass(slots=True)
class ReportBlock:
    """RFC 3550 §6.4.1 reception report block."""

    ssrc: int
    fraction_lost: int
    cumulative_lost: int  # signed 24-bit value
    highest_seq: int  # extended highest sequence number received
    jitter: int
    lsr: int
    dlsr: int


@dataclass(slots=True)
class SenderReport:
    """RFC 3550 §6.4.1 SR; ``ntp_timestamp`` is the full 64-bit value."""

    ssrc: int
    ntp_timestamp: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: list[ReportBlock] = field(default_factory=list)


@dataclass(slots=True)
class ReceiverReport:
    """RFC 3550 §6.4.2 RR."""

    ssrc: int
    reports: list[ReportBlock] = field(default_factory=list)


@dataclass(slots=True)
class SourceDescription:
    """RFC 3550 §6.5 SDES: ``(ssrc, [(item_type, value), ...])`` per chunk."""

    chunks: list[tuple[int, list[tuple[int, bytes]]]] = field(default_factory=list)

    def cname(self, ssrc: int) -> bytes | None:
        """Return the CNAME item (type 1) of the chunk for ``ssrc``, if any."""
        for chunk_ssrc, items in self.chunks:
            if chunk_ssrc == ssrc:
                for item_type, value in items:
                    if item_type == SDES_CNAME:
                        return value
        return None


@dataclass(slots=True)
class Bye:
    """RFC 3550 §6.6 BYE."""

    ssrcs: list[int]
    reason: bytes = b""


@dataclass(slots=True)
class Nack:
    """RFC 4585 §6.2.1 generic NACK, expanded to the lost sequence numbers."""

    sender_ssrc: int
    media_ssrc: int
    lost: list[int]


@dataclass(slots=True)
class Pli:
    """RFC 4585 §6.3.1 Picture Loss Indication."""

    sender_ssrc: int
    media_ssrc: int


@dataclass(slots=True)
class Fir:
    """RFC 5104 §4.3.1 Full Intra Request: ``(ssrc, command seq nr)`` entries."""

    sender_ssrc: int
    entries: list[tuple[int, int]]


@dataclass(slots=True)
class Remb:
    """draft-alvestrand-rmcat-remb-03 Receiver Estimated Maximum Bitrate."""

    sender_ssrc: int
    bitrate_bps: int
    ssrcs: list[int]


@dataclass(slots=True)
class TransportCc:
    """Transport-wide congestion control feedback (RTPFB FMT 15), FCI kept opaque."""

    sender_ssrc: int
    media_ssrc: int
    body: bytes


@dataclass(slots=True)
class UnknownRtcp:
    """Any other RTCP packet; ``body`` is everything after the 4-byte header,
    padding excluded. ``fmt`` is the 5-bit count/FMT/subtype field."""

    packet_type: int
    fmt: int
    body: bytes


RtcpPacket = (
    SenderReport
    | ReceiverReport
    | SourceDescription
    | Bye
    | Nack
    | Pli
    | Fir
    | Remb
    | TransportCc
    | UnknownRtcp
)


# --------------------------------------------------------------------------- parsing


def parse_compound(data: bytes) -> list[RtcpPacket]:
    """Parse every RTCP packet of a (compound or RFC 5506 reduced-size) datagram.

    Validates the version, that each packet's length fits in the datagram,
    padding, and the per-type layouts. Raises :class:`RtcpError` on any
    malformed packet.
    """
    n = len(data)
    if n == 0:
        raise RtcpError("empty RTCP datagram")
    out: list[RtcpPacket] = []
    pos = 0
    while pos < n:
        if pos + 4 > n:
            raise RtcpError(f"RTCP header truncated at offset {pos}: {n - pos} bytes left")
        b0, pt, words = _HDR.unpack_from(data, pos)
        if b0 >> 6 != 2:
            raise RtcpError(f"RTCP version is {b0 >> 6} at offset {pos}, expected 2")
        # RFC 3550 §6.4.1: length is in 32-bit words minus one, header included.
        end = pos + 4 * (words + 1)
        if end > n:
            raise RtcpError(
                f"RTCP packet type {pt} at offset {pos} declares {4 * (words + 1)} bytes, "
                f"only {n - pos} left"
            )
        start = pos + 4
        stop = end
        if b0 & 0x20:
            # RFC 3550 §6.4.1: the last octet of a padded packet counts the
            # padding octets, itself included.
            pad = data[end - 1]
            if pad == 0:
                raise RtcpError(f"RTCP padding count is 0 in packet type {pt}")
            if pad > end - start:
                raise RtcpError(
                    f"RTCP padding count {pad} exceeds the {end - start}-byte body "
                    f"of packet type {pt}"
                )
            stop = end - pad
        count = b0 & 0x1F
        if pt == PT_SR:
            out.append(_parse_sr(data, start, stop, count))
        elif pt == PT_RR:
            out.append(_parse_rr(data, start, stop, count))
        elif pt == PT_SDES:
            out.append(_parse_sdes(data, start, stop, count))
        elif pt == PT_BYE:
            out.append(_parse_bye(data, start, stop, count))
        elif pt == PT_RTPFB:
            out.append(_parse_rtpfb(data, start, stop, count))
        elif pt == PT_PSFB:
            out.append(_parse_psfb(data, start, stop, count))
        else:
            out.append(UnknownRtcp(pt, count, data[start:stop]))
        pos = end
    return out


def _parse_blocks(data: bytes, pos: int, count: int) -> list[ReportBlock]:
    # Caller has checked that count blocks fit.
    blocks: list[ReportBlock] = []
    for _ in range(count):
        ssrc, lost_word, highest, jitter, lsr, dlsr = _BLOCK.unpack_from(data, pos)
        cumulative = lost_word & 0xFFFFFF
        if cumulative & 0x800000:
            # RFC 3550 §6.4.1: cumulative number of packets lost is a signed
            # 24-bit integer (duplicates can make it negative).
            cumulative -= 0x1000000
        blocks.append(ReportBlock(ssrc, lost_word >> 24, cumulative, highest, jitter, lsr, dlsr))
        pos += _BLOCK.size
    return blocks


def _parse_sr(data: bytes, start: int, stop: int, rc: int) -> SenderReport:
    need = _SR_INFO.size + rc * _BLOCK.size
    if stop - start < need:
        raise RtcpError(f"RTCP SR truncated: RC={rc} needs {need} body bytes, have {stop - start}")
    ssrc, ntp, rtp_ts, packets, octets = _SR_INFO.unpack_from(data, start)
    # RFC 3550 §6.4.1: bytes after the report blocks are a profile-specific
    # extension; they are ignored here.
    return SenderReport(
        ssrc, ntp, rtp_ts, packets, octets, _parse_blocks(data, start + _SR_INFO.size, rc)
    )


def _parse_rr(data: bytes, start: int, stop: int, rc: int) -> ReceiverReport:
    need = 4 + rc * _BLOCK.size
    if stop - start < need:
        raise RtcpError(f"RTCP RR truncated: RC={rc} needs {need} body bytes, have {stop - start}")
    (ssrc,) = _U32.unpack_from(data, start)
    return ReceiverReport(ssrc, _parse_blocks(data, start + 4, rc))


def _parse_sdes(data: bytes, start: int, stop: int, sc: int) -> SourceDescription:
    chunks: list[tuple[int, list[tuple[int, bytes]]]] = []
    pos = start
    for _ in range(sc):
        if pos + 4 > stop:
            raise RtcpError("RTCP SDES chunk truncated: no room for its SSRC")
        (ssrc,) = _U32.unpack_from(data, pos)
        pos += 4
        items: list[tuple[int, bytes]] = []
        while True:
            if pos >= stop:
                raise RtcpError(f"RTCP SDES chunk for SSRC {ssrc:#010x} has no end-of-list item")
            item_type = data[pos]
            if item_type == 0:
                # RFC 3550 §6.5: a null octet ends the item list; more null
                # octets pad the chunk to the next 32-bit boundary. Packets
                # start 32-bit aligned in the datagram, so align absolutely.
                pos = (pos + 4) & ~3
                if pos > stop:
                    raise RtcpError(
                        f"RTCP SDES chunk for SSRC {ssrc:#010x} padding overruns the packet"
                    )
                break
            if pos + 2 > stop:
                raise RtcpError(f"RTCP SDES item type {item_type} has no length octet")
            value_end = pos + 2 + data[pos + 1]
            if value_end > stop:
                raise RtcpError(f"RTCP SDES item type {item_type} overruns the packet")
            items.append((item_type, data[pos + 2 : value_end]))
            pos = value_end
        chunks.append((ssrc, items))
    return SourceDescription(chunks)


def _parse_bye(data: bytes, start: int, stop: int, sc: int) -> Bye:
    pos = start + 4 * sc
    if pos > stop:
        raise RtcpError(
            f"RTCP BYE truncated: SC={sc} needs {4 * sc} body bytes, have {stop - start}"
        )
    ssrcs = [_U32.unpack_from(data, start + 4 * i)[0] for i in range(sc)]
    reason = b""
    if pos < stop:
        # RFC 3550 §6.6: optional length-prefixed reason, then null padding.
        reason_end = pos + 1 + data[pos]
        if reason_end > stop:
            raise RtcpError("RTCP BYE reason overruns the packet")
        reason = data[pos + 1 : reason_end]
    return Bye(ssrcs, reason)


def _feedback_ssrcs(data: bytes, start: int, stop: int, kind: str) -> tuple[int, int]:
    # RFC 4585 §6.1: every feedback message starts with sender and media SSRC.
    if stop - start < 8:
        raise RtcpError(f"RTCP {kind} truncated: {stop - start} body bytes, SSRCs need 8")
    return _U32X2.unpack_from(data, start)


def _parse_rtpfb(data: bytes, start: int, stop: int, fmt: int) -> RtcpPacket:
    sender, media = _feedback_ssrcs(data, start, stop, "RTPFB")
    fci = start + 8
    if fmt == FMT_NACK:
        fci_len = stop - fci
        # RFC 4585 §6.2.1: the FCI holds at least one 32-bit PID/BLP entry.
        if fci_len < 4 or fci_len % 4:
            raise RtcpError(f"RTCP NACK FCI is {fci_len} bytes, expected a non-zero multiple of 4")
        lost: list[int] = []
        for off in range(fci, stop, 4):
            pid, blp = _NACK_ITEM.unpack_from(data, off)
            lost.append(pid)
            # RFC 4585 §6.2.1: bit i of BLP (LSB = bit 0) reports PID + i + 1 lost.
            i = 0
            while blp:
                if blp & 1:
                    lost.append((pid + i + 1) & 0xFFFF)
                blp >>= 1
                i += 1
        return Nack(sender, media, lost)
    if fmt == FMT_TRANSPORT_CC:
        return TransportCc(sender, media, data[fci:stop])
    return UnknownRtcp(PT_RTPFB, fmt, data[start:stop])


def _parse_psfb(data: bytes, start: int, stop: int, fmt: int) -> RtcpPacket:
    sender, media = _feedback_ssrcs(data, start, stop, "PSFB")
    fci = start + 8
    if fmt == FMT_PLI:
        # RFC 4585 §6.3.1: PLI carries no FCI; trailing bytes are tolerated.
        return Pli(sender, media)
    if fmt == FMT_FIR:
        fci_len = stop - fci
        # RFC 5104 §4.3.1.1: one or more 8-byte entries; media SSRC is unused.
        if fci_len < 8 or fci_len % 8:
            raise RtcpError(f"RTCP FIR FCI is {fci_len} bytes, expected a non-zero multiple of 8")
        entries = [_FIR_ITEM.unpack_from(data, off) for off in range(fci, stop, 8)]
        return Fir(sender, entries)
    if fmt == FMT_AFB and stop - fci >= 4 and data[fci : fci + 4] == _REMB_ID:
        # draft-alvestrand-rmcat-remb-03 §2.2: identifier, then one word of
        # Num SSRC (8) | BR Exp (6) | BR Mantissa (18), then the SSRC list.
        if stop - fci < _REMB.size:
            raise RtcpError("RTCP REMB truncated: no room for the bitrate word")
        _, word = _REMB.unpack_from(data, fci)
        num = word >> 24
        ssrc_pos = fci + _REMB.size
        if ssrc_pos + 4 * num > stop:
            raise RtcpError(f"RTCP REMB truncated: {num} SSRCs do not fit")
        bitrate = (word & 0x3FFFF) << ((word >> 18) & 0x3F)
        ssrcs = [_U32.unpack_from(data, ssrc_pos + 4 * i)[0] for i in range(num)]
        return Remb(sender, bitrate, ssrcs)
    return UnknownRtcp(PT_PSFB, fmt, data[start:stop])


# --------------------------------------------------------------------------- building


def _pack(st: struct.Struct, what: str, *values: int | bytes) -> bytes:
    try:
        return st.pack(*values)
    except struct.error as exc:
        raise RtcpError(f"RTCP {what} field out of range: {exc}") from None


def _header(count: int, pt: int, total_len: int) -> bytes:
    # RFC 3550 §6.4.1: V=2, no padding, length = 32-bit words minus one.
    return _pack(_HDR, "header length", 0x80 | count, pt, total_len // 4 - 1)


def _pack_blocks(reports: Sequence[ReportBlock]) -> bytes:
    if len(reports) > MAX_REPORT_BLOCKS:
        raise RtcpError(
            f"{len(reports)} report blocks exceed the RC limit of {MAX_REPORT_BLOCKS}; split them"
        )
    parts: list[bytes] = []
    for rb in reports:
        if not 0 <= rb.fraction_lost <= 255:
            raise RtcpError(f"RTCP fraction lost {rb.fraction_lost} outside 0..255")
        # RFC 3550 Appendix A.3: clamp cumulative loss to the signed 24-bit range.
        lost = min(max(rb.cumulative_lost, -0x800000), 0x7FFFFF) & 0xFFFFFF
        parts.append(
            _pack(
                _BLOCK,
                "report block",
                rb.ssrc,
                (rb.fraction_lost << 24) | lost,
                rb.highest_seq,
                rb.jitter,
                rb.lsr,
                rb.dlsr,
            )
        )
    return b"".join(parts)


def pack_sender_report(
    ssrc: int,
    ntp_timestamp: int,
    rtp_timestamp: int,
    packet_count: int,
    octet_count: int,
    reports: Sequence[ReportBlock] = (),
) -> bytes:
    """Build an RFC 3550 §6.4.1 SR (at most 31 report blocks)."""
    blocks = _pack_blocks(reports)
    info = _pack(_SR_INFO, "SR", ssrc, ntp_timestamp, rtp_timestamp, packet_count, octet_count)
    return _header(len(reports), PT_SR, 4 + len(info) + len(blocks)) + info + blocks


def pack_receiver_report(ssrc: int, reports: Sequence[ReportBlock]) -> bytes:
    """Build an RFC 3550 §6.4.2 RR (at most 31 report blocks)."""
    blocks = _pack_blocks(reports)
    return _header(len(reports), PT_RR, 8 + len(blocks)) + _pack(_U32, "RR SSRC", ssrc) + blocks


def pack_sdes_cname(ssrc: int, cname: bytes) -> bytes:
    """Build an RFC 3550 §6.5 SDES with one chunk holding one CNAME item."""
    if len(cname) > 255:
        raise RtcpError(f"RTCP CNAME of {len(cname)} bytes exceeds 255")
    # RFC 3550 §6.5: type, length, text, then 1-4 null octets (end of list
    # plus padding) so the chunk ends on a 32-bit boundary.
    item_len = 2 + len(cname)
    nulls = 4 - item_len % 4
    chunk = b"".join(
        (_pack(_U32, "SDES SSRC", ssrc), bytes((SDES_CNAME, len(cname))), cname, bytes(nulls))
    )
    return _header(1, PT_SDES, 4 + len(chunk)) + chunk


def pack_bye(ssrcs: Sequence[int], reason: bytes = b"") -> bytes:
    """Build an RFC 3550 §6.6 BYE for up to 31 SSRCs with an optional reason."""
    if len(ssrcs) > 31:
        raise RtcpError(f"RTCP BYE with {len(ssrcs)} SSRCs exceeds the SC limit of 31")
    if len(reason) > 255:
        raise RtcpError(f"RTCP BYE reason of {len(reason)} bytes exceeds 255")
    parts = [_pack(_U32, "BYE SSRC", s) for s in ssrcs]
    if reason:
        # RFC 3550 §6.6: length octet + text, null-padded to 32 bits.
        parts.append(bytes((len(reason),)))
        parts.append(reason)
        parts.append(bytes(-(1 + len(reason)) % 4))
    body = b"".join(parts)
    return _header(len(ssrcs), PT_BYE, 4 + len(body)) + body


def pack_nack(sender_ssrc: int, media_ssrc: int, lost: Iterable[int]) -> bytes:
    """Build an RFC 4585 §6.2.1 generic NACK for the 16-bit sequence numbers in ``lost``.

    Duplicates are dropped. Numbers are ordered along the 16-bit circle
    starting after the largest gap, so a run crossing 65535 -> 0 shares
    PID/BLP entries instead of being split at the wrap.
    """
    seqs = sorted(set(lost))
    if not seqs:
        raise RtcpError("RTCP NACK needs at least one lost sequence number")
    if seqs[0] < 0 or seqs[-1] > 0xFFFF:
        raise RtcpError(f"RTCP NACK sequence numbers must be 0..65535, got {seqs[0]}..{seqs[-1]}")
    if len(seqs) > 1:
        # Start at the element following the widest circular gap; the gap
        # from the last back round to the first wins ties (no rotation).
        best_i = 0
        best_gap = seqs[0] + 0x10000 - seqs[-1]
        for i in range(1, len(seqs)):
            gap = seqs[i] - seqs[i - 1]
            if gap > best_gap:
                best_gap = gap
                best_i = i
        if best_i:
            seqs = seqs[best_i:] + seqs[:best_i]
    items: list[bytes] = []
    pid = seqs[0]
    blp = 0
    for seq in seqs[1:]:
        delta = (seq - pid) & 0xFFFF
        if delta <= 16:
            # RFC 4585 §6.2.1: bit i of BLP reports PID + i + 1.
            blp |= 1 << (delta - 1)
        else:
            items.append(_NACK_ITEM.pack(pid, blp))
            pid = seq
            blp = 0
    items.append(_NACK_ITEM.pack(pid, blp))
    fci = b"".join(items)
    return (
        _header(FMT_NACK, PT_RTPFB, 12 + len(fci))
        + _pack(_U32X2, "NACK SSRC", sender_ssrc, media_ssrc)
        + fci
    )


def pack_pli(sender_ssrc: int, media_ssrc: int) -> bytes:
    """Build an RFC 4585 §6.3.1 PLI (no FCI, length 2)."""
    return _header(FMT_PLI, PT_PSFB, 12) + _pack(_U32X2, "PLI SSRC", sender_ssrc, media_ssrc)


def pack_fir(sender_ssrc: int, entries: Iterable[tuple[int, int]]) -> bytes:
    """Build an RFC 5104 §4.3.1 FIR with ``(ssrc, command seq nr)`` entries."""
    fci = b"".join(_pack(_FIR_ITEM, "FIR entry", ssrc, seq_nr) for ssrc, seq_nr in entries)
    if not fci:
        raise RtcpError("RTCP FIR needs at least one entry")
    # RFC 5104 §4.3.1.2: the media source SSRC field is unused and set to 0.
    return (
        _header(FMT_FIR, PT_PSFB, 12 + len(fci)) + _pack(_U32X2, "FIR SSRC", sender_ssrc, 0) + fci
    )


def pack_remb(sender_ssrc: int, bitrate_bps: int, ssrcs: Sequence[int]) -> bytes:
    """Build a REMB (draft-alvestrand-rmcat-remb-03 §2.2).

    The bitrate is encoded as an 18-bit mantissa times 2^exp (6-bit exponent)
    with the smallest exponent that fits, rounding the mantissa down so the
    advertised value never exceeds ``bitrate_bps``.
    """
    bitrate = int(bitrate_bps)
    if bitrate < 0:
        raise RtcpError(f"REMB bitrate {bitrate_bps} is negative")
    if len(ssrcs) > 255:
        raise RtcpError(f"REMB with {len(ssrcs)} SSRCs exceeds the 8-bit Num SSRC field")
    exp = max(0, bitrate.bit_length() - 18)
    if exp > _REMB_MAX_EXP:
        raise RtcpError(f"REMB bitrate {bitrate_bps} does not fit 18-bit mantissa * 2^63")
    mantissa = bitrate >> exp
    word = (len(ssrcs) << 24) | (exp << 18) | mantissa
    body = b"".join(
        [
            _pack(_U32X2, "REMB SSRC", sender_ssrc, 0),
            _REMB.pack(_REMB_ID, word),
            *(_pack(_U32, "REMB SSRC", s) for s in ssrcs),
        ]
    )
    # draft-alvestrand-rmcat-remb-03 §2.2: PSFB FMT 15 (application layer FB).
    return _header(FMT_AFB, PT_PSFB, 4 + len(body)) + body


# --------------------------------------------------------------------------- NTP time


def ntp_from_unix(unix_s: float) -> int:
    """Convert Unix seconds to a 64-bit NTP timestamp (RFC 3550 §4: 32.32 since 1900).

    The seconds field wraps modulo 2^32 (era 1 starts in 2036).
    """
    sec = math.floor(unix_s)
    # Scaling by 2^32 is exact in binary floating point, so frac < 2^32.
    frac = int((unix_s - sec) * _TWO_32)
    return (((sec + _NTP_UNIX_OFFSET) << 32) | frac) & _MASK64


def unix_from_ntp(ntp: int) -> float:
    """Convert a 64-bit NTP timestamp back to Unix seconds.

    Follows RFC 4330 §3: a seconds field with the top bit clear is taken to be
    in era 1 (2036-2104), so round trips work across the 2036 rollover.
    """
    sec = (ntp >> 32) & _MASK32
    if not sec & 0x80000000:
        sec += 1 << 32
    return (sec - _NTP_UNIX_OFFSET) + (ntp & _MASK32) / _TWO_32


def ntp_middle32(ntp: int) -> int:
    """Middle 32 bits of a 64-bit NTP timestamp (RFC 3550 §6.4.1 LSR form, 1/65536 s)."""
    return (ntp >> 16) & _MASK32


def rtt_from_report(lsr: int, dlsr: int, arrival_ntp_middle32: int) -> float | None:
    """Round-trip time in seconds from a report block (RFC 3550 §6.4.1).

    RTT = A - LSR - DLSR, all in 1/65536 s units, computed modulo 2^32 so a
    wrap of the middle-32 clock between SR and RR is harmless. Returns None
    when LSR is 0 (no SR received yet) or the result is negative.
    """
    if lsr == 0:
        return None
    rtt = (arrival_ntp_middle32 - lsr - dlsr) & _MASK32
    if rtt & 0x80000000:
        return None
    return rtt / 65536.0
