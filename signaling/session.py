"""One client's WebSocket session: read, validate, dispatch, answer.

Outgoing messages go through a bounded queue drained by one writer task, so a
slow client can never make the media plane or other sessions wait; a client that
lets the queue fill up is disconnected.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from sfu.negotiate import LimitExceeded, NegotiationError, UnsupportedMedia
from sfu.relay import RemoteTrackSpec
from sfu.transport import CandidateError
from signaling import messages as m
from signaling.auth import TokenClaims
from signaling.logs import participant_var, room_var
from signaling.metrics import SignalingStats
from signaling.ratelimit import TokenBucket
from signaling.rooms import Participant, RoomFull, RoomManager, Track

if TYPE_CHECKING:
    from sfu.downtrack import DownTrack

logger = logging.getLogger(__name__)

OUTBOX_LIMIT = 512
#: Per connection: a client sends about one message a second (pings, the odd
#: subscribe); this is generous for a UI and stops a flood cheaply.
MESSAGES_PER_S = 50
MESSAGE_BURST = 100
#: Messages refused in one session before it is closed.
MAX_REFUSED_MESSAGES = 2000
IDLE_TIMEOUT_S = 60.0  # clients ping every ~10 s; a silent socket is dead
# Larger frames than the parser accepts are refused by aiohttp before parsing.
MAX_FRAME_BYTES = m.DEFAULT_MAX_SDP_BYTES + m.FRAME_OVERHEAD_BYTES


class Session:
    def __init__(
        self,
        ws: web.WebSocketResponse,
        manager: RoomManager,
        claims: TokenClaims,
        auto_subscribe: bool,
        stats: SignalingStats | None = None,
        resume_token: str | None = None,
    ) -> None:
        self.ws = ws
        self.stats = stats
        self.resume_token = resume_token
        self.manager = manager
        self.claims = claims
        self.auto_subscribe = auto_subscribe
        self.participant: Participant | None = None
        self._outbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(OUTBOX_LIMIT)
        self._closing: str | None = None
        self._abort: asyncio.Task[bool] | None = None
        self._bucket = TokenBucket(MESSAGES_PER_S, MESSAGE_BURST, time.monotonic())
        self._refused = 0
        self._refused_notice_s = -1.0

    # --- sending -----------------------------------------------------------------

    def send(self, message: dict[str, Any]) -> None:
        if self._closing is not None and message.get("type") != "leave":
            return
        if self.stats is not None and message.get("type") == "error":
            self.stats.error(message["code"])
        try:
            self._outbox.put_nowait(message)
        except asyncio.QueueFull:
            logger.warning("session %s: outbox full, disconnecting a slow client", self._pid())
            self.close("slow_client")

    def close(self, reason: str) -> None:
        """Close after what is queued (a `leave` the caller sent included) is written."""
        if self._closing is not None:
            return
        self._closing = reason
        participant = self.participant
        if participant is not None and participant.send == self.send:
            participant.closing = True  # closed by the server: not resumable
        try:
            # The writer drains what is queued, then closes the socket, which ends
            # the read loop.
            self._outbox.put_nowait(None)
        except asyncio.QueueFull:
            # The client does not read what we send: close now, dropping the backlog.
            self._abort = asyncio.get_running_loop().create_task(self.ws.close())

    def _pid(self) -> str:
        return self.participant.id if self.participant is not None else "-"

    async def _writer(self) -> None:
        while True:
            message = await self._outbox.get()
            if message is None:
                break
            try:
                await self.ws.send_str(json.dumps(message, separators=(",", ":")))
            except (ConnectionError, RuntimeError):
                break
        with contextlib.suppress(Exception):
            await self.ws.close()

    # --- lifecycle ---------------------------------------------------------------

    async def run(self) -> None:
        writer = asyncio.get_running_loop().create_task(self._writer(), name="ws-writer")
        # Every line logged from here on (and in the tasks this session starts)
        # names the room and, once joined, the participant (signaling.logs).
        room_var.set(self.claims.room)
        try:
            if self.resume_token and self._resume():
                await self._read_loop()
                return
            try:
                self.participant = await self.manager.join(
                    room_name=self.claims.room,
                    identity=self.claims.identity,
                    name=self.claims.name,
                    grants=self.claims.grants,
                    auto_subscribe=self.auto_subscribe,
                    send=self.send,
                    close_session=self.close,
                )
            except RoomFull as exc:
                self.send(m.error("room_full", str(exc), None))
                self.send(m.leave("room_full"))
                self.close("room_full")
                return
            participant_var.set(self.participant.id)
            logger.info("joined as %r", self.claims.identity)
            await self._read_loop()
        finally:
            participant = self.participant
            if participant is not None and participant.send != self.send:
                # A resuming connection took the participant over: nothing to do.
                logger.info("connection replaced by a resumed one")
            elif participant is not None and self._closing is None and not participant.left:
                # Dropped without a goodbye: the client may resume (RESUME_WINDOW_S).
                logger.info("connection lost; the session can be resumed")
                self.manager.detach(participant)
            elif participant is not None:
                logger.info("left (%s)", self._closing or "connection closed")
                with contextlib.suppress(Exception):
                    await self.manager.leave(participant, self._closing or "left")
            self.close(self._closing or "closed")
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(writer, 5.0)
            if not writer.done():
                writer.cancel()

    def _resume(self) -> bool:
        """Continue a detached session: the same participant, its media, its
        subscriptions; then what it missed. False: join afresh."""
        assert self.resume_token is not None
        resumed = self.manager.resume(
            room_name=self.claims.room,
            identity=self.claims.identity,
            resume_token=self.resume_token,
            send=self.send,
            close_session=self.close,
        )
        if resumed is None:
            logger.info("nothing to resume; joining afresh")
            return False
        participant, held = resumed
        self.participant = participant
        participant_var.set(participant.id)
        logger.info("resumed (%d messages held)", len(held))
        self.send(
            m.joined(
                participant.info(),
                participant.room.name,
                self.manager.node_id,
                self.manager.others(participant),
                resume_token=participant.resume_token,
                resumed=True,
            )
        )
        for message in held:
            self.send(message)
        participant.resend_pending_offer(held)
        return True

    async def _read_loop(self) -> None:
        while self._closing is None:
            try:
                msg = await self.ws.receive(timeout=IDLE_TIMEOUT_S)
            except TimeoutError:
                self.send(
                    m.error(
                        "bad_request", f"no message for {IDLE_TIMEOUT_S:.0f} s; send ping", None
                    )
                )
                self.send(m.leave("idle_timeout"))
                self.close("idle_timeout")
                return
            if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY) and not self._admit():
                if self._refused >= MAX_REFUSED_MESSAGES:
                    self.send(m.leave("rate_limited"))
                    self.close("rate_limited")
                    return
                continue
            if msg.type == WSMsgType.TEXT:
                await self._handle_text(msg.data)
            elif msg.type == WSMsgType.BINARY:
                self.send(
                    m.error("bad_request", "binary frames are not supported; send JSON text", None)
                )
            elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                return
            elif msg.type == WSMsgType.ERROR:
                # aiohttp reports an oversized frame this way; the socket is then closed.
                logger.info("session %s: websocket error %s", self._pid(), self.ws.exception())
                return

    def _admit(self) -> bool:
        """The per-connection message rate: a refused message is dropped
        unread; the client hears why at most once a second."""
        now_s = time.monotonic()
        if self._bucket.take(now_s):
            return True
        self._refused += 1
        if now_s - self._refused_notice_s >= 1.0:
            self._refused_notice_s = now_s
            self.send(
                m.error(
                    "rate_limited",
                    f"more than {MESSAGES_PER_S} messages a second: {self._refused} refused so far",
                    None,
                )
            )
        return False

    async def _handle_text(self, text: str) -> None:
        try:
            message = m.parse_client_message(text)
        except m.ProtocolError as exc:
            self.send(m.error_from(exc))
            return
        try:
            await self._dispatch(message)
        except m.ProtocolError as exc:
            self.send(m.error_from(exc))
        except Exception:  # noqa: BLE001 - a bug must not take the room down
            logger.exception("session %s: %s handler failed", self._pid(), message.type)
            self.send(
                m.error("internal", "internal error; the request was not applied", message.type)
            )

    # --- handlers ----------------------------------------------------------------

    async def _dispatch(self, message: Any) -> None:
        participant = self.participant
        assert participant is not None
        manager = self.manager
        kind = message.type

        if isinstance(message, m.Ping):
            self.send(m.pong(message.ts))
        elif isinstance(message, m.Publish):
            await self._publish(participant, message)
        elif isinstance(message, m.Unpublish):
            track = participant.tracks.get(message.track_id)
            if track is None:
                raise m.ProtocolError(
                    "not_found", f"you publish no track {message.track_id!r}", kind
                )
            manager.unpublish_track(participant, track)
        elif isinstance(message, m.SubscriberAnswer):
            if not participant.receive_subscriber_answer(message.sdp):
                raise m.ProtocolError(
                    "bad_request", "no subscriber_offer is waiting for an answer", kind
                )
        elif isinstance(message, m.Subscribe | m.Unsubscribe):
            subscribe = isinstance(message, m.Subscribe)
            if subscribe and not participant.grants.subscribe:
                raise m.ProtocolError("forbidden", "your token has no subscribe grant", kind)
            tracks = [self._room_track(track_id, kind) for track_id in message.track_ids]
            for track in tracks:
                if track.publisher_id == participant.id:
                    raise m.ProtocolError("bad_request", f"track {track.id} is your own", kind)
            for track in tracks:
                if subscribe:
                    manager.subscribe(participant, track)
                else:
                    manager.unsubscribe(participant, track)
        elif isinstance(message, m.Candidate):
            value = None if message.is_end_of_candidates else message.candidate.candidate  # type: ignore[union-attr]
            try:
                await participant.add_candidate(message.target, value)
            except (CandidateError, ValueError) as exc:
                raise m.ProtocolError("bad_request", f"candidate: {exc}", kind) from None
        elif isinstance(message, m.SetQuality):
            self._set_quality(participant, message)
        elif isinstance(message, m.SetVideoSize):
            track = self._room_track(message.track_id, kind)
            size = (message.width, message.height)
            participant.video_size[track.id] = size
            downtrack = self._downtrack(participant, track.id)
            if downtrack is not None:
                downtrack.set_preference(video_size=size)
                downtrack.update_layer(int(time.monotonic() * 1000), downtrack.budget_bps)
        elif isinstance(message, m.Mute):
            track = participant.tracks.get(message.track_id)
            if track is None:
                raise m.ProtocolError(
                    "not_found", f"you publish no track {message.track_id!r}", kind
                )
            if track.admin_muted and not message.muted:
                raise m.ProtocolError(
                    "forbidden", f"track {track.id} was muted by an operator", kind
                )
            manager.set_muted(participant, track, message.muted)
        elif isinstance(message, m.Leave):
            self.send(m.leave("client_left"))
            self.close("client_left")
        else:  # pragma: no cover - parse_client_message knows every type
            raise m.ProtocolError("unsupported", f"unsupported message type {kind!r}", kind)

    def _room_track(self, track_id: str, kind: str) -> Track:
        assert self.participant is not None
        track = self.participant.room.find_track(track_id)
        if track is None:
            raise m.ProtocolError("not_found", f"no track {track_id!r} in this room", kind)
        return track

    async def _publish(self, participant: Participant, message: m.Publish) -> None:
        kind = message.type
        if not participant.grants.publish:
            raise m.ProtocolError("forbidden", "your token has no publish grant", kind)
        publisher = participant.peer.ensure_publisher()
        try:
            result = await publisher.negotiate(message.sdp)
        except NegotiationError as exc:
            code = (
                "unsupported"
                if isinstance(exc, UnsupportedMedia)
                else "forbidden"
                if isinstance(exc, LimitExceeded)
                else "bad_request"
            )
            raise m.ProtocolError(code, str(exc), kind) from None
        if participant.left:  # replaced or removed while the answer was made
            for _media, published in result.added:
                published.close()
            return
        meta = {t.mid: t for t in message.tracks}
        for published in result.removed:
            track = participant.tracks.get(published.track_id)
            if track is not None:
                self.manager.unpublish_track(participant, track)
        new_tracks = []
        for media, published in result.added:
            spec = meta.get(media.mid)
            announced = {layer.rid: layer for layer in (spec.layers if spec else ())}
            if published.simulcast:
                published.set_qualities(
                    {rid: layer.quality for rid, layer in announced.items()},
                    {rid: (layer.width, layer.height) for rid, layer in announced.items()},
                )
            # What was negotiated, described with what the client announced.
            layers = tuple(
                m.LayerInfo(
                    layer.rid,
                    quality,
                    announced[layer.rid].width if layer.rid in announced else 0,
                    announced[layer.rid].height if layer.rid in announced else 0,
                )
                for layer, quality in zip(published.layers, published.qualities, strict=True)
                if layer.rid is not None
            )
            source = spec.source if spec else ("microphone" if media.kind == "audio" else "camera")
            # Other nodes order the layers the way this one does: by the
            # announced qualities, else by picture size once keyframes show it.
            relay_spec = RemoteTrackSpec.of(
                published,
                {rid: layer.quality for rid, layer in announced.items()},
                {rid: (layer.width, layer.height) for rid, layer in announced.items()},
            )
            new_tracks.append(
                Track(
                    id=published.track_id,
                    kind=media.kind,
                    source=source,
                    name=spec.name if spec else "",
                    codec=media.codec.name.lower(),
                    mid=media.mid,
                    publisher_id=participant.id,
                    media=published,
                    layers=layers,
                    simulcast=published.simulcast,
                    spec=relay_spec,
                )
            )
        mids = {mid: published.track_id for mid, published in publisher.tracks.items()}
        self.send(m.publish_answer(result.answer_sdp, mids))
        for problem in result.rejected:
            logger.info("participant %s: publish m-section rejected: %s", participant.id, problem)
        await participant.flush_candidates("publisher")
        for track in new_tracks:
            if participant.left:
                if track.media is not None:
                    track.media.close()
                continue
            self.manager.publish_track(participant, track)

    @staticmethod
    def _downtrack(participant: Participant, track_id: str) -> DownTrack | None:
        subscriber = participant.peer.subscriber
        return subscriber.downtrack_for(track_id) if subscriber is not None else None

    def _set_quality(self, participant: Participant, message: m.SetQuality) -> None:
        track = self._room_track(message.track_id, message.type)
        participant.quality[track.id] = message.quality
        downtrack = self._downtrack(participant, track.id)
        if downtrack is None or track.kind != "video":
            return  # kept, and applied when the track is subscribed
        now_ms = int(time.monotonic() * 1000)
        if message.quality == "off":
            if not downtrack.paused:
                downtrack.pause()
                self.send(m.layer_changed(track.id, "off"))
            return
        downtrack.set_preference(message.quality)
        if downtrack.paused:
            downtrack.resume(now_ms)
        else:
            # The switch itself happens at the target layer's keyframe, and
            # layer_changed is sent then.
            downtrack.update_layer(now_ms, downtrack.budget_bps)
