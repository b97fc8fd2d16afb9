"""Prometheus metrics: what a node carries, how media flows, where it hurts.

Everything is read when Prometheus scrapes (a custom collector), from counters
the objects keep anyway (sfu.counters): a scrape costs a walk over the node's
peers, a packet costs nothing extra. Labels stay bounded: `node` on every
series, and `kind`, `reason`, `direction` or `code` from fixed sets, never a
room or participant id. docs/operations.md lists every metric.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from sfu.core.histogram import Histogram
from sfu.counters import DROP_REASONS, KINDS
from sfu.relay import RelayStats
from signaling.messages import ERROR_CODES

if TYPE_CHECKING:
    from sfu.engine import MediaEngine
    from signaling.cluster.membership import Membership
    from signaling.rooms import RoomManager

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LOOP_LAG_BOUNDS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
LOOP_PROBE_INTERVAL_S = 0.25


@dataclass(slots=True)
class SignalingStats:
    """Counted by the control plane as it goes (per message, not per packet)."""

    connections_total: int = 0
    errors: dict[str, int] = field(default_factory=lambda: dict.fromkeys(sorted(ERROR_CODES), 0))
    loop_lag_s: Histogram = field(default_factory=lambda: Histogram(LOOP_LAG_BOUNDS_S))
    last_loop_lag_s: float = 0.0

    def error(self, code: str) -> None:
        if code in self.errors:
            self.errors[code] += 1


async def watch_event_loop(stats: SignalingStats) -> None:
    """How late the event loop wakes a sleeper: everything on this node
    (packets, timers, signaling) waits at least that long."""
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        await asyncio.sleep(LOOP_PROBE_INTERVAL_S)
        lag_s = max(0.0, loop.time() - started - LOOP_PROBE_INTERVAL_S)
        stats.last_loop_lag_s = lag_s
        stats.loop_lag_s.observe(lag_s)


class NodeCollector(Collector):
    def __init__(
        self,
        node_id: str,
        engine: MediaEngine,
        rooms: RoomManager,
        membership: Membership,
        signaling: SignalingStats,
        sessions: set[object],
    ) -> None:
        self.node_id = node_id
        self.engine = engine
        self.rooms = rooms
        self.membership = membership
        self.signaling = signaling
        self.sessions = sessions

    def collect(self) -> Iterator[Metric]:
        node = self.node_id

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            family = GaugeMetricFamily(name, doc, labels=["node"])
            family.add_metric([node], value)
            return family

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            family = CounterMetricFamily(name, doc, labels=["node"])
            family.add_metric([node], value)
            return family

        def by(
            family: GaugeMetricFamily | CounterMetricFamily, values: dict[str, int]
        ) -> GaugeMetricFamily | CounterMetricFamily:
            for label, value in values.items():
                family.add_metric([node, label], value)
            return family

        def histogram(name: str, doc: str, hist: Histogram) -> HistogramMetricFamily:
            family = HistogramMetricFamily(name, doc, labels=["node"])
            buckets = [
                ("+Inf" if bound == float("inf") else repr(float(bound)), count)
                for bound, count in hist.cumulative()
            ]
            family.add_metric([node], buckets, hist.sum)
            return family

        # --- calls and people ------------------------------------------------
        rooms = self.rooms.rooms.values()
        yield gauge("sfu_rooms", "Rooms with at least one participant on this node.", len(rooms))
        yield gauge(
            "sfu_participants",
            "Participants connected to this node.",
            sum(len(r.participants) for r in rooms),
        )
        yield gauge(
            "sfu_remote_participants",
            "Participants of this node's rooms connected to other nodes.",
            sum(len(r.remote) for r in rooms),
        )
        published = dict.fromkeys(KINDS, 0)
        subscribed = dict.fromkeys(KINDS, 0)
        for peer in self.engine.peers.values():
            if peer.publisher is not None:
                for track in peer.publisher.tracks.values():
                    published[track.kind] += 1
            if peer.subscriber is not None:
                for downtrack in peer.subscriber.downtracks.values():
                    subscribed[downtrack.kind] += 1
        yield by(
            GaugeMetricFamily(
                "sfu_published_tracks",
                "Tracks published by participants on this node.",
                labels=["node", "kind"],
            ),
            published,
        )
        yield by(
            GaugeMetricFamily(
                "sfu_subscribed_tracks",
                "Tracks forwarded to subscribers on this node (DownTracks): the load figure.",
                labels=["node", "kind"],
            ),
            subscribed,
        )

        # --- media -------------------------------------------------------------
        totals = self.engine.media_totals()
        for name, doc, values in (
            (
                "sfu_rtp_received_packets",
                "RTP packets received from publishers and relays (duplicates excluded).",
                totals.received_packets,
            ),
            (
                "sfu_rtp_received_bytes",
                "RTP bytes received from publishers and relays.",
                totals.received_bytes,
            ),
            (
                "sfu_rtp_forwarded_packets",
                "RTP packets forwarded to subscribers (retransmissions excluded).",
                totals.forwarded_packets,
            ),
            (
                "sfu_rtp_forwarded_bytes",
                "RTP bytes forwarded to subscribers.",
                totals.forwarded_bytes,
            ),
        ):
            yield by(CounterMetricFamily(name, doc, labels=["node", "kind"]), values)
        yield by(
            CounterMetricFamily(
                "sfu_packets_dropped",
                "Packets not forwarded, by reason: " + ", ".join(DROP_REASONS) + ".",
                labels=["node", "reason"],
            ),
            totals.dropped,
        )
        yield counter(
            "sfu_nacks_received",
            "Packets subscribers reported lost (generic NACK, RFC 4585).",
            totals.nacks_received,
        )
        yield counter(
            "sfu_retransmissions",
            "Packets resent to subscribers from the cache in answer to NACKs.",
            totals.retransmissions,
        )
        yield counter(
            "sfu_keyframe_requests_received",
            "PLI and FIR received from subscribers.",
            totals.keyframe_requests_received,
        )
        yield counter(
            "sfu_nacks_sent",
            "Packets NACKed towards publishers (losses on their leg).",
            totals.nacks_sent,
        )
        yield counter(
            "sfu_keyframe_requests_sent",
            "PLI/FIR sent to publishers (throttled per track).",
            totals.keyframe_requests_sent,
        )
        yield by(
            CounterMetricFamily(
                "sfu_layer_switches",
                "Simulcast or temporal layer switches of subscribers' streams.",
                labels=["node", "direction"],
            ),
            {"up": totals.layer_switches_up, "down": totals.layer_switches_down},
        )
        yield histogram(
            "sfu_subscriber_rtt_seconds",
            "Round-trip time to subscribers, from their receiver reports (RFC 3550 §6.4.1).",
            totals.rtt_s,
        )
        yield histogram(
            "sfu_subscriber_jitter_seconds",
            "Interarrival jitter subscribers report.",
            totals.jitter_s,
        )
        yield histogram(
            "sfu_subscriber_loss_ratio",
            "Fraction of packets lost that subscribers report, per report.",
            totals.loss_ratio,
        )

        # --- signaling and the process -------------------------------------------
        yield gauge(
            "sfu_signaling_connections",
            "Open WebSocket signaling sessions.",
            len(self.sessions),
        )
        yield counter(
            "sfu_signaling_connections_opened",
            "WebSocket signaling sessions opened.",
            self.signaling.connections_total,
        )
        yield by(
            CounterMetricFamily(
                "sfu_signaling_errors",
                "Errors answered to clients, by protocol error code (docs/protocol.md §11).",
                labels=["node", "code"],
            ),
            self.signaling.errors,
        )
        yield histogram(
            "sfu_event_loop_lag_seconds",
            "How late the event loop woke a timer (every 250 ms).",
            self.signaling.loop_lag_s,
        )
        yield gauge(
            "sfu_event_loop_lag_last_seconds",
            "The last event loop lag measured.",
            self.signaling.last_loop_lag_s,
        )

        # --- cluster ---------------------------------------------------------------
        relay = self.engine.relay
        stats = relay.stats if relay is not None else RelayStats()  # zeros: no cluster
        yield by(
            GaugeMetricFamily(
                "sfu_relay_streams",
                "Tracks relayed to (out) or from (in) other nodes.",
                labels=["node", "direction"],
            ),
            {
                "out": stats.out_streams,
                "in": stats.in_streams,
            },
        )
        yield by(
            CounterMetricFamily(
                "sfu_relay_packets",
                "Datagrams on the relay between nodes.",
                labels=["node", "direction"],
            ),
            {
                "out": stats.packets_sent,
                "in": stats.packets_received,
            },
        )
        yield by(
            CounterMetricFamily(
                "sfu_relay_bytes",
                "Bytes on the relay between nodes.",
                labels=["node", "direction"],
            ),
            {
                "out": stats.bytes_sent,
                "in": stats.bytes_received,
            },
        )
        yield by(
            CounterMetricFamily(
                "sfu_relay_refused",
                "Relay datagrams refused: bad tag (not from this cluster), replayed, malformed.",
                labels=["node", "reason"],
            ),
            {
                "unauthenticated": stats.rejected,
                "replayed": stats.replayed,
                "malformed": stats.malformed,
            },
        )
        membership = self.membership
        shared = membership.shared
        yield gauge(
            "sfu_redis_up",
            "1 when the last Redis heartbeat succeeded (always 1 without Redis).",
            1 if not shared or getattr(membership, "connected", False) else 0,
        )
        yield gauge(
            "sfu_redis_rtt_seconds",
            "Duration of the last Redis heartbeat (a pipeline of three commands).",
            getattr(membership, "rtt_ms", 0.0) / 1000,
        )
        yield counter(
            "sfu_redis_errors",
            "Redis calls that failed (each one leads to a re-sync when Redis is back).",
            getattr(membership, "errors", 0),
        )


def make_registry(collector: NodeCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    with contextlib.suppress(Exception):  # /proc may be missing on other systems
        from prometheus_client import ProcessCollector

        ProcessCollector(registry=registry)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
