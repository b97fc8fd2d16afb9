"""MediaEngine: the media plane of one node, as the control plane sees it.

It owns the DTLS certificate, the peers (one per connected participant, each with
a lazily created publisher and subscriber transport), and a single timer task for
everything periodic (NACK retries, keyframe re-requests, sender and receiver
reports). One task per node, not per stream: a node with hundreds of streams
wakes 20 times a second, not thousands.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sfu import aiortc_adapter
from sfu.counters import MediaTotals
from sfu.publisher import MediaLimits, Publisher
from sfu.relay import Relay
from sfu.subscriber import Subscriber
from sfu.transport import TransportConfig

logger = logging.getLogger(__name__)

TransportStateHandler = Callable[[str, str], None]


@dataclass(frozen=True, slots=True)
class MediaConfig:
    transport: TransportConfig = field(default_factory=TransportConfig)
    limits: MediaLimits = field(default_factory=MediaLimits)
    tick_interval_s: float = 0.05
    report_interval_s: float = 1.0


class Peer:
    """The media side of one participant."""

    def __init__(
        self, engine: MediaEngine, peer_id: str, on_transport_state: TransportStateHandler
    ) -> None:
        self.id = peer_id
        self._engine = engine
        self._on_transport_state = on_transport_state
        self.publisher: Publisher | None = None
        self.subscriber: Subscriber | None = None
        self.closed = False

    def ensure_publisher(self) -> Publisher:
        if self.publisher is None:
            self.publisher = Publisher(
                self.id,
                self._engine.config.transport,
                self._engine.certificate,
                self._engine.config.limits,
                lambda state: self._on_transport_state("publisher", state),
                self._engine.totals,
            )
        return self.publisher

    def ensure_subscriber(self) -> Subscriber:
        if self.subscriber is None:
            self.subscriber = Subscriber(
                self.id,
                self._engine.config.transport,
                self._engine.certificate,
                lambda state: self._on_transport_state("subscriber", state),
                self._engine.totals,
            )
        return self.subscriber

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        # Counts move to the totals before the peer leaves the live set, with
        # no await in between: /metrics never sees them go backwards.
        if self.publisher is not None:
            self.publisher.retire()
        if self.subscriber is not None:
            self.subscriber.retire()
        self._engine.peers.pop(self.id, None)
        if self.publisher is not None:
            await self.publisher.close()
        if self.subscriber is not None:
            await self.subscriber.close()


class MediaEngine:
    def __init__(self, config: MediaConfig) -> None:
        self.config = config
        self.peers: dict[str, Peer] = {}
        self.certificate: object | None = None
        self._task: asyncio.Task[None] | None = None
        self.started_at = 0.0
        #: The relay to and from other nodes (sfu.relay), in a cluster.
        self.relay: Relay | None = None
        #: Counts of media objects that are gone, and report histograms.
        self.totals = MediaTotals()

    async def start(self) -> None:
        aiortc_adapter.check_compatibility()
        # One certificate per process: its fingerprint is public in every SDP anyway,
        # and generating one per connection would cost a few ms each join.
        self.certificate = aiortc_adapter.generate_certificate()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="media-timer")
        self.started_at = time.monotonic()

    async def stop(self) -> None:
        for peer in list(self.peers.values()):
            await peer.close()
        if self.relay is not None:
            self.relay.close()
            self.relay = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def media_totals(self) -> MediaTotals:
        """Every counter since the node started: the gone objects' plus the
        live ones' (read at scrape time, never per packet)."""
        totals = self.totals.copy()
        for peer in self.peers.values():
            if peer.publisher is not None:
                totals.add_publisher(peer.publisher)
                for track in peer.publisher.tracks.values():
                    for layer in track.layers:
                        if not layer.closed:
                            totals.add_receiver(layer)
            if peer.subscriber is not None:
                totals.add_subscriber(peer.subscriber)
                for downtrack in peer.subscriber.downtracks.values():
                    totals.add_downtrack(downtrack)
        if self.relay is not None:
            for layer in self.relay.inbound_layers():
                if not layer.closed:
                    totals.add_receiver(layer)
        return totals

    def create_peer(self, peer_id: str, on_transport_state: TransportStateHandler) -> Peer:
        if self.certificate is None:
            raise RuntimeError("MediaEngine.start() first")
        if peer_id in self.peers:
            raise ValueError(f"peer {peer_id} exists")
        peer = Peer(self, peer_id, on_transport_state)
        self.peers[peer_id] = peer
        return peer

    async def _run(self) -> None:
        interval = self.config.tick_interval_s
        next_report = time.monotonic() + self.config.report_interval_s
        while True:
            await asyncio.sleep(interval)
            now_s = time.monotonic()
            now_ms = int(now_s * 1000)
            report = now_s >= next_report
            if report:
                next_report = now_s + self.config.report_interval_s
            if self.relay is not None:
                try:
                    self.relay.tick(now_ms)
                except Exception:  # noqa: BLE001 - the relay's bug must not stop the timer
                    logger.exception("media timer failed for the relay")
            # In a method of its own: a loop variable in this long-lived frame
            # would keep the last peer (and its participant) alive after it left.
            self._tick_peers(now_s, now_ms, report)

    def _tick_peers(self, now_s: float, now_ms: int, report: bool) -> None:
        for peer in list(self.peers.values()):
            self._tick_peer(peer, now_s, now_ms, report)

    @staticmethod
    def _tick_peer(peer: Peer, now_s: float, now_ms: int, report: bool) -> None:
        try:
            if peer.publisher is not None:
                peer.publisher.tick(now_ms)
                if report:
                    peer.publisher.send_reports(now_s, now_ms)
            if peer.subscriber is not None:
                peer.subscriber.tick(now_ms)
                if report:
                    peer.subscriber.send_reports(now_s)
        except Exception:  # noqa: BLE001 - one peer's bug must not stop the timer
            logger.exception("media timer failed for peer %s", peer.id)
