"""Membership: the cluster's shared view of nodes, rooms and participants.

`LocalMembership` keeps it in this process (one node, no Redis: the default);
`RedisMembership` keeps it in Redis so every node sees every other. Both
deliver room events (participant joined/left, track published/unpublished/
muted) to the listeners of every node, their own included.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol

from signaling.cluster.keys import HEARTBEAT_S, NODE_TTL_S, Keys

logger = logging.getLogger(__name__)

EventListener = Callable[[str, dict[str, Any]], None]
#: Redis calls that take longer than this count as failures.
REDIS_TIMEOUT_S = 2.0
#: Rooms a listing returns at most.
MAX_ROOMS_LISTED = 10_000
#: Membership writes waiting for Redis; beyond this the node re-syncs instead.
WRITE_QUEUE_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class NodeInfo:
    node_id: str
    signaling_url: str = ""
    relay_host: str = ""
    relay_port: int = 0
    #: Load figures placement uses (participants and forwarded streams).
    participants: int = 0
    downtracks: int = 0
    started_at: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True)
class ParticipantRecord:
    participant_id: str
    node_id: str
    identity: str
    name: str = ""
    tracks: tuple[dict[str, Any], ...] = ()
    #: Grows with every change a node announces, so a stale copy (a slow
    #: read racing an event) never replaces a newer one.
    rev: int = 0
    #: "host:port" of the node's relay, where other nodes ask for its tracks.
    relay: str = ""

    def to_json(self) -> str:
        data = asdict(self)
        data["tracks"] = list(self.tracks)
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> ParticipantRecord:
        """Raises ValueError, TypeError or KeyError for what is not a record."""
        try:
            data = json.loads(text)
        except RecursionError:
            raise ValueError("a participant record nested too deep") from None
        return cls.from_json_obj(data)

    @classmethod
    def from_json_obj(cls, data: Any) -> ParticipantRecord:
        if not isinstance(data, dict):
            raise TypeError("a participant record must be an object")
        tracks = data.get("tracks", ())
        if not isinstance(tracks, list | tuple):
            raise TypeError("tracks must be a list")
        return cls(
            participant_id=str(data["participant_id"]),
            node_id=str(data["node_id"]),
            identity=str(data["identity"]),
            name=str(data.get("name", "")),
            tracks=tuple(tracks),
            rev=_revision(data.get("rev", 0)),
            relay=str(data.get("relay", "")),
        )


StateProvider = Callable[[], list[tuple[str, ParticipantRecord]]]
LoadProvider = Callable[[], tuple[int, int]]


def _revision(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("rev must be a non-negative integer")
    return value


class Membership(Protocol):
    node: NodeInfo
    #: True when other nodes share this view (Redis), False in-process.
    shared: bool

    def set_providers(self, state: StateProvider, load: LoadProvider) -> None: ...
    async def cluster_secret(self) -> bytes: ...
    def announce(self, room: str, record: ParticipantRecord) -> None: ...
    def retract(self, room: str, participant_id: str, reason: str) -> None: ...
    def notify(self, room: str, event: dict[str, Any]) -> None: ...
    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def update_load(self, participants: int, downtracks: int) -> None: ...
    async def nodes(self) -> list[NodeInfo]: ...
    async def put_participant(self, room: str, record: ParticipantRecord) -> None: ...
    async def remove_participant(self, room: str, participant_id: str) -> None: ...
    async def participants(self, room: str) -> list[ParticipantRecord]: ...
    async def rooms(self) -> dict[str, int]: ...
    async def publish_event(self, room: str, event: dict[str, Any]) -> None: ...
    def add_listener(self, listener: EventListener) -> None: ...


class LocalMembership:
    """One node, no Redis: the same interface over dictionaries."""

    shared = False

    def __init__(self, node: NodeInfo) -> None:
        self.node = node
        self._rooms: dict[str, dict[str, ParticipantRecord]] = {}
        self._listeners: list[EventListener] = []
        self._secret = secrets.token_bytes(32)

    def set_providers(self, state: StateProvider, load: LoadProvider) -> None:
        return None  # nothing to re-publish: this process is the whole view

    async def cluster_secret(self) -> bytes:
        return self._secret

    def announce(self, room: str, record: ParticipantRecord) -> None:
        self._rooms.setdefault(room, {})[record.participant_id] = record
        _deliver(self._listeners, room, _upsert_event(record, self.node.node_id))

    def retract(self, room: str, participant_id: str, reason: str) -> None:
        members = self._rooms.get(room)
        if members is not None:
            members.pop(participant_id, None)
            if not members:
                del self._rooms[room]
        _deliver(self._listeners, room, _left_event(participant_id, reason, self.node.node_id))

    def notify(self, room: str, event: dict[str, Any]) -> None:
        _deliver(self._listeners, room, {**event, "node": self.node.node_id})

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._rooms.clear()

    async def update_load(self, participants: int, downtracks: int) -> None:
        self.node = NodeInfo(
            **{**asdict(self.node), "participants": participants, "downtracks": downtracks}
        )

    async def nodes(self) -> list[NodeInfo]:
        return [self.node]

    async def put_participant(self, room: str, record: ParticipantRecord) -> None:
        self._rooms.setdefault(room, {})[record.participant_id] = record

    async def remove_participant(self, room: str, participant_id: str) -> None:
        members = self._rooms.get(room)
        if members is not None:
            members.pop(participant_id, None)
            if not members:
                del self._rooms[room]

    async def participants(self, room: str) -> list[ParticipantRecord]:
        return list(self._rooms.get(room, {}).values())

    async def rooms(self) -> dict[str, int]:
        """Room name -> participants, for every room with someone in it."""
        return {room: len(members) for room, members in self._rooms.items() if members}

    async def publish_event(self, room: str, event: dict[str, Any]) -> None:
        _deliver(self._listeners, room, {**event, "node": self.node.node_id})

    def add_listener(self, listener: EventListener) -> None:
        self._listeners.append(listener)


def _upsert_event(record: ParticipantRecord, node_id: str) -> dict[str, Any]:
    return {"type": "participant", "node": node_id, "record": json.loads(record.to_json())}


def _left_event(participant_id: str, reason: str, node_id: str) -> dict[str, Any]:
    return {
        "type": "participant_left",
        "node": node_id,
        "participant": participant_id,
        "reason": reason,
    }


def _deliver(listeners: list[EventListener], room: str, event: dict[str, Any]) -> None:
    for listener in listeners:
        try:
            listener(room, event)
        except Exception:  # noqa: BLE001 - one listener must not stop the others
            logger.exception("membership listener failed")


class RedisMembership:
    """Nodes and rooms in Redis (redis.asyncio); events over pub/sub.

    - The node's record lives under a key with a TTL that a heartbeat renews,
      so a node killed without a goodbye disappears within NODE_TTL_S; the
      survivors' heartbeats then reap its participants (`reap_dead_nodes`).
    - Writes (`announce`, `retract`, `notify`) never make a join wait for
      Redis: they go, in order, through a bounded queue that one task drains.
      When a write fails (Redis away) the node is marked dirty and its next
      successful heartbeat re-writes its whole state from the state provider,
      which is also what happens when the heartbeat finds its record gone (a
      Redis restart lost everything). Calls in progress never depend on Redis:
      media and the relay between nodes do not touch it.
    - The state is written before the node's key and the node is added to the
      node set last, so a node that is listed alive has its participants in
      Redis: readers may trust "alive but absent" to mean "gone".
    """

    shared = True

    def __init__(self, node: NodeInfo, url: str, cluster: str = "default") -> None:
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import ExponentialBackoff
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        self.node = node
        self.keys = Keys(cluster)
        # After a Redis restart every pooled connection is dead: a command that
        # meets one reconnects and tries again instead of failing.
        self._redis = aioredis.from_url(
            url,
            socket_timeout=REDIS_TIMEOUT_S,
            socket_connect_timeout=REDIS_TIMEOUT_S,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
            retry_on_error=[RedisConnectionError, RedisTimeoutError],
            health_check_interval=10,
        )
        self._listeners: list[EventListener] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._queue: asyncio.Queue[tuple[str, str, Any]] = asyncio.Queue(WRITE_QUEUE_LIMIT)
        self._state: StateProvider = list
        self._load: LoadProvider = lambda: (0, 0)
        self._dirty = False
        self._secret: bytes | None = None
        self._on_secret: Callable[[bytes], None] | None = None
        #: Writes and a re-sync never interleave: a re-sync's snapshot of the
        #: local state and its writes happen with no queued write in between.
        self._lock = asyncio.Lock()
        #: Since when Redis has answered without a failure (monotonic s).
        self._connected_since = time.monotonic()
        self.errors = 0
        self.resyncs = 0
        #: Round-trip of the last heartbeat, for /metrics and placement.
        self.rtt_ms = 0.0
        self.connected = False

    def set_providers(self, state: StateProvider, load: LoadProvider) -> None:
        self._state = state
        self._load = load

    def on_secret_change(self, listener: Callable[[bytes], None]) -> None:
        """Called with the cluster secret when Redis holds another one than
        this node's (it lost its copy and a starting node made a new one)."""
        self._on_secret = listener

    async def cluster_secret(self) -> bytes:
        """The relay secret all nodes share: made by the first node, kept in
        Redis, and written back by every node if Redis loses it."""
        if self._secret is None:
            await self._redis.set(self.keys.secret, secrets.token_hex(32), nx=True)
            value = await self._redis.get(self.keys.secret)
            if value is None:
                raise RuntimeError("Redis lost the cluster secret while it was being made")
            self._secret = bytes.fromhex(value.decode())
        return self._secret

    async def start(self) -> None:
        await self.cluster_secret()
        await self._register(sync=True)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._heartbeat_loop(), name="cluster-heartbeat"),
            loop.create_task(self._event_loop(), name="cluster-events"),
            loop.create_task(self._writer_loop(), name="cluster-writer"),
        ]

    async def close(self) -> None:
        """Leave the cluster: flush queued writes (bounded), remove this node's
        participants and record."""
        writer = self._tasks[2] if len(self._tasks) == 3 else None
        if writer is not None and not writer.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), REDIS_TIMEOUT_S)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        with contextlib.suppress(Exception):
            for room, record in await self._clear_own_state(self.node.node_id):
                await self._publish(
                    room, _left_event(record.participant_id, "node_stopped", self.node.node_id)
                )
            await self._redis.srem(self.keys.nodes, self.node.node_id)
            await self._redis.delete(self.keys.node(self.node.node_id))
        await self._redis.aclose()

    # --- this node's record and state ----------------------------------------

    async def _register(self, sync: bool = False) -> None:
        started = time.monotonic()
        participants, downtracks = self._load()
        self.node = replace(self.node, participants=participants, downtracks=downtracks)
        node_key = self.keys.node(self.node.node_id)
        async with self._lock:
            if sync or self._dirty or not await self._redis.exists(node_key):
                self._dirty = False
                await self._sync_state()
            pipe = self._redis.pipeline()
            if self._secret is not None:
                pipe.set(self.keys.secret, self._secret.hex(), nx=True)
                pipe.get(self.keys.secret)
            pipe.set(node_key, json.dumps(asdict(self.node)), ex=NODE_TTL_S)
            pipe.sadd(self.keys.nodes, self.node.node_id)
            results = await pipe.execute()
        if self._secret is not None:
            self._adopt_secret(results[1])
        self.rtt_ms = (time.monotonic() - started) * 1000
        if not self.connected:
            self._connected_since = time.monotonic()
        self.connected = True

    def _adopt_secret(self, stored: bytes | None) -> None:
        if stored is None:
            return
        try:
            secret = bytes.fromhex(stored.decode())
        except (UnicodeDecodeError, ValueError):
            logger.error("cluster: the relay secret in Redis is not hex; keeping this node's")
            return
        if secret != self._secret:
            logger.warning("cluster: Redis holds another relay secret; adopting it")
            self._secret = secret
            if self._on_secret is not None:
                self._on_secret(secret)

    async def _sync_state(self) -> None:
        """Make Redis hold exactly this node's participants: write every local
        record, delete this node's records that are no longer here."""
        self.resyncs += 1
        me = self.node.node_id
        local = self._state()
        wanted: dict[str, dict[str, ParticipantRecord]] = {}
        for room, record in local:
            wanted.setdefault(room, {})[record.participant_id] = record
        rooms = {r.decode() for r in await self._redis.smembers(self.keys.node_rooms(me))}
        for room in rooms - wanted.keys():
            members = await self._redis.hgetall(self.keys.room(room))
            stale = [pid for pid, raw in members.items() if _node_of(raw) == me]
            if stale:
                await self._redis.hdel(self.keys.room(room), *stale)
            await self._redis.srem(self.keys.node_rooms(me), room)
        for room, records in wanted.items():
            members = await self._redis.hgetall(self.keys.room(room))
            stale = [
                pid
                for pid, raw in members.items()
                if pid.decode() not in records and _node_of(raw) == me
            ]
            pipe = self._redis.pipeline()
            if stale:
                pipe.hdel(self.keys.room(room), *stale)
            pipe.hset(
                self.keys.room(room),
                mapping={pid: record.to_json() for pid, record in records.items()},
            )
            pipe.sadd(self.keys.node_rooms(me), room)
            await pipe.execute()
        if self.resyncs > 1:
            # Other nodes learn at once rather than at their next re-read.
            pipe = self._redis.pipeline()
            for room, record in local:
                pipe.publish(self.keys.events(room), json.dumps(_upsert_event(record, me)))
            await pipe.execute()
            logger.info("cluster: re-published this node's %d participants", len(local))

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            try:
                await self._register()
                # Right after Redis comes back every node's key may have
                # expired: give live nodes a TTL and a beat to re-register
                # before anyone is declared dead.
                if time.monotonic() - self._connected_since >= NODE_TTL_S + HEARTBEAT_S:
                    await self.reap_dead_nodes()
            except Exception as exc:  # noqa: BLE001 - Redis away: retry next beat
                self._fail("heartbeat", exc)

    def _fail(self, what: str, exc: BaseException) -> None:
        self.errors += 1
        self._dirty = True
        if self.connected:
            logger.warning("cluster: Redis %s failed (%s); will re-sync when it is back", what, exc)
        self.connected = False

    # --- ordered writes --------------------------------------------------------

    def _enqueue(self, op: str, room: str, arg: Any) -> None:
        try:
            self._queue.put_nowait((op, room, arg))
        except asyncio.QueueFull:
            # Redis has been away long: drop the backlog, re-sync when back.
            self._dirty = True
            while not self._queue.empty():
                self._queue.get_nowait()
                self._queue.task_done()

    def announce(self, room: str, record: ParticipantRecord) -> None:
        self._enqueue("put", room, record)

    def retract(self, room: str, participant_id: str, reason: str) -> None:
        self._enqueue("remove", room, (participant_id, reason))

    def notify(self, room: str, event: dict[str, Any]) -> None:
        self._enqueue("event", room, event)

    async def _writer_loop(self) -> None:
        while True:
            op, room, arg = await self._queue.get()
            try:
                async with self._lock:
                    await self._write(op, room, arg)
            except Exception as exc:  # noqa: BLE001 - re-synced by the heartbeat
                self._fail("write", exc)
            finally:
                self._queue.task_done()

    async def _write(self, op: str, room: str, arg: Any) -> None:
        if op == "put":
            await self.put_participant(room, arg)
            await self._publish(room, _upsert_event(arg, self.node.node_id))
        elif op == "remove":
            participant_id, reason = arg
            await self.remove_participant(room, participant_id)
            await self._publish(room, _left_event(participant_id, reason, self.node.node_id))
        else:
            await self.publish_event(room, arg)

    # --- events ----------------------------------------------------------------

    async def _event_loop(self) -> None:
        while True:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.psubscribe(self.keys.events_pattern)
                async for message in pubsub.listen():
                    if message.get("type") != "pmessage":
                        continue
                    channel = message["channel"]
                    if isinstance(channel, bytes):
                        channel = channel.decode()
                    try:
                        event = json.loads(message["data"])
                    except (TypeError, ValueError):
                        continue
                    if isinstance(event, dict):
                        _deliver(self._listeners, self.keys.room_of_channel(channel), event)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis away: resubscribe
                self._fail("subscription", exc)
                await asyncio.sleep(0.5)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    # --- reads and direct writes -------------------------------------------------

    async def update_load(self, participants: int, downtracks: int) -> None:
        self._load = lambda: (participants, downtracks)
        await self._register()

    async def nodes(self) -> list[NodeInfo]:
        ids = sorted(m.decode() for m in await self._redis.smembers(self.keys.nodes))
        if not ids:
            return []
        records = await self._redis.mget([self.keys.node(i) for i in ids])
        alive = []
        for record in records:
            if record is None:
                continue  # expired: a dead node, reaped by reap_dead_nodes()
            with contextlib.suppress(TypeError, ValueError):
                alive.append(NodeInfo(**json.loads(record)))
        return alive

    async def reap_dead_nodes(self) -> list[str]:
        """Remove the nodes whose heartbeat expired and their participants
        (announcing participant_left for each); returns their ids."""
        ids = [m.decode() for m in await self._redis.smembers(self.keys.nodes)]
        dead = []
        for node_id in ids:
            if node_id == self.node.node_id or await self._redis.exists(self.keys.node(node_id)):
                continue
            # Only one survivor removes a dead node: SREM returns 1 to one caller.
            if await self._redis.srem(self.keys.nodes, node_id):
                dead.append(node_id)
                logger.warning(
                    "cluster: node %s stopped beating; removing its participants", node_id
                )
                for room, record in await self._clear_own_state(node_id):
                    event = _left_event(record.participant_id, "node_lost", self.node.node_id)
                    event["from_node"] = node_id
                    await self._publish(room, event)
        return dead

    async def _clear_own_state(self, node_id: str) -> list[tuple[str, ParticipantRecord]]:
        removed = []
        rooms = [r.decode() for r in await self._redis.smembers(self.keys.node_rooms(node_id))]
        for room in rooms:
            members = await self._redis.hgetall(self.keys.room(room))
            for pid, raw in members.items():
                try:
                    record = ParticipantRecord.from_json(raw)
                except (KeyError, TypeError, ValueError):
                    continue
                if record.node_id == node_id:
                    await self._redis.hdel(self.keys.room(room), pid)
                    removed.append((room, record))
        await self._redis.delete(self.keys.node_rooms(node_id))
        return removed

    async def put_participant(self, room: str, record: ParticipantRecord) -> None:
        pipe = self._redis.pipeline()
        pipe.hset(self.keys.room(room), record.participant_id, record.to_json())
        pipe.sadd(self.keys.node_rooms(self.node.node_id), room)
        await pipe.execute()

    async def remove_participant(self, room: str, participant_id: str) -> None:
        await self._redis.hdel(self.keys.room(room), participant_id)

    async def rooms(self) -> dict[str, int]:
        """Room name -> participants on every node (at most MAX_ROOMS_LISTED)."""
        names = []
        prefix = self.keys.room("")
        async for key in self._redis.scan_iter(match=prefix + "*", count=500):
            names.append(key.decode()[len(prefix) :])
            if len(names) >= MAX_ROOMS_LISTED:
                break
        pipe = self._redis.pipeline()
        for name in names:
            pipe.hlen(self.keys.room(name))
        counts = await pipe.execute()
        return {name: n for name, n in zip(names, counts, strict=True) if n}

    async def participants(self, room: str) -> list[ParticipantRecord]:
        members = await self._redis.hgetall(self.keys.room(room))
        records = []
        for raw in members.values():
            try:
                records.append(ParticipantRecord.from_json(raw))
            except (KeyError, TypeError, ValueError):
                logger.warning("cluster: skipping a participant record that does not parse")
        return records

    async def _publish(self, room: str, event: dict[str, Any]) -> None:
        await self._redis.publish(self.keys.events(room), json.dumps(event))

    async def publish_event(self, room: str, event: dict[str, Any]) -> None:
        await self._publish(room, {"node": self.node.node_id, **event})

    def add_listener(self, listener: EventListener) -> None:
        self._listeners.append(listener)


def _node_of(raw: bytes) -> str | None:
    try:
        return str(json.loads(raw)["node_id"])
    except (KeyError, TypeError, ValueError):
        return None
