"""Rooms and participants on this node (in-process membership).

The control plane decides who is in which room and who receives which track;
the media plane (`sfu`) moves the packets. A Participant pairs one signaling
session with one media Peer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sfu.engine import MediaEngine, Peer
from sfu.negotiate import NegotiationError
from sfu.track import PublishedTrack
from sfu.transport import check_candidate
from signaling import messages as m
from signaling.auth import Grants

logger = logging.getLogger(__name__)

SUBSCRIBER_ANSWER_TIMEOUT_S = 15.0
MAX_PENDING_CANDIDATES = 32


class RoomFull(Exception):
    pass


@dataclass(slots=True)
class Track:
    """A published track as the control plane sees it."""

    id: str
    kind: str
    source: str
    name: str
    codec: str
    mid: str
    publisher_id: str
    media: PublishedTrack
    muted: bool = False
    layers: tuple[m.LayerInfo, ...] = ()

    def info(self) -> m.TrackInfo:
        return m.TrackInfo(
            id=self.id,
            kind=self.kind,
            source=self.source,
            name=self.name,
            muted=self.muted,
            codec=self.codec,
            simulcast=self.media.simulcast,
            layers=self.layers,
        )


SendFn = Callable[[dict[str, Any]], None]
CloseFn = Callable[[str], None]


@dataclass(eq=False)
class Participant:
    id: str
    identity: str
    name: str
    grants: Grants
    room: Room
    peer: Peer
    send: SendFn
    close_session: CloseFn
    auto_subscribe: bool = True
    tracks: dict[str, Track] = field(default_factory=dict)
    quality: dict[str, str] = field(default_factory=dict)
    video_size: dict[str, tuple[int, int]] = field(default_factory=dict)
    left: bool = False
    _negotiation: asyncio.Task[None] | None = None
    _answer: asyncio.Future[str] | None = None
    _pending_candidates: dict[str, list[str | None]] = field(
        default_factory=lambda: {"publisher": [], "subscriber": []}
    )

    def info(self) -> m.ParticipantInfo:
        return m.ParticipantInfo(
            id=self.id,
            identity=self.identity,
            name=self.name,
            tracks=tuple(t.info() for t in self.tracks.values()),
        )

    # --- subscriber negotiation (one offer in flight at a time) --------------

    def negotiate_subscriber(self) -> None:
        if self.left or self.peer.subscriber is None:
            return
        if self._negotiation is None or self._negotiation.done():
            self._negotiation = asyncio.get_running_loop().create_task(
                self._negotiate_loop(), name=f"negotiate-{self.id}"
            )

    async def _negotiate_loop(self) -> None:
        subscriber = self.peer.subscriber
        assert subscriber is not None
        while subscriber.changed and not self.left:
            sdp, tracks = await subscriber.create_offer()
            self._answer = asyncio.get_running_loop().create_future()
            self.send(m.subscriber_offer(sdp, tracks))
            try:
                answer = await asyncio.wait_for(self._answer, SUBSCRIBER_ANSWER_TIMEOUT_S)
            except TimeoutError:
                logger.info(
                    "participant %s: no subscriber_answer in %.0f s",
                    self.id,
                    SUBSCRIBER_ANSWER_TIMEOUT_S,
                )
                self.send(
                    m.error(
                        "bad_request",
                        f"no subscriber_answer within {SUBSCRIBER_ANSWER_TIMEOUT_S:.0f} s",
                        "subscriber_offer",
                    )
                )
                self.close_session("negotiation_timeout")
                return
            finally:
                self._answer = None
            try:
                problems = subscriber.apply_answer(answer)
            except (NegotiationError, ValueError) as exc:
                self.send(m.error("bad_request", str(exc), "subscriber_answer"))
                self.close_session("negotiation_failed")
                return
            for problem in problems:
                self.send(m.error("unsupported", problem, "subscriber_answer"))
            await self.flush_candidates("subscriber")

    def receive_subscriber_answer(self, sdp: str) -> bool:
        if self._answer is None or self._answer.done():
            return False
        self._answer.set_result(sdp)
        return True

    # --- candidates ------------------------------------------------------------

    async def add_candidate(self, target: str, candidate: str | None) -> None:
        if candidate:
            check_candidate(candidate)  # refuse a bad one now, not silently later
        side = self.peer.publisher if target == "publisher" else self.peer.subscriber
        if side is None or side.transport.state == "new":
            pending = self._pending_candidates[target]
            if len(pending) >= MAX_PENDING_CANDIDATES:
                raise ValueError(
                    f"more than {MAX_PENDING_CANDIDATES} candidates before negotiation"
                )
            pending.append(candidate)
            return
        await side.transport.add_remote_candidate(candidate)

    async def flush_candidates(self, target: str) -> None:
        side = self.peer.publisher if target == "publisher" else self.peer.subscriber
        pending = self._pending_candidates[target]
        if side is None or not pending:
            return
        self._pending_candidates[target] = []
        for candidate in pending:
            with contextlib.suppress(ValueError):
                await side.transport.add_remote_candidate(candidate)

    async def close(self) -> None:
        self.left = True
        if self._answer is not None and not self._answer.done():
            self._answer.cancel()
        if self._negotiation is not None and not self._negotiation.done():
            self._negotiation.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._negotiation
        await self.peer.close()


class Room:
    def __init__(self, name: str) -> None:
        self.name = name
        self.participants: dict[str, Participant] = {}

    def tracks(self) -> list[Track]:
        return [t for p in self.participants.values() for t in p.tracks.values()]

    def find_track(self, track_id: str) -> Track | None:
        for participant in self.participants.values():
            track = participant.tracks.get(track_id)
            if track is not None:
                return track
        return None

    def broadcast(self, message: dict[str, Any], exclude: Participant | None = None) -> None:
        for participant in list(self.participants.values()):
            if participant is not exclude and not participant.left:
                participant.send(message)


class RoomManager:
    def __init__(
        self, engine: MediaEngine, node_id: str, max_participants_per_room: int = 0
    ) -> None:
        self.engine = engine
        self.node_id = node_id
        self.max_participants_per_room = max_participants_per_room
        self.rooms: dict[str, Room] = {}

    async def join(
        self,
        *,
        room_name: str,
        identity: str,
        name: str,
        grants: Grants,
        auto_subscribe: bool,
        send: SendFn,
        close_session: CloseFn,
    ) -> Participant:
        room = self.rooms.get(room_name)
        if room is None:
            room = self.rooms[room_name] = Room(room_name)
        # The same identity joining again replaces the older session.
        for other in list(room.participants.values()):
            if other.identity == identity:
                other.send(m.leave("duplicate_identity"))
                other.close_session("duplicate_identity")
                await self.leave(other)
        if (
            self.max_participants_per_room
            and len(room.participants) >= self.max_participants_per_room
        ):
            if not room.participants:
                self.rooms.pop(room_name, None)
            raise RoomFull(
                f"room {room_name!r} is full ({self.max_participants_per_room} participants)"
            )
        participant_id = "PA_" + secrets.token_urlsafe(9)
        participant: Participant

        def on_transport_state(role: str, state: str) -> None:
            if state == "failed" and not participant.left:
                logger.info("participant %s: %s transport failed", participant.id, role)
                participant.send(m.leave("transport_failed"))
                participant.close_session("transport_failed")

        peer = self.engine.create_peer(participant_id, on_transport_state)
        participant = Participant(
            id=participant_id,
            identity=identity,
            name=name,
            grants=grants,
            room=room,
            peer=peer,
            send=send,
            close_session=close_session,
            auto_subscribe=auto_subscribe,
        )
        others = [p.info() for p in room.participants.values()]
        room.participants[participant_id] = participant
        send(m.joined(participant.info(), room.name, self.node_id, others))
        room.broadcast(m.participant_joined(participant.info()), exclude=participant)
        if auto_subscribe and grants.subscribe:
            for track in room.tracks():
                if track.publisher_id != participant_id:
                    self.subscribe(participant, track)
        return participant

    async def leave(self, participant: Participant) -> None:
        room = participant.room
        if participant.id not in room.participants:
            await participant.close()  # already gone from the room; make sure media is released
            return
        room.participants.pop(participant.id, None)
        participant.left = True
        for track in list(participant.tracks.values()):
            self._drop_track(participant, track)
            room.broadcast(m.track_unpublished(participant.id, track.id))
        room.broadcast(m.participant_left(participant.id))
        await participant.close()
        if not room.participants:
            self.rooms.pop(room.name, None)

    # --- tracks ----------------------------------------------------------------

    def publish_track(self, participant: Participant, track: Track) -> None:
        participant.tracks[track.id] = track
        room = participant.room
        room.broadcast(m.track_published(participant.id, track.info()), exclude=participant)
        for other in room.participants.values():
            if other is not participant and other.auto_subscribe and other.grants.subscribe:
                self.subscribe(other, track)

    def unpublish_track(self, participant: Participant, track: Track) -> None:
        self._drop_track(participant, track)
        participant.room.broadcast(
            m.track_unpublished(participant.id, track.id), exclude=participant
        )

    def _drop_track(self, participant: Participant, track: Track) -> None:
        participant.tracks.pop(track.id, None)
        for other in participant.room.participants.values():
            # Preferences may be stored before a subscription: forget them all.
            other.quality.pop(track.id, None)
            other.video_size.pop(track.id, None)
            if other.peer.subscriber is not None and other.peer.subscriber.remove_track(track.id):
                other.negotiate_subscriber()
        track.media.close()
        if participant.peer.publisher is not None:
            participant.peer.publisher.remove_track(track.id)

    def subscribe(self, participant: Participant, track: Track) -> bool:
        subscriber = participant.peer.ensure_subscriber()
        if subscriber.has_track(track.id):
            return False
        downtrack = subscriber.add_track(track.media, track.publisher_id)
        quality = participant.quality.get(track.id)
        if quality == "off" and track.kind == "video":
            downtrack.pause()
            participant.send(m.layer_changed(track.id, "off"))
        downtrack.set_preference(
            quality if quality not in (None, "off") else None,
            participant.video_size.get(track.id),
        )
        if track.kind == "video":
            downtrack.on_layer_change = lambda d: participant.send(
                m.layer_changed(d.track_id, d.forwarded_quality or "off")
            )
        participant.negotiate_subscriber()
        return True

    def unsubscribe(self, participant: Participant, track: Track) -> bool:
        subscriber = participant.peer.subscriber
        if subscriber is None or not subscriber.remove_track(track.id):
            return False
        participant.negotiate_subscriber()
        return True

    def stats(self) -> dict[str, int]:
        return {
            "rooms": len(self.rooms),
            "participants": sum(len(r.participants) for r in self.rooms.values()),
            "tracks": sum(len(r.tracks()) for r in self.rooms.values()),
        }
