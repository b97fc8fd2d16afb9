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
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from signaling.cluster.keys import HEARTBEAT_S, NODE_TTL_S, Keys

logger = logging.getLogger(__name__)

EventListener = Callable[[str, dict[str, Any]], None]
#: Redis calls that take longer than this count as failures.
REDIS_TIMEOUT_S = 2.0


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

    def to_json(self) -> str:
        data = asdict(self)
        data["tracks"] = list(self.tracks)
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> ParticipantRecord:
        data = json.loads(text)
        return cls(
            participant_id=str(data["participant_id"]),
            node_id=str(data["node_id"]),
            identity=str(data["identity"]),
            name=str(data.get("name", "")),
            tracks=tuple(data.get("tracks", ())),
        )


class Membership(Protocol):
    node: NodeInfo

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def update_load(self, participants: int, downtracks: int) -> None: ...
    async def nodes(self) -> list[NodeInfo]: ...
    async def put_participant(self, room: str, record: ParticipantRecord) -> None: ...
    async def remove_participant(self, room: str, participant_id: str) -> None: ...
    async def participants(self, room: str) -> list[ParticipantRecord]: ...
    async def publish_event(self, room: str, event: dict[str, Any]) -> None: ...
    def add_listener(self, listener: EventListener) -> None: ...


class LocalMembership:
    """One node, no Redis: the same interface over dictionaries."""

    def __init__(self, node: NodeInfo) -> None:
        self.node = node
        self._rooms: dict[str, dict[str, ParticipantRecord]] = {}
        self._listeners: list[EventListener] = []

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

    async def publish_event(self, room: str, event: dict[str, Any]) -> None:
        _deliver(self._listeners, room, {**event, "node": self.node.node_id})

    def add_listener(self, listener: EventListener) -> None:
        self._listeners.append(listener)


def _deliver(listeners: list[EventListener], room: str, event: dict[str, Any]) -> None:
    for listener in listeners:
        try:
            listener(room, event)
        except Exception:  # noqa: BLE001 - one listener must not stop the others
            logger.exception("membership listener failed")


class RedisMembership:
    """Nodes and rooms in Redis (redis.asyncio); events over pub/sub.

    The node's record lives under a key with a TTL that a heartbeat renews,
    so a node killed without a goodbye disappears within NODE_TTL_S; its
    participants are then removed by `reap_dead_nodes` on the survivors.
    """

    def __init__(self, node: NodeInfo, url: str, cluster: str = "default") -> None:
        import redis.asyncio as aioredis

        self.node = node
        self.keys = Keys(cluster)
        self._redis = aioredis.from_url(
            url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S
        )
        self._listeners: list[EventListener] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.errors = 0

    async def start(self) -> None:
        await self._register()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._heartbeat_loop(), name="cluster-heartbeat"),
            loop.create_task(self._event_loop(), name="cluster-events"),
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        with contextlib.suppress(Exception):
            await self._clear_own_state(self.node.node_id)
            await self._redis.srem(self.keys.nodes, self.node.node_id)
            await self._redis.delete(self.keys.node(self.node.node_id))
        await self._redis.aclose()

    async def _register(self) -> None:
        pipe = self._redis.pipeline()
        pipe.sadd(self.keys.nodes, self.node.node_id)
        pipe.set(self.keys.node(self.node.node_id), json.dumps(asdict(self.node)), ex=NODE_TTL_S)
        await pipe.execute()

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            try:
                await self._register()
            except Exception as exc:  # noqa: BLE001 - Redis away: retry next beat
                self.errors += 1
                logger.warning("cluster heartbeat failed: %s", exc)

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
                    _deliver(self._listeners, self.keys.room_of_channel(channel), event)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis away: resubscribe
                self.errors += 1
                logger.warning("cluster events lost their connection: %s", exc)
                await asyncio.sleep(0.5)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    async def update_load(self, participants: int, downtracks: int) -> None:
        self.node = NodeInfo(
            **{**asdict(self.node), "participants": participants, "downtracks": downtracks}
        )
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
                for room, record in await self._clear_own_state(node_id):
                    await self.publish_event(
                        room,
                        {
                            "type": "participant_left",
                            "participant": record.participant_id,
                            "reason": "node_lost",
                            "from_node": node_id,
                        },
                    )
        return dead

    async def _clear_own_state(self, node_id: str) -> list[tuple[str, ParticipantRecord]]:
        removed = []
        rooms = [r.decode() for r in await self._redis.smembers(self.keys.node_rooms(node_id))]
        for room in rooms:
            members = await self._redis.hgetall(self.keys.room(room))
            for pid, raw in members.items():
                record = ParticipantRecord.from_json(raw)
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

    async def participants(self, room: str) -> list[ParticipantRecord]:
        members = await self._redis.hgetall(self.keys.room(room))
        return [ParticipantRecord.from_json(raw) for raw in members.values()]

    async def publish_event(self, room: str, event: dict[str, Any]) -> None:
        event = {"node": self.node.node_id, **event}
        await self._redis.publish(self.keys.events(room), json.dumps(event))

    def add_listener(self, listener: EventListener) -> None:
        self._listeners.append(listener)
