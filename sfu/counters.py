"""Node-wide media counters for the metrics endpoint, at no per-packet cost.

The per-packet path already counts on its own objects (a Receiver's packets,
a DownTrack's packets sent, a transport's SRTP errors): adding a second,
shared counter there would cost every packet. Instead a scrape sums the live
objects, and `MediaTotals` keeps what objects that are gone had counted, added
once when they close. Live plus retired gives counters that only grow, as
Prometheus counters must.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sfu.core.histogram import Histogram

if TYPE_CHECKING:
    from sfu.downtrack import DownTrack
    from sfu.publisher import Publisher
    from sfu.receiver import Receiver
    from sfu.subscriber import Subscriber
    from sfu.transport import PeerTransport

KINDS = ("audio", "video")
#: Why a packet was not forwarded (a bounded label set).
DROP_REASONS = (
    "duplicate",  # a Receiver saw the sequence number already
    "malformed_rtp",  # did not parse after SRTP
    "unroutable",  # no track for its SSRC/MID/RID
    "srtp",  # failed SRTP/SRTCP authentication or decryption
    "transport",  # datagrams the transport refused (before keys, not DTLS/STUN/RTP)
    "waiting_keyframe",  # a subscriber's stream waits for a keyframe to start
    "late",  # older than a switch point: would go back in time
    "temporal_layer",  # a VP8 temporal layer above what the subscriber gets
)
RTT_BOUNDS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0)
JITTER_BOUNDS_S = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32)
LOSS_BOUNDS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)


def _by_kind() -> dict[str, int]:
    return dict.fromkeys(KINDS, 0)


@dataclass(slots=True)
class MediaTotals:
    received_packets: dict[str, int] = field(default_factory=_by_kind)
    received_bytes: dict[str, int] = field(default_factory=_by_kind)
    forwarded_packets: dict[str, int] = field(default_factory=_by_kind)
    forwarded_bytes: dict[str, int] = field(default_factory=_by_kind)
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))
    #: From subscribers: NACKed packets, retransmissions answered, PLI/FIR.
    nacks_received: int = 0
    retransmissions: int = 0
    keyframe_requests_received: int = 0
    #: Towards publishers: NACKed packets and keyframe requests (PLI/FIR).
    nacks_sent: int = 0
    keyframe_requests_sent: int = 0
    layer_switches_up: int = 0
    layer_switches_down: int = 0
    #: Per subscriber stream, from its receiver reports.
    rtt_s: Histogram = field(default_factory=lambda: Histogram(RTT_BOUNDS_S))
    jitter_s: Histogram = field(default_factory=lambda: Histogram(JITTER_BOUNDS_S))
    loss_ratio: Histogram = field(default_factory=lambda: Histogram(LOSS_BOUNDS))

    # --- adding one object's counts -------------------------------------------

    def add_receiver(self, receiver: Receiver) -> None:
        kind = receiver.kind
        self.received_packets[kind] += receiver.packets
        self.received_bytes[kind] += receiver.bytes
        self.dropped["duplicate"] += receiver.duplicates
        self.nacks_sent += receiver.nacks_sent
        self.keyframe_requests_sent += receiver.keyframe_requests

    def add_downtrack(self, downtrack: DownTrack) -> None:
        kind = downtrack.kind
        self.forwarded_packets[kind] += downtrack.packets_sent
        self.forwarded_bytes[kind] += downtrack.octets_sent
        self.dropped["waiting_keyframe"] += downtrack.dropped_waiting_keyframe
        self.dropped["late"] += downtrack.dropped_late
        self.dropped["temporal_layer"] += downtrack.dropped_temporal
        self.nacks_received += downtrack.nacks_received
        self.retransmissions += downtrack.retransmitted
        self.keyframe_requests_received += downtrack.keyframe_requests
        self.layer_switches_up += downtrack.switches_up
        self.layer_switches_down += downtrack.switches_down

    def add_publisher(self, publisher: Publisher) -> None:
        """The publisher's own drops (its Receivers are added separately)."""
        self.dropped["malformed_rtp"] += publisher.malformed_rtp
        self.dropped["unroutable"] += publisher.unroutable
        self._add_transport(publisher.transport)

    def add_subscriber(self, subscriber: Subscriber) -> None:
        self._add_transport(subscriber.transport)

    def _add_transport(self, transport: PeerTransport) -> None:
        self.dropped["srtp"] += transport.srtp_errors
        self.dropped["transport"] += transport.dropped_datagrams

    # --- receiver reports ------------------------------------------------------

    def observe_report(self, rtt_ms: float | None, jitter_s: float, loss_fraction: float) -> None:
        if rtt_ms is not None:
            self.rtt_s.observe(rtt_ms / 1000)
        self.jitter_s.observe(jitter_s)
        self.loss_ratio.observe(loss_fraction)

    def copy(self) -> MediaTotals:
        out = MediaTotals()
        for name in (
            "received_packets",
            "received_bytes",
            "forwarded_packets",
            "forwarded_bytes",
            "dropped",
        ):
            getattr(out, name).update(getattr(self, name))
        for name in (
            "nacks_received",
            "retransmissions",
            "keyframe_requests_received",
            "nacks_sent",
            "keyframe_requests_sent",
            "layer_switches_up",
            "layer_switches_down",
        ):
            setattr(out, name, getattr(self, name))
        out.rtt_s.merge(self.rtt_s)
        out.jitter_s.merge(self.jitter_s)
        out.loss_ratio.merge(self.loss_ratio)
        return out
