"""Subscriber: the media side of a participant's subscriber transport.

The server is the offerer here. Each forwarded track gets an m-section (a slot)
and a DownTrack; a slot whose track went away turns `inactive` and is recycled for
a later track of the same kind once the client has answered that change.

Bandwidth: the subscriber's REMB (draft-alvestrand-rmcat-remb) is its estimate of
what it can receive; loss in its receiver reports lowers it (as GCC's loss-based
controller would, RFC 8698 uses the same signal). The estimate, less a fixed
allowance per audio track, is shared equally by its video tracks, and each
DownTrack picks the simulcast layer that fits its share.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable

from sfu.core.rtcp import (
    Fir,
    Nack,
    Pli,
    ReceiverReport,
    Remb,
    RtcpError,
    SenderReport,
    parse_compound,
)
from sfu.counters import MediaTotals
from sfu.downtrack import DownTrack
from sfu.negotiate import (
    NegotiationError,
    OfferSlot,
    build_subscriber_offer,
    read_subscriber_answer,
    subscriber_codec,
)
from sfu.sdp import SdpError, SessionDescription, parse, serialize
from sfu.track import PublishedTrack
from sfu.transport import PeerTransport, TransportConfig

logger = logging.getLogger(__name__)

MAX_SLOTS = 256
#: Layer choices are revisited this often (and when the estimate changes).
LAYER_INTERVAL_MS = 200
#: Reserved per forwarded audio track before video shares the estimate (Opus
#: voice runs at 32-64 kbit/s with headers).
AUDIO_ALLOWANCE_BPS = 48_000
#: Loss above this fraction in a receiver report lowers the estimate.
LOSS_THRESHOLD = 0.10
#: A receiver-side estimate (Chromium's REMB) grows only ~8 %/s and never past
#: ~1.5x what arrives: held to its value, a subscriber that starts on a low
#: layer could never climb (nothing more arrives for it to measure). An
#: estimate that rose (by RAMP_MIN_RISE or more) in this many reports in a row,
#: with loss under RAMP_MAX_LOSS, is read as "still climbing, not congested":
#: for RAMP_GRACE_S (renewed while it keeps rising) each video track may go
#: one layer above the one it forwards, whatever the estimate says; once more
#: arrives, the estimate climbs past it. Loss or a falling estimate ends the
#: grace at once, and a fall during a grace keeps it off for RAMP_COOLDOWN_S:
#: a subscriber that really is congested is not pushed up again and again.
RAMP_REPORTS = 3
RAMP_MIN_RISE = 0.01
RAMP_MAX_LOSS = 0.02
RAMP_GRACE_S = 5.0
RAMP_COOLDOWN_S = 15.0
#: Headroom over the next layer's measured bitrate (keyframes, bursts).
RAMP_HEADROOM = 1.2


class Subscriber:
    def __init__(
        self,
        peer_id: str,
        transport_config: TransportConfig,
        certificate: object,
        on_state: Callable[[str], None],
        totals: MediaTotals | None = None,
    ) -> None:
        self.peer_id = peer_id
        self.totals = totals
        self._on_state_cb = on_state
        self.transport = PeerTransport(
            transport_config,
            certificate,
            controlling=True,
            name=f"{peer_id}/sub",
            on_rtp=self._on_rtp,
            on_rtcp=self._on_rtcp,
            on_state=self._on_state,
        )
        self.slots: list[OfferSlot] = []
        self.downtracks: dict[str, DownTrack] = {}  # by mid
        self._by_ssrc: dict[int, DownTrack] = {}
        self._pending: SessionDescription | None = None
        self._pending_slots: dict[str, str | None] = {}
        self._version = 0
        self._session_id = secrets.randbits(62)
        self._freed_in_version: dict[str, int] = {}
        self._answered_version = 0
        self._started = False
        self.changed = False
        self.remb_bps: int | None = None
        #: Reports in a row whose REMB rose (see RAMP_REPORTS).
        self.remb_rises = 0
        self._climbing_until_s = 0.0
        self._ramp_blocked_until_s = 0.0
        self._next_layer_ms = 0
        self.malformed_rtcp = 0

    # --- tracks --------------------------------------------------------------

    def has_track(self, track_id: str) -> bool:
        return any(slot.track_id == track_id for slot in self.slots)

    def add_track(self, track: PublishedTrack, publisher_id: str) -> DownTrack:
        if self.has_track(track.track_id):
            raise ValueError(f"already subscribed to {track.track_id}")
        slot = self._free_slot(track.kind)
        codec, rtx_pt = subscriber_codec(track.codec)
        slot.track_id = track.track_id
        slot.stream_id = publisher_id
        slot.codec = codec
        slot.rtx_payload_type = rtx_pt if track.is_video else None
        slot.ssrc = _new_ssrc(self._by_ssrc)
        slot.rtx_ssrc = _new_ssrc(self._by_ssrc) if slot.rtx_payload_type is not None else None
        slot.cname = track.cname
        downtrack = DownTrack(
            track,
            subscriber_id=self.peer_id,
            mid=slot.mid,
            ssrc=slot.ssrc,
            payload_type=codec.payload_type,
            rtx_ssrc=slot.rtx_ssrc,
            rtx_payload_type=slot.rtx_payload_type,
            send_rtp=self.transport.send_rtp,
            seq_start=secrets.randbits(15),
            ts_start=secrets.randbits(31),
        )
        self.downtracks[slot.mid] = downtrack
        self._by_ssrc[slot.ssrc] = downtrack
        if slot.rtx_ssrc is not None:
            self._by_ssrc[slot.rtx_ssrc] = downtrack
        downtrack.attach()
        self.changed = True
        return downtrack

    def downtrack_for(self, track_id: str) -> DownTrack | None:
        for downtrack in self.downtracks.values():
            if downtrack.track_id == track_id:
                return downtrack
        return None

    def remove_track(self, track_id: str) -> bool:
        for slot in self.slots:
            if slot.track_id == track_id:
                downtrack = self.downtracks.pop(slot.mid, None)
                if downtrack is not None:
                    downtrack.detach()
                    if self.totals is not None:
                        self.totals.add_downtrack(downtrack)
                    self._by_ssrc.pop(downtrack.ssrc, None)
                    if downtrack.rtx_ssrc is not None:
                        self._by_ssrc.pop(downtrack.rtx_ssrc, None)
                slot.track_id = None
                slot.codec = None
                self._freed_in_version[slot.mid] = self._version + 1
                self.changed = True
                return True
        return False

    def _free_slot(self, kind: str) -> OfferSlot:
        for slot in self.slots:
            freed = self._freed_in_version.get(slot.mid, 0)
            # Reuse only after the client answered the offer that made it inactive.
            if slot.kind == kind and not slot.active and freed <= self._answered_version:
                return slot
        if len(self.slots) >= MAX_SLOTS:
            raise NegotiationError(f"more than {MAX_SLOTS} m-sections on one subscriber transport")
        slot = OfferSlot(mid=str(len(self.slots)), kind=kind)
        self.slots.append(slot)
        return slot

    # --- negotiation ---------------------------------------------------------

    @property
    def awaiting_answer(self) -> bool:
        return self._pending is not None

    async def create_offer(self) -> tuple[str, dict[str, str]]:
        """A new offer for the current slots; the caller sends it and waits for the answer."""
        local = await self.transport.prepare()
        self._version += 1
        offer = build_subscriber_offer(
            self.slots, local, version=self._version, session_id=self._session_id
        )
        self._pending = offer
        self._pending_slots = {slot.mid: slot.track_id for slot in self.slots}
        self.changed = False
        tracks = {slot.mid: slot.track_id for slot in self.slots if slot.track_id is not None}
        return serialize(offer), tracks

    def apply_answer(self, answer_sdp: str) -> list[str]:
        """Apply the client's answer; returns problems per rejected track (for logs
        and an error message), never raises for a partial rejection."""
        if self._pending is None:
            raise NegotiationError("no subscriber offer is waiting for an answer")
        try:
            answer = parse(answer_sdp)
        except SdpError as exc:
            raise NegotiationError(f"the answer does not parse: {exc}") from None
        remote, accepted = read_subscriber_answer(self._pending, answer)
        self._pending = None
        self._answered_version = self._version
        problems = []
        for mid, media in accepted.items():
            downtrack = self.downtracks.get(mid)
            if downtrack is None or self._pending_slots.get(mid) != downtrack.track_id:
                continue
            if not media.accepted:
                problems.append(f"track {downtrack.track_id}: {media.reason}")
                continue
            downtrack.configure(media.extension_ids, media.rtx)
            downtrack.negotiated = True
        if not self._started:
            self._started = True
            self.transport.start(remote, "server" if remote.setup == "active" else "client")
        self._activate()
        return problems

    def _on_state(self, state: str) -> None:
        if state == "connected":
            self._activate()
        self._on_state_cb(state)

    def _activate(self) -> None:
        if not self.transport.connected:
            return
        now_ms = int(time.monotonic() * 1000)
        budgets = None
        for downtrack in self.downtracks.values():
            if downtrack.negotiated and not downtrack.active and not downtrack.detached:
                downtrack.active = True
                if downtrack.is_video:
                    if budgets is None:
                        budgets = self._video_budget_bps()
                    downtrack.update_layer(now_ms, self._budget_for(downtrack, budgets))
                    # A new subscriber needs a keyframe to start decoding.
                    layer = downtrack.awaited_layer
                    if layer is not None:
                        layer.request_keyframe(now_ms)

    # --- packets -------------------------------------------------------------

    def _on_rtp(self, packet: bytes, arrival_s: float) -> None:
        pass  # subscribers send no media on this transport

    def _on_rtcp(self, packet: bytes) -> None:
        try:
            packets = parse_compound(packet)
        except RtcpError:
            self.malformed_rtcp += 1
            return
        now_s = time.monotonic()
        by_ssrc = self._by_ssrc
        for item in packets:
            if isinstance(item, ReceiverReport | SenderReport):
                for block in item.reports:
                    downtrack = by_ssrc.get(block.ssrc)
                    if downtrack is not None and downtrack.ssrc == block.ssrc:
                        downtrack.on_report_block(
                            block.fraction_lost, block.jitter, block.lsr, block.dlsr, now_s
                        )
                        if self.totals is not None:
                            self.totals.observe_report(
                                downtrack.rtt_ms,
                                block.jitter / downtrack.receiver.clock_rate,
                                block.fraction_lost / 256,
                            )
            elif isinstance(item, Nack):
                downtrack = by_ssrc.get(item.media_ssrc)
                if downtrack is not None:
                    downtrack.on_nack(item.lost, now_s)
            elif isinstance(item, Pli):
                downtrack = by_ssrc.get(item.media_ssrc)
                if downtrack is not None:
                    downtrack.on_keyframe_request(int(now_s * 1000))
            elif isinstance(item, Fir):
                for ssrc, _seq in item.entries:
                    downtrack = by_ssrc.get(ssrc)
                    if downtrack is not None:
                        downtrack.on_keyframe_request(int(now_s * 1000))
            elif isinstance(item, Remb):
                falling = self.remb_bps is not None and item.bitrate_bps < self.remb_bps
                rising = self.remb_bps is not None and item.bitrate_bps >= self.remb_bps * (
                    1 + RAMP_MIN_RISE
                )
                self.remb_rises = self.remb_rises + 1 if rising else 0
                if falling and now_s < self._climbing_until_s:
                    # It fell while we climbed on trust: congestion, not a ramp.
                    self._ramp_blocked_until_s = now_s + RAMP_COOLDOWN_S
                if falling:
                    self._climbing_until_s = 0.0
                elif self.remb_rises >= RAMP_REPORTS and now_s >= self._ramp_blocked_until_s:
                    self._climbing_until_s = now_s + RAMP_GRACE_S
                self.remb_bps = item.bitrate_bps
                for ssrc in item.ssrcs:
                    downtrack = by_ssrc.get(ssrc)
                    if downtrack is not None:
                        downtrack.remb_bps = item.bitrate_bps
                if falling:
                    self._next_layer_ms = 0  # react to a falling estimate at once

    # --- periodic ------------------------------------------------------------

    def _budget_for(self, downtrack: DownTrack, shared_bps: int | None) -> int | None:
        """A video track's budget: its share of the estimate, or while the
        estimate climbs (RAMP_*), enough for the next layer up."""
        if shared_bps is None or time.monotonic() >= self._climbing_until_s:
            return shared_bps
        next_bps = downtrack.next_layer_bps()
        if next_bps is None:
            return shared_bps
        return max(shared_bps, int(next_bps * RAMP_HEADROOM))

    def _video_budget_bps(self) -> int | None:
        """This subscriber's bandwidth estimate shared by its video tracks."""
        if self.remb_bps is None:
            return None
        estimate = self.remb_bps
        active = [d for d in self.downtracks.values() if d.active and not d.paused]
        loss = max((d.loss_fraction for d in active), default=0.0)
        if loss >= RAMP_MAX_LOSS:
            self._climbing_until_s = 0.0  # loss: no climbing on trust
        if loss > LOSS_THRESHOLD:
            estimate = int(estimate * (1 - 0.5 * loss))
        videos = sum(1 for d in active if d.is_video)
        audios = len(active) - videos
        return max(estimate - audios * AUDIO_ALLOWANCE_BPS, 0) // max(videos, 1)

    def tick(self, now_ms: int) -> None:
        choose = now_ms >= self._next_layer_ms
        budget = None
        if choose:
            self._next_layer_ms = now_ms + LAYER_INTERVAL_MS
            budget = self._video_budget_bps()
        for downtrack in self.downtracks.values():
            if not downtrack.is_video:
                continue
            if choose:
                downtrack.update_layer(now_ms, self._budget_for(downtrack, budget))
            layer = downtrack.awaited_layer
            if layer is not None:
                # Re-ask while waiting: a single request is sometimes lost or
                # ignored (the layer throttles to one request per 500 ms).
                layer.request_keyframe(now_ms)

    def send_reports(self, now_s: float) -> None:
        if not self.transport.connected:
            return
        batch = b""
        for downtrack in self.downtracks.values():
            report = downtrack.sender_report(now_s)
            if report is None:
                continue
            if len(batch) + len(report) > 1100:
                self.transport.send_rtcp(batch)
                batch = b""
            batch += report
        if batch:
            self.transport.send_rtcp(batch)

    def retire(self) -> None:
        """Stop every DownTrack and hand the counts to the node's totals,
        synchronously (see Publisher.retire)."""
        for downtrack in list(self.downtracks.values()):
            downtrack.detach()
            if self.totals is not None:
                self.totals.add_downtrack(downtrack)
        self.downtracks.clear()
        self._by_ssrc.clear()
        if self.totals is not None:
            self.totals.add_subscriber(self)
            self.totals = None

    async def close(self) -> None:
        self.retire()
        await self.transport.close()


def _new_ssrc(taken: dict[int, DownTrack]) -> int:
    while True:
        ssrc = secrets.randbits(32)
        if ssrc and ssrc not in taken:
            return ssrc
