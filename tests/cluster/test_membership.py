"""Membership against a real redis-server (and the in-process default)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from signaling.cluster import keys as cluster_keys
from signaling.cluster.keys import Keys
from signaling.cluster.membership import (
    LocalMembership,
    NodeInfo,
    ParticipantRecord,
    RedisMembership,
)
from tests.cluster.conftest import RedisServer


async def _eventually(check: Any, timeout_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def test_key_names_are_prefixed_and_validated() -> None:
    k = Keys("prod")
    assert k.nodes == "sfu:prod:nodes"
    assert k.node("n1") == "sfu:prod:node:n1"
    assert k.room("r") == "sfu:prod:room:r"
    assert k.events("r") == "sfu:prod:events:r"
    assert k.room_of_channel(k.events("a:b")) == "a:b"
    for bad in ("", "a:b", "x*"):
        with pytest.raises(ValueError):
            Keys(bad)


async def test_two_nodes_see_one_room_and_each_others_events(redis_server: RedisServer) -> None:
    a = RedisMembership(NodeInfo("a", signaling_url="ws://a"), redis_server.url, "t")
    b = RedisMembership(NodeInfo("b", signaling_url="ws://b"), redis_server.url, "t")
    seen_by_b: list[tuple[str, dict[str, Any]]] = []
    b.add_listener(lambda room, event: seen_by_b.append((room, event)))
    await a.start()
    await b.start()
    try:
        assert [n.node_id for n in await a.nodes()] == ["a", "b"]
        await a.put_participant("room1", ParticipantRecord("PA_1", "a", "alice"))
        await b.put_participant("room1", ParticipantRecord("PA_2", "b", "bob"))
        members = {r.participant_id: r.node_id for r in await b.participants("room1")}
        assert members == {"PA_1": "a", "PA_2": "b"}
        await asyncio.sleep(0.2)  # b's subscription is in place
        await a.publish_event("room1", {"type": "participant_joined", "participant": "PA_1"})
        await _eventually(lambda: seen_by_b)
        assert seen_by_b[0] == (
            "room1",
            {"node": "a", "type": "participant_joined", "participant": "PA_1"},
        )
        await a.remove_participant("room1", "PA_1")
        assert [r.participant_id for r in await b.participants("room1")] == ["PA_2"]
        await a.update_load(participants=3, downtracks=12)
        (node_a,) = [n for n in await b.nodes() if n.node_id == "a"]
        assert (node_a.participants, node_a.downtracks) == (3, 12)
    finally:
        await a.close()
        await b.close()


async def test_a_node_that_stops_beating_is_reaped_with_its_participants(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cluster_keys, "NODE_TTL_S", 1)
    monkeypatch.setattr("signaling.cluster.membership.NODE_TTL_S", 1)
    monkeypatch.setattr("signaling.cluster.membership.HEARTBEAT_S", 0.3)
    dead = RedisMembership(NodeInfo("dead"), redis_server.url, "t")
    alive = RedisMembership(NodeInfo("alive"), redis_server.url, "t")
    left: list[dict[str, Any]] = []
    alive.add_listener(lambda room, event: left.append(event))
    await dead.start()
    await alive.start()
    try:
        await dead.put_participant("r", ParticipantRecord("PA_d", "dead", "dora"))
        await alive.put_participant("r", ParticipantRecord("PA_a", "alive", "al"))
        # Kill it without a goodbye: its heartbeat stops, its state stays.
        for task in dead._tasks:
            task.cancel()
        await asyncio.sleep(1.5)
        assert [n.node_id for n in await alive.nodes()] == ["alive"]
        # The survivor's heartbeat reaps it; a second reaping finds nothing.
        await _eventually(lambda: any(e.get("participant") == "PA_d" for e in left))
        assert await alive.reap_dead_nodes() == []
        assert [r.participant_id for r in await alive.participants("r")] == ["PA_a"]
        await _eventually(lambda: any(e.get("participant") == "PA_d" for e in left))
        assert left[-1]["reason"] == "node_lost"
    finally:
        await alive.close()
        await dead._redis.aclose()


async def test_events_survive_a_redis_restart(redis_server: RedisServer) -> None:
    a = RedisMembership(NodeInfo("a"), redis_server.url, "t")
    got: list[dict[str, Any]] = []
    a.add_listener(lambda room, event: got.append(event))
    await a.start()
    try:
        redis_server.stop()
        await asyncio.sleep(0.5)
        redis_server.start()
        # The heartbeat re-registers and the event loop resubscribes on its own.
        await _eventually(lambda: a.errors > 0, 5)

        async def registered() -> bool:
            try:
                return [n.node_id for n in await a.nodes()] == ["a"]
            except Exception:  # noqa: BLE001 - reconnecting
                return False

        deadline = asyncio.get_running_loop().time() + 10
        while not await registered():
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.2)
        for _ in range(50):
            await a.publish_event("r", {"type": "ping"})
            if got:
                break
            await asyncio.sleep(0.1)
        assert got and got[0]["type"] == "ping"
    finally:
        await a.close()


async def test_local_membership_has_the_same_shape() -> None:
    local = LocalMembership(NodeInfo("solo"))
    events: list[tuple[str, dict[str, Any]]] = []
    local.add_listener(lambda room, event: events.append((room, event)))
    await local.start()
    await local.put_participant("r", ParticipantRecord("PA_1", "solo", "x"))
    assert [r.identity for r in await local.participants("r")] == ["x"]
    await local.publish_event("r", {"type": "participant_joined"})
    assert events == [("r", {"type": "participant_joined", "node": "solo"})]
    await local.remove_participant("r", "PA_1")
    assert await local.participants("r") == []
    await local.update_load(2, 5)
    assert (await local.nodes())[0].participants == 2
    await local.close()


def test_participant_record_round_trips() -> None:
    record = ParticipantRecord("PA_1", "n", "id", "Name", ({"track_id": "TR_1", "kind": "audio"},))
    assert ParticipantRecord.from_json(record.to_json()) == record


async def test_a_node_adopts_the_secret_a_newer_node_made_after_redis_lost_it(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("signaling.cluster.membership.HEARTBEAT_S", 0.2)
    a = RedisMembership(NodeInfo("a"), redis_server.url, "t")
    adopted: list[bytes] = []
    a.on_secret_change(adopted.append)
    await a.start()
    b: RedisMembership | None = None
    try:
        old = await a.cluster_secret()
        await a._redis.flushall()  # Redis lost everything...
        b = RedisMembership(NodeInfo("b"), redis_server.url, "t")
        new = await b.cluster_secret()  # ...and a starting node made a new secret
        assert new != old
        await _eventually(lambda: adopted == [new], 5)
        assert await a.cluster_secret() == new
    finally:
        await a.close()
        if b is not None:
            await b.close()
