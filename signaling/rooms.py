"""Rooms and participants: who is in which room and receives which track.

The control plane decides; the media plane (`sfu`) moves the packets. A
Participant pairs one signaling session on this node with one media Peer. In
a cluster a room also has RemoteParticipants, connected to other nodes, whose
tracks reach this node over the relay (sfu.relay) once per track when someone
here subscribes. What other nodes do arrives as membership events and is
re-read from Redis every RECONCILE_S, so a lost event heals on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sfu.engine import MediaEngine, Peer
from sfu.negotiate import NegotiationError
from sfu.relay import RemoteTrackSpec
from sfu.track import PublishedTrack
from sfu.transport import check_candidate
from signaling import messages as m
from signaling.auth import Grants
from signaling.cluster.membership import LocalMembership, Membership, NodeInfo, ParticipantRecord
from signaling.cluster.records import RecordError, track_from_record, track_record
from signaling.logs import participant_var, room_var

logger = logging.getLogger(__name__)

SUBSCRIBER_ANSWER_TIMEOUT_S = 15.0
#: A participant whose WebSocket dropped stays (media and all) this long,
#: waiting for its client to resume the session.
RESUME_WINDOW_S = 20.0
#: Messages kept for a detached participant; more and it is removed.
HELD_MESSAGES = 448  # under the session outbox (512): joined and the offer fit too
MAX_PENDING_CANDIDATES = 32
#: How often each room's membership is re-read from Redis (a lost event heals).
RECONCILE_S = 3.0
#: A remote participant updated this recently is not removed by a re-read
#: (its event may have overtaken the read).
RECENT_UPDATE_S = 5.0
#: A remote participant's node missing this many re-reads in a row is gone,
#: even if no node reaped it (Redis restarted and forgot the dead node).
MISSING_NODE_ROUNDS = 2
#: Participants that left are remembered this long so a stale copy of their
#: record cannot bring them back.
TOMBSTONE_S = 30.0
MAX_TOMBSTONES = 4096
READ_TIMEOUT_S = 1.0


class RoomFull(Exception):
    pass


@dataclass(slots=True)
class Track:
    """A published track as the control plane sees it: published here
    (`media` set) or on another node (`media` None, `spec` and `relay` say how
    to receive it)."""

    id: str
    kind: str
    source: str
    name: str
    codec: str
    mid: str
    publisher_id: str
    media: PublishedTrack | None
    muted: bool = False
    layers: tuple[m.LayerInfo, ...] = ()
    simulcast: bool = False
    #: Muted by an operator (room service): the client cannot unmute it.
    admin_muted: bool = False
    spec: RemoteTrackSpec | None = None
    #: The publishing node's relay address; None for a track published here.
    relay: tuple[str, int] | None = None

    def info(self) -> m.TrackInfo:
        return m.TrackInfo(
            id=self.id,
            kind=self.kind,
            source=self.source,
            name=self.name,
            muted=self.muted,
            codec=self.codec,
            simulcast=self.simulcast,
            layers=self.layers,
        )

    def record(self) -> dict[str, Any]:
        assert self.spec is not None
        return track_record(self.info(), self.spec)


@dataclass(eq=False)
class RemoteParticipant:
    """A participant connected to another node of the cluster."""

    id: str
    identity: str
    name: str
    node_id: str
    rev: int
    tracks: dict[str, Track] = field(default_factory=dict)
    updated_s: float = 0.0

    def info(self) -> m.ParticipantInfo:
        return _participant_info(self)


def _participant_info(p: Participant | RemoteParticipant) -> m.ParticipantInfo:
    return m.ParticipantInfo(
        id=p.id, identity=p.identity, name=p.name, tracks=tuple(t.info() for t in p.tracks.values())
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
    rev: int = 0
    #: Presented by a client to resume this session (one use each).
    resume_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    #: The WebSocket dropped; messages are held until the client resumes.
    detached: bool = False
    #: The resume window ran out (its removal is under way).
    expired: bool = False
    #: Its session is being closed by the server (removed, replaced, ...):
    #: not resumable.
    closing: bool = False
    held: list[dict[str, Any]] = field(default_factory=list)
    _expiry: asyncio.TimerHandle | None = None
    _last_offer: dict[str, Any] | None = None
    _negotiation: asyncio.Task[None] | None = None
    _answer: asyncio.Future[str] | None = None
    _pending_candidates: dict[str, list[str | None]] = field(
        default_factory=lambda: {"publisher": [], "subscriber": []}
    )

    def info(self) -> m.ParticipantInfo:
        return _participant_info(self)

    def record(self, node_id: str, relay: str) -> ParticipantRecord:
        self.rev += 1
        return ParticipantRecord(
            participant_id=self.id,
            node_id=node_id,
            identity=self.identity,
            name=self.name,
            tracks=tuple(t.record() for t in self.tracks.values() if t.spec is not None),
            rev=self.rev,
            relay=relay,
        )

    # --- subscriber negotiation (one offer in flight at a time) --------------

    def negotiate_subscriber(self) -> None:
        if self.left or self.peer.subscriber is None:
            return
        if self._negotiation is None or self._negotiation.done():
            # Often started by another participant's action (a publish): run
            # it, and the transport tasks it starts, as this participant's so
            # their log lines name this room and participant (signaling.logs).
            context = contextvars.copy_context()
            context.run(room_var.set, self.room.name)
            context.run(participant_var.set, self.id)
            self._negotiation = asyncio.get_running_loop().create_task(
                self._negotiate_loop(), name=f"negotiate-{self.id}", context=context
            )

    async def _negotiate_loop(self) -> None:
        subscriber = self.peer.subscriber
        assert subscriber is not None
        while subscriber.changed and not self.left:
            sdp, tracks = await subscriber.create_offer()
            self._answer = asyncio.get_running_loop().create_future()
            self._last_offer = m.subscriber_offer(sdp, tracks)
            self.send(self._last_offer)
            try:
                answer = await self._wait_answer(self._answer)
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
                self._last_offer = None
            try:
                problems = subscriber.apply_answer(answer)
            except (NegotiationError, ValueError) as exc:
                self.send(m.error("bad_request", str(exc), "subscriber_answer"))
                self.close_session("negotiation_failed")
                return
            for problem in problems:
                self.send(m.error("unsupported", problem, "subscriber_answer"))
            await self.flush_candidates("subscriber")

    async def _wait_answer(self, answer: asyncio.Future[str]) -> str:
        """The client's answer, within SUBSCRIBER_ANSWER_TIMEOUT_S of time it
        was connected (a detached client cannot answer; its clock stops)."""
        waited_s = 0.0
        while True:
            try:
                return await asyncio.wait_for(asyncio.shield(answer), 1.0)
            except TimeoutError:
                if not self.detached:
                    waited_s += 1.0
                if waited_s >= SUBSCRIBER_ANSWER_TIMEOUT_S:
                    raise

    def resend_pending_offer(self, held: list[dict[str, Any]]) -> None:
        """After a resume: the offer the client may have lost with its old
        WebSocket, if it is still waiting for an answer and was not among the
        messages just replayed."""
        if self._last_offer is not None and self._answer is not None and not self._answer.done():
            if not any(message is self._last_offer for message in held):
                self.send(self._last_offer)

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
        self.remote: dict[str, RemoteParticipant] = {}
        #: participant id -> (when, last revision seen): a copy of its record
        #: with that revision or older is stale; a newer one (its node
        #: re-announcing it after a Redis outage made it look gone) is not.
        self.tombstones: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def size(self) -> int:
        return len(self.participants) + len(self.remote)

    def tracks(self) -> list[Track]:
        return [
            t
            for p in (*self.participants.values(), *self.remote.values())
            for t in p.tracks.values()
        ]

    def find_track(self, track_id: str) -> Track | None:
        for participant in (*self.participants.values(), *self.remote.values()):
            track = participant.tracks.get(track_id)
            if track is not None:
                return track
        return None

    def broadcast(self, message: dict[str, Any], exclude: Participant | None = None) -> None:
        for participant in list(self.participants.values()):
            if participant is not exclude and not participant.left:
                participant.send(message)

    def bury(self, participant_id: str, now_s: float, rev: int = 0) -> None:
        self.tombstones.pop(participant_id, None)
        self.tombstones[participant_id] = (now_s, rev)
        while self.tombstones and (
            len(self.tombstones) > MAX_TOMBSTONES
            or now_s - next(iter(self.tombstones.values()))[0] > TOMBSTONE_S
        ):
            self.tombstones.popitem(last=False)

    def buried(self, participant_id: str, rev: int, now_s: float) -> bool:
        """A record of a participant that left, no newer than when it left."""
        tomb = self.tombstones.get(participant_id)
        return tomb is not None and now_s - tomb[0] <= TOMBSTONE_S and rev <= tomb[1]


class RoomManager:
    def __init__(
        self,
        engine: MediaEngine,
        node_id: str,
        max_participants_per_room: int = 0,
        membership: Membership | None = None,
    ) -> None:
        self.engine = engine
        self.node_id = node_id
        self.max_participants_per_room = max_participants_per_room
        self.membership: Membership = membership or LocalMembership(NodeInfo(node_id))
        self.rooms: dict[str, Room] = {}
        #: Participants connected here, by resume token.
        self._by_token: dict[str, Participant] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._local_tracks: dict[str, Track] = {}
        self._missing_rounds: dict[str, int] = {}
        self._reconciler: asyncio.Task[None] | None = None
        self.membership.add_listener(self._on_event)
        self.membership.set_providers(self._records, self._load)

    # --- lifetime --------------------------------------------------------------

    async def start(self) -> None:
        if self.membership.shared:
            self._reconciler = asyncio.get_running_loop().create_task(
                self._reconcile_loop(), name="rooms-reconcile"
            )

    async def close(self) -> None:
        for participant in list(self._by_token.values()):
            if participant.detached:
                await self.leave(participant, "server_shutdown")
        if self._reconciler is not None:
            self._reconciler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconciler
            self._reconciler = None

    @property
    def _relay_address(self) -> str:
        relay = self.engine.relay
        if relay is None or relay.address is None:
            return ""
        return f"{relay.address[0]}:{relay.address[1]}"

    def _records(self) -> list[tuple[str, ParticipantRecord]]:
        relay = self._relay_address
        return [
            (room.name, p.record(self.node_id, relay))
            for room in self.rooms.values()
            for p in room.participants.values()
            if not p.left
        ]

    def _load(self) -> tuple[int, int]:
        participants = sum(len(r.participants) for r in self.rooms.values())
        downtracks = sum(
            len(peer.subscriber.downtracks)
            for peer in self.engine.peers.values()
            if peer.subscriber is not None
        )
        return participants, downtracks

    def _announce(self, participant: Participant) -> None:
        self.membership.announce(
            participant.room.name, participant.record(self.node_id, self._relay_address)
        )

    def find_local_media(self, track_id: str) -> PublishedTrack | None:
        """A track published on this node, for the relay to send elsewhere."""
        track = self._local_tracks.get(track_id)
        return track.media if track is not None else None

    # --- joining and leaving -----------------------------------------------------

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
        if self.membership.shared:
            # The freshest view of who is on other nodes, without waiting long
            # for Redis: if it is away the join goes on with what is known.
            await self._reread(room)
            if self.rooms.get(room_name) is not room:  # emptied meanwhile
                room = self.rooms.setdefault(room_name, room)
        # The same identity joining again replaces the older session, here or
        # on another node: it does not count against the room's size.
        replaced = sum(1 for p in room.participants.values() if p.identity == identity)
        replaced += sum(1 for r in room.remote.values() if r.identity == identity)
        if (
            self.max_participants_per_room
            and room.size() - replaced >= self.max_participants_per_room
        ):
            if not room.participants:
                self._forget_room(room)
            raise RoomFull(
                f"room {room_name!r} is full ({self.max_participants_per_room} participants)"
            )
        for other in list(room.participants.values()):
            if other.identity == identity:
                other.send(m.leave("duplicate_identity"))
                other.close_session("duplicate_identity")
                await self.leave(other)
        if any(r.identity == identity for r in room.remote.values()):
            self.membership.notify(room_name, {"type": "replace_identity", "identity": identity})
        # The awaits above may have emptied and forgotten the room (the old
        # session was its last member): join the room as it is now.
        live = self.rooms.setdefault(room_name, room)
        if live is not room:
            live.remote.update(room.remote)
            room = live
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
        others += [p.info() for p in room.remote.values() if p.identity != identity]
        room.participants[participant_id] = participant
        self._by_token[participant.resume_token] = participant
        send(
            m.joined(
                participant.info(),
                room.name,
                self.node_id,
                others,
                resume_token=participant.resume_token,
            )
        )
        room.broadcast(m.participant_joined(participant.info()), exclude=participant)
        self._announce(participant)
        if auto_subscribe and grants.subscribe:
            for track in room.tracks():
                if track.publisher_id != participant_id:
                    self.subscribe(participant, track)
        return participant

    async def leave(self, participant: Participant, reason: str = "left") -> None:
        self._by_token.pop(participant.resume_token, None)
        if participant._expiry is not None:
            participant._expiry.cancel()
            participant._expiry = None
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
        self.membership.retract(room.name, participant.id, reason)
        await participant.close()
        if not room.participants:
            self._forget_room(room)

    # --- resuming a session ----------------------------------------------------

    def detach(self, participant: Participant) -> None:
        """The client's WebSocket dropped without a goodbye: keep the
        participant, its media and its subscriptions, for RESUME_WINDOW_S, and
        hold what it should hear. Nobody else sees a difference."""
        if participant.left or participant.detached:
            return
        participant.detached = True
        participant.held = []
        loop = asyncio.get_running_loop()

        def give_up(reason: str = "resume_timeout") -> None:
            if participant.left or not participant.detached or participant.expired:
                return
            participant.expired = True  # from now on it cannot be resumed
            logger.info("participant %s: not resumed (%s); removing", participant.id, reason)
            task = loop.create_task(self.leave(participant, reason))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        def hold(message: dict[str, Any]) -> None:
            if len(participant.held) >= HELD_MESSAGES:
                give_up("resume_overflow")
                return
            participant.held.append(message)

        participant.send = hold
        participant.close_session = give_up
        participant._expiry = loop.call_later(RESUME_WINDOW_S, give_up)

    def resume(
        self,
        *,
        room_name: str,
        identity: str,
        resume_token: str,
        send: SendFn,
        close_session: CloseFn,
    ) -> tuple[Participant, list[dict[str, Any]]] | None:
        """Attach a new connection to a participant; returns it and the
        messages held for it, or None (unknown, expired, another room or
        identity: the caller joins afresh).

        The participant may still look attached: a connection that died
        without a FIN is noticed only by the WebSocket heartbeat or the idle
        timeout, and the client usually comes back sooner. Its token proves
        it is the same client, so the new connection takes over and the old
        session is closed without a word to anyone."""
        participant = self._by_token.get(resume_token)
        if (
            participant is None
            or participant.left
            or participant.expired
            or participant.closing
            or participant.room.name != room_name
            or participant.identity != identity
        ):
            return None
        del self._by_token[resume_token]
        if participant._expiry is not None:
            participant._expiry.cancel()
            participant._expiry = None
        held, participant.held = participant.held, []
        was_detached = participant.detached
        old_close = participant.close_session
        participant.detached = False
        participant.send = send
        participant.close_session = close_session
        participant.resume_token = secrets.token_urlsafe(24)
        self._by_token[participant.resume_token] = participant
        if not was_detached:
            old_close("resumed_elsewhere")  # its session sees it no longer owns the participant
        return participant, held

    def detached(self) -> list[Participant]:
        return [p for p in self._by_token.values() if p.detached]

    def others(self, participant: Participant) -> list[m.ParticipantInfo]:
        room = participant.room
        infos = [p.info() for p in room.participants.values() if p is not participant]
        return infos + [p.info() for p in room.remote.values()]

    def _forget_room(self, room: Room) -> None:
        """Nobody here is in the room any more: stop following it (relayed
        tracks with no subscriber left are released by the relay)."""
        if self.rooms.get(room.name) is room:
            del self.rooms[room.name]
        relay = self.engine.relay
        for remote in room.remote.values():
            for track in remote.tracks.values():
                if relay is not None:
                    relay.release_track(track.id)
        room.remote.clear()

    # --- tracks ----------------------------------------------------------------

    def publish_track(self, participant: Participant, track: Track) -> None:
        if participant.left:
            raise ValueError(f"participant {participant.id} has left")
        participant.tracks[track.id] = track
        self._local_tracks[track.id] = track
        room = participant.room
        room.broadcast(m.track_published(participant.id, track.info()), exclude=participant)
        self._announce(participant)
        for other in room.participants.values():
            if other is not participant and other.auto_subscribe and other.grants.subscribe:
                self.subscribe(other, track)

    def unpublish_track(self, participant: Participant, track: Track) -> None:
        self._drop_track(participant, track)
        participant.room.broadcast(
            m.track_unpublished(participant.id, track.id), exclude=participant
        )
        self._announce(participant)

    def set_muted(self, participant: Participant, track: Track, muted: bool) -> None:
        if track.muted == muted:
            return
        track.muted = muted
        participant.room.broadcast(
            m.track_muted(participant.id, track.id, muted), exclude=participant
        )
        self._announce(participant)

    def force_mute(self, participant: Participant, track: Track, muted: bool) -> None:
        """An admin mute: the server stops forwarding the track (whatever the
        client sends) and tells everyone, the publisher included."""
        track.admin_muted = muted
        if track.media is not None:
            track.media.block(muted, int(time.monotonic() * 1000))
        participant.send(m.track_muted(participant.id, track.id, muted))
        self.set_muted(participant, track, muted)

    # --- the room service (admin HTTP API) ---------------------------------------
    # Commands go through the membership as events, so the node a participant
    # is connected to carries them out, here or on another node.

    async def list_rooms(self) -> dict[str, int]:
        return await self.membership.rooms()

    async def room_members(self, room: str) -> list[ParticipantRecord]:
        return await self.membership.participants(room)

    def close_room(self, room: str) -> None:
        self.membership.notify(room, {"type": "close_room"})

    def remove_identity(self, room: str, identity: str) -> None:
        self.membership.notify(room, {"type": "remove_identity", "identity": identity})

    def mute_track(self, room: str, identity: str, track_id: str, muted: bool) -> None:
        self.membership.notify(
            room,
            {"type": "mute_track", "identity": identity, "track_id": track_id, "muted": muted},
        )

    def _drop_track(self, participant: Participant, track: Track) -> None:
        participant.tracks.pop(track.id, None)
        self._local_tracks.pop(track.id, None)
        self._unsubscribe_everyone(participant.room, track)
        if track.media is not None:
            track.media.close()
        if participant.peer.publisher is not None:
            participant.peer.publisher.remove_track(track.id)

    def _unsubscribe_everyone(self, room: Room, track: Track) -> None:
        for other in room.participants.values():
            # Preferences may be stored before a subscription: forget them all.
            other.quality.pop(track.id, None)
            other.video_size.pop(track.id, None)
            if other.peer.subscriber is not None and other.peer.subscriber.remove_track(track.id):
                other.negotiate_subscriber()

    def subscribe(self, participant: Participant, track: Track) -> bool:
        subscriber = participant.peer.ensure_subscriber()
        if subscriber.has_track(track.id):
            return False
        media = track.media
        if media is None:
            # Published on another node: receive it over the relay (once per
            # track on this node, however many subscribe here).
            relay = self.engine.relay
            if relay is None or track.spec is None or track.relay is None:
                logger.warning("track %s is on another node and there is no relay", track.id)
                return False
            media = relay.acquire(track.spec, track.relay, int(time.monotonic() * 1000))
        downtrack = subscriber.add_track(media, track.publisher_id)
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

    # --- other nodes -------------------------------------------------------------

    def _on_event(self, room_name: str, event: dict[str, Any]) -> None:
        room = self.rooms.get(room_name)
        if room is None:
            return  # nobody here is in that room
        kind = event.get("type")
        if kind == "participant":
            try:
                record = ParticipantRecord.from_json_obj(event.get("record"))
            except (KeyError, TypeError, ValueError):
                logger.warning("cluster: a participant event does not parse; skipped")
                return
            self._apply_record(room, record)
        elif kind == "participant_left":
            participant_id = event.get("participant")
            if isinstance(participant_id, str):
                remote = room.remote.get(participant_id)
                if remote is not None:
                    self._remove_remote(room, remote)
                # Buried even when unknown here: a re-read racing this event
                # must not bring it back.
                room.bury(participant_id, time.monotonic(), remote.rev if remote else 0)
        elif kind == "replace_identity" and event.get("node") != self.node_id:
            for participant in list(room.participants.values()):
                if participant.identity == event.get("identity"):
                    participant.send(m.leave("duplicate_identity"))
                    participant.close_session("duplicate_identity")
        elif kind == "close_room":
            for participant in list(room.participants.values()):
                participant.send(m.leave("room_closed"))
                participant.close_session("room_closed")
        elif kind == "remove_identity":
            for participant in list(room.participants.values()):
                if participant.identity == event.get("identity"):
                    participant.send(m.leave("removed"))
                    participant.close_session("removed")
        elif kind == "mute_track":
            for participant in list(room.participants.values()):
                if participant.identity != event.get("identity"):
                    continue
                track = participant.tracks.get(str(event.get("track_id")))
                if track is not None:
                    self.force_mute(participant, track, bool(event.get("muted")))

    def _apply_record(self, room: Room, record: ParticipantRecord) -> None:
        """Bring this node's view of one remote participant up to `record`,
        telling local participants what changed."""
        now_s = time.monotonic()
        if record.node_id == self.node_id or room.buried(record.participant_id, record.rev, now_s):
            return
        remote = room.remote.get(record.participant_id)
        if remote is not None and record.rev <= remote.rev:
            if record.rev == remote.rev:
                remote.updated_s = now_s  # confirmed present
            return
        relay = _parse_address(record.relay)
        tracks: dict[str, Track] = {}
        for raw in record.tracks:
            try:
                info, spec = track_from_record(raw)
            except RecordError as exc:
                logger.warning("cluster: skipping a track of %s: %s", record.participant_id, exc)
                continue
            tracks[info.id] = Track(
                id=info.id,
                kind=info.kind,
                source=info.source,
                name=info.name,
                codec=info.codec,
                mid="",
                publisher_id=record.participant_id,
                media=None,
                muted=info.muted,
                layers=info.layers,
                simulcast=info.simulcast,
                spec=spec,
                relay=relay,
            )
        if remote is None:
            remote = RemoteParticipant(
                record.participant_id, record.identity, record.name, record.node_id, record.rev
            )
            room.remote[remote.id] = remote
            room.broadcast(m.participant_joined(remote.info()))
        remote.rev = record.rev
        remote.node_id = record.node_id
        remote.updated_s = now_s
        old = remote.tracks
        for track_id, track in old.items():
            if track_id not in tracks:
                self._drop_remote_track(room, track)
                room.broadcast(m.track_unpublished(remote.id, track_id))
        for track_id, track in tracks.items():
            before = old.get(track_id)
            if before is None:
                remote.tracks[track_id] = track
                room.broadcast(m.track_published(remote.id, track.info()))
                for participant in list(room.participants.values()):
                    if participant.auto_subscribe and participant.grants.subscribe:
                        self.subscribe(participant, track)
            elif before.muted != track.muted:
                before.muted = track.muted
                room.broadcast(m.track_muted(remote.id, track_id, track.muted))
            if before is not None and before.relay != track.relay:
                before.relay = track.relay
        remote.tracks = {tid: old.get(tid) or t for tid, t in tracks.items()}

    def _drop_remote_track(self, room: Room, track: Track) -> None:
        self._unsubscribe_everyone(room, track)
        if self.engine.relay is not None:
            self.engine.relay.release_track(track.id)

    def _remove_remote(self, room: Room, remote: RemoteParticipant) -> None:
        room.remote.pop(remote.id, None)
        for track in list(remote.tracks.values()):
            self._drop_remote_track(room, track)
            room.broadcast(m.track_unpublished(remote.id, track.id))
        room.broadcast(m.participant_left(remote.id))

    async def _reread(self, room: Room) -> bool:
        """Re-read the room's members from Redis and apply the difference.
        Returns False when Redis did not answer (nothing is removed then)."""
        try:
            alive = {
                n.node_id for n in await asyncio.wait_for(self.membership.nodes(), READ_TIMEOUT_S)
            }
            records = await asyncio.wait_for(
                self.membership.participants(room.name), READ_TIMEOUT_S
            )
        except Exception as exc:  # noqa: BLE001 - Redis away: keep the current view
            logger.debug("cluster: re-reading room %s failed: %s", room.name, exc)
            return False
        present = set()
        for record in records:
            node = record.node_id
            if node not in alive and self._missing_rounds.get(node, 0) >= MISSING_NODE_ROUNDS:
                # Left behind by a node that died (a reaper that failed half
                # way, or a Redis that forgot the node): gone, here and there.
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(
                        self.membership.remove_participant(room.name, record.participant_id),
                        READ_TIMEOUT_S,
                    )
                continue
            present.add(record.participant_id)
            self._apply_record(room, record)
        now_s = time.monotonic()
        for remote in list(room.remote.values()):
            if remote.id in present or now_s - remote.updated_s < RECENT_UPDATE_S:
                continue
            # A node listed alive wrote its state before its key: absent means
            # gone. A node not listed is dead or not yet back after a Redis
            # restart: give it MISSING_NODE_ROUNDS re-reads.
            if (
                remote.node_id in alive
                or self._missing_rounds.get(remote.node_id, 0) >= MISSING_NODE_ROUNDS
            ):
                self._remove_remote(room, remote)
                room.bury(remote.id, now_s, remote.rev)
        return True

    async def _reconcile_loop(self) -> None:
        while True:
            await asyncio.sleep(RECONCILE_S)
            try:
                alive = {
                    n.node_id
                    for n in await asyncio.wait_for(self.membership.nodes(), READ_TIMEOUT_S)
                }
            except Exception:  # noqa: BLE001 - Redis away: nothing to learn now
                continue
            nodes = {r.node_id for room in self.rooms.values() for r in room.remote.values()}
            self._missing_rounds = {
                node: self._missing_rounds.get(node, 0) + 1 for node in nodes if node not in alive
            }
            for room in list(self.rooms.values()):
                try:
                    await self._reread(room)
                except Exception:  # noqa: BLE001 - one room's bug must not stop the loop
                    logger.exception("cluster: reconciling room %s failed", room.name)

    def stats(self) -> dict[str, int]:
        return {
            "rooms": len(self.rooms),
            "participants": sum(len(r.participants) for r in self.rooms.values()),
            "remote_participants": sum(len(r.remote) for r in self.rooms.values()),
            "tracks": sum(len(r.tracks()) for r in self.rooms.values()),
        }


def _parse_address(text: str) -> tuple[str, int] | None:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host.strip("[]"), int(port)
