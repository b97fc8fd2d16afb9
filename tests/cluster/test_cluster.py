"""Rooms that span nodes: real node processes, a real redis-server, real bots.

Each test starts its own redis-server and 2-3 `sfu serve --redis-url` processes
on 127.0.0.1 and joins bots to them over real ICE/DTLS/SRTP."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sfu_bot.client import Bot
from tests.cluster.conftest import RedisServer
from tests.cluster.nodes import NodeProcess, token
from tests.integration.test_simulcast import assert_one_clean_stream, layer_changed

pytestmark = pytest.mark.timeout(120)

StartNodes = Callable[..., Awaitable[list[NodeProcess]]]


@pytest.fixture
async def start_nodes(redis_server: RedisServer, tmp_path: Path) -> AsyncIterator[StartNodes]:
    started: list[NodeProcess] = []

    async def start(*names: str, workers: int = 1) -> list[NodeProcess]:
        nodes = [NodeProcess(n, redis_server.url, tmp_path, workers=workers) for n in names]
        for node in nodes:
            node.start()
            started.append(node)
        for node in nodes:
            await node.wait_ready()
        return nodes

    yield start
    for node in started:
        node.kill()


@pytest.fixture
async def bots() -> AsyncIterator[list[Bot]]:
    made: list[Bot] = []
    yield made
    for bot in made:
        await bot.close()


async def _join(
    bots: list[Bot], node: NodeProcess, identity: str, room: str = "r1", **kwargs: object
) -> Bot:
    bot = Bot(node.url, token(room, identity), name=identity, **kwargs)  # type: ignore[arg-type]
    bots.append(bot)
    await bot.connect()
    return bot


async def _scrape(node: NodeProcess) -> dict[str, float]:
    """`name{labels}` -> value, from the node's /metrics (labels sorted)."""
    from prometheus_client.parser import text_string_to_metric_families

    async with aiohttp.ClientSession() as http, http.get(f"{node.http}/metrics") as response:
        text = await response.text()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}"] = sample.value
    return out


def _flowing(bot: Bot, count: int, min_packets: int = 30) -> bool:
    return len(bot.tracks) >= count and all(t.packets >= min_packets for t in bot.tracks.values())


def _assert_byte_identical(publisher: Bot, subscriber: Bot) -> int:
    """Every packet the subscriber got carries the payload the publisher sent
    at the same position: same bytes, no gap, no reordering."""
    (track,) = [t for t in subscriber.tracks.values() if t.kind == "video"]
    sent = list(publisher.stream("cam").recorded.items())
    assert track.payloads is not None
    received = sorted(track.payloads.items())
    first_seq, first_payload = received[0]
    starts = [i for i, (_s, payload) in enumerate(sent) if payload == first_payload]
    assert len(starts) == 1
    for sub_seq, payload in received:
        assert payload == sent[starts[0] + sub_seq - first_seq][1], f"differs at {sub_seq}"
    return len(received)


async def test_one_participant_on_each_node_see_each_other_and_exchange_media(
    start_nodes: StartNodes, bots: list[Bot]
) -> None:
    a, b = await start_nodes("node-a", "node-b")
    alice = await _join(bots, a, "alice", record=True)
    bob = await _join(bots, b, "bob", record=True)
    assert bob.joined is not None and alice.joined is not None
    assert alice.joined["room"]["node_id"] == "node-a"
    assert bob.joined["room"]["node_id"] == "node-b"
    # bob's `joined` lists alice (on the other node); alice hears bob join.
    assert [p["identity"] for p in bob.joined["participants"]] == ["alice"]
    await alice.wait_until(lambda: len(alice.participants) == 1, 5, "alice sees bob")
    assert [p["identity"] for p in alice.participants.values()] == ["bob"]
    # A third participant on a's node sees both, one per node, in `joined`.
    carol = await _join(bots, a, "carol", auto_subscribe=False)
    assert sorted(p["identity"] for p in carol.joined["participants"]) == ["alice", "bob"]

    await alice.publish(audio=True)
    await bob.publish(audio=True)
    for me in (alice, bob):
        await me.wait_until(lambda me=me: _flowing(me, 2, 200), 20, f"{me.name} receives")
        for t in me.tracks.values():
            assert t.missing() == [], f"{me.name} {t.kind} lost {t.missing()[:10]}"
    assert _assert_byte_identical(alice, bob) >= 200
    assert _assert_byte_identical(bob, alice) >= 200
    info_a, info_b = await a.info(), await b.info()
    # Each node sends the other its two tracks once, and receives two.
    assert info_a["relay"]["out_streams"] == 2 and info_a["relay"]["in_streams"] == 2
    assert info_b["relay"]["out_streams"] == 2 and info_b["relay"]["in_streams"] == 2
    assert info_a["relay"]["rejected"] == 0 and info_b["relay"]["replayed"] == 0
    # The access log names paths, never the token in the WebSocket URL.
    for node in (a, b):
        # The access line is written just after the response: wait for it.
        deadline = time.monotonic() + 5
        while '"GET /v1/node" 200' not in (log := node.log_path.read_text()):
            assert time.monotonic() < deadline, "no access log line"
            await asyncio.sleep(0.05)
        assert alice.token not in log and bob.token not in log and "access_token" not in log


async def test_five_subscribers_on_b_get_one_relay_stream_from_a(
    start_nodes: StartNodes, bots: list[Bot]
) -> None:
    a, b = await start_nodes("node-a", "node-b")
    publisher = await _join(bots, a, "pub")
    await publisher.publish(audio=False)
    subscribers = [await _join(bots, b, f"sub{i}") for i in range(5)]
    for sub in subscribers:
        await sub.wait_until(lambda sub=sub: _flowing(sub, 1, 100), 20, f"{sub.name} receives")
    info_a, info_b = await a.info(), await b.info()
    assert info_a["relay"]["out_streams"] == 1, info_a
    assert info_b["relay"]["in_streams"] == 1, info_b
    assert info_b["downtracks"] == 5
    # Packets a sent on the relay ~ packets one subscriber received (not five times).
    received = max(s.tracks[next(iter(s.tracks))].packets for s in subscribers)
    sent = info_a["relay"]["packets_sent"]
    assert sent < 2 * received + 100, (sent, received)
    # A keyframe request from b reached a's publisher (a new relay stream asks one).
    assert publisher.keyframe_requests_received >= 1
    # The metrics say the same (issue 6: relay streams and bytes between nodes).
    metrics_a, metrics_b = await _scrape(a), await _scrape(b)
    assert metrics_a['sfu_relay_streams{direction="out",node="node-a"}'] == 1
    assert metrics_b['sfu_relay_streams{direction="in",node="node-b"}'] == 1
    assert metrics_a['sfu_relay_bytes_total{direction="out",node="node-a"}'] > 100_000
    assert metrics_b['sfu_redis_up{node="node-b"}'] == 1
    assert metrics_b['sfu_subscribed_tracks{kind="video",node="node-b"}'] == 5
    # When every subscriber on b leaves, b releases the track and a stops sending.
    for sub in subscribers:
        await sub.leave()
    deadline = time.monotonic() + 15
    while (await a.info())["relay"]["out_streams"]:
        assert time.monotonic() < deadline, "a still relays a track nobody on b wants"
        await asyncio.sleep(0.25)


async def test_sigkill_a_node_and_its_participants_leave_within_10_s(
    start_nodes: StartNodes, bots: list[Bot]
) -> None:
    a, b, c = await start_nodes("node-a", "node-b", "node-c")
    doomed = await _join(bots, a, "doomed")
    await doomed.publish(audio=True)
    watchers = [await _join(bots, b, "wb"), await _join(bots, c, "wc")]
    for w in watchers:
        await w.wait_until(lambda w=w: _flowing(w, 2, 20), 20, f"{w.name} receives")
    # wb publishes too, so b relays to a (the doomed node subscribes to it).
    await watchers[0].publish(audio=False)
    await doomed.wait_until(
        lambda: any(t.kind == "video" and t.packets > 20 for t in doomed.tracks.values()),
        20,
        "a relays wb's video from b",
    )
    assert (await b.info())["relay"]["out_streams"] == 2  # to a and to c
    doomed_id = doomed.participant_id
    killed_at = time.monotonic()
    a.kill()
    for w in watchers:
        got = await w.wait_for(
            "participant_left",
            timeout=12,
            predicate=lambda msg: msg.get("participant_id") == doomed_id,
        )
        assert got is not None
        elapsed_s = time.monotonic() - killed_at
        print(f"{w.name}: participant_left {elapsed_s:.1f} s after SIGKILL")
        assert elapsed_s < 10.0
        unpublished = [
            msg
            for msg in w.messages
            if msg.get("type") == "track_unpublished" and msg.get("participant_id") == doomed_id
        ]
        assert len(unpublished) == 2
    # Relays from the dead node are released, and b stops sending to it
    # (its lease runs out): both within 10 s of the kill.
    while True:
        relay = (await b.info())["relay"]
        if relay["in_streams"] == 0 and relay["out_streams"] == 1:  # c's stays
            break
        assert time.monotonic() - killed_at < 10, relay
        await asyncio.sleep(0.25)


async def test_sigterm_drains_and_the_bot_rejoins_on_another_node(
    start_nodes: StartNodes, bots: list[Bot], tmp_path: Path, redis_server: RedisServer
) -> None:
    a, b = await start_nodes("node-a", "node-b")
    stayer = await _join(bots, b, "stayer")
    # The mover is `sfu bot`, the command-line client: on `leave`/`migrate` it
    # asks placement where to go and rejoins the room there, publishing again.
    mover = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "signaling.cli",
        "bot",
        "publish",
        "--url",
        a.url,
        "--room",
        "r1",
        "--identity",
        "mover",
        "--no-audio",
        "--duration",
        "60",
        "--rtc-host",
        "127.0.0.1",
        stdout=asyncio.subprocess.PIPE,
        stderr=(tmp_path / "mover.log").open("wb"),
    )
    try:
        lines = _json_lines(mover)
        first = await asyncio.wait_for(anext(lines), 15)
        assert first["joined"]["node_id"] == "node-a"
        old_id = first["participant"]["id"]
        await stayer.wait_until(
            lambda: _receives_from(stayer, old_id), 20, "stayer receives the mover on a"
        )
        a.signal(signal.SIGTERM)
        assert await a.wait_exit(15) == 0
        # It cleared its membership on the way out.
        assert await _redis_keys(redis_server, "sfu:test:node:node-a") == []
        assert old_id not in await _member_ids_in_redis(redis_server)
        await stayer.wait_for(
            "participant_left", lambda m: m.get("participant_id") == old_id, timeout=5
        )
        events = []
        async for event in lines:
            events.append(event)
            if "joined" in event:
                break
        assert {"migrating": True} in events, events
        assert "joined" in event, events
        assert event["joined"]["node_id"] == "node-b"
        new_id = event["participant"]["id"]
        await stayer.wait_until(
            lambda: _receives_from(stayer, new_id), 20, "stayer receives the mover on b"
        )
    finally:
        if mover.returncode is None:
            mover.terminate()
        await mover.wait()


def _receives_from(bot: Bot, publisher_id: str) -> bool:
    track = bot.track_of_kind("video", publisher_id)
    return track is not None and track.packets > 30


async def _json_lines(proc: asyncio.subprocess.Process) -> AsyncIterator[dict[str, Any]]:
    assert proc.stdout is not None
    while True:
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        if not line:
            return
        with contextlib.suppress(ValueError):
            yield json.loads(line)


async def test_placement_needs_a_token_for_the_room(start_nodes: StartNodes) -> None:
    (a,) = await start_nodes("node-a")
    async with aiohttp.ClientSession() as http:
        url = f"{a.http}/v1/rooms/r1/node"
        async with http.get(url) as response:
            assert response.status == 401
        headers = {"Authorization": f"Bearer {token('other', 'x')}"}
        async with http.get(url, headers=headers) as response:
            assert response.status == 403
        headers = {"Authorization": f"Bearer {token('r1', 'x')}"}
        async with http.get(url, headers=headers) as response:
            assert response.status == 200
            assert await response.json() == {
                "node_id": "node-a",
                "url": a.url,
                "participants_in_room": 0,
            }


async def test_redis_restart_keeps_media_and_heals_membership(
    start_nodes: StartNodes, bots: list[Bot], redis_server: RedisServer
) -> None:
    a, b = await start_nodes("node-a", "node-b")
    pub = await _join(bots, a, "pub")
    sub = await _join(bots, b, "sub")
    await pub.publish(audio=False)
    await sub.wait_until(lambda: _flowing(sub, 1, 30), 20, "sub receives")
    redis_server.stop()
    before = next(iter(sub.tracks.values())).packets
    await asyncio.sleep(3.0)
    during = next(iter(sub.tracks.values())).packets
    assert during - before > 150, "media stopped while Redis was away"
    # While Redis is away a third participant joins node b (state to re-publish).
    late = await _join(bots, b, "late", auto_subscribe=False)
    redis_server.start()
    restarted = time.monotonic()
    # Within 10 s each node has re-registered and re-published its members.
    async with aiohttp.ClientSession() as http:
        while True:
            async with http.get(
                f"{a.http}/v1/rooms/r1/node",
                headers={"Authorization": f"Bearer {token('r1', 'x')}"},
            ) as response:
                placed = await response.json()
            if placed["participants_in_room"] >= 1 and await _members_in_redis(redis_server) == {
                "pub",
                "sub",
                "late",
            }:
                break
            assert time.monotonic() - restarted < 10, "membership not whole after 10 s"
            await asyncio.sleep(0.25)
    print(f"membership whole {time.monotonic() - restarted:.1f} s after the Redis restart")
    after = next(iter(sub.tracks.values())).packets
    await asyncio.sleep(1.0)
    assert next(iter(sub.tracks.values())).packets - after > 30
    # And a newcomer sees everyone, on both nodes.
    newcomer = await _join(bots, a, "newcomer", auto_subscribe=False)
    assert sorted(p["identity"] for p in newcomer.joined["participants"]) == [
        "late",
        "pub",
        "sub",
    ]
    assert late.closed is False


async def _redis_keys(redis_server: RedisServer, pattern: str) -> list[bytes]:
    import redis.asyncio as aioredis

    client = aioredis.from_url(redis_server.url)
    try:
        return list(await client.keys(pattern))
    finally:
        await client.aclose()


async def _member_ids_in_redis(redis_server: RedisServer) -> set[str]:
    import redis.asyncio as aioredis

    client = aioredis.from_url(redis_server.url)
    try:
        return {pid.decode() for pid in await client.hkeys("sfu:test:room:r1")}
    finally:
        await client.aclose()


async def _members_in_redis(redis_server: RedisServer) -> set[str]:
    import json

    import redis.asyncio as aioredis

    client = aioredis.from_url(redis_server.url)
    try:
        members = await client.hgetall("sfu:test:room:r1")
    except Exception:  # noqa: BLE001 - still starting
        return set()
    finally:
        await client.aclose()
    return {json.loads(raw)["identity"] for raw in members.values()}


async def test_workers_behind_one_port_share_rooms(
    start_nodes: StartNodes, bots: list[Bot]
) -> None:
    (node,) = await start_nodes("w", workers=2)
    joined: list[Bot] = []
    for i in range(24):
        joined.append(await _join(bots, node, f"p{i}", auto_subscribe=False))
        workers = {b.joined["room"]["node_id"] for b in joined}
        if len(workers) == 2 and i >= 3:
            break
    assert workers == {"w-0", "w-1"}, workers
    # Someone on each worker: the last joiner sees everyone who came before.
    last = joined[-1]
    assert len(last.joined["participants"]) == len(joined) - 1
    # Media crosses the workers: a publisher on one, a subscriber on the other.
    first_on = {b.joined["room"]["node_id"]: b for b in reversed(joined)}
    publisher = first_on["w-0"]
    await publisher.publish(audio=False)
    other = first_on["w-1"]
    await other.subscribe([t["id"] for t in (await _published(other, publisher))])
    await other.wait_until(lambda: _flowing(other, 1, 30), 20, "cross-worker media")


async def _published(watcher: Bot, publisher: Bot) -> list[dict[str, object]]:
    await watcher.wait_until(
        lambda: bool(watcher.participants.get(publisher.participant_id, {}).get("tracks")),
        10,
        "the track is announced",
    )
    return watcher.participants[publisher.participant_id]["tracks"]  # type: ignore[return-value]


async def test_simulcast_layers_are_chosen_on_the_subscribers_node(
    start_nodes: StartNodes, bots: list[Bot]
) -> None:
    a, b = await start_nodes("node-a", "node-b")
    publisher = await _join(bots, a, "pub")
    ids = await publisher.publish(audio=False, simulcast=True, gop=30, frames=90)
    track_id = ids["cam"]
    subscriber = await _join(bots, b, "sub", record=True)
    await layer_changed(subscriber, track_id, "high", 15)
    await subscriber.set_quality(track_id, "low")
    assert await layer_changed(subscriber, track_id, "low", 3) < 2.0
    await subscriber.set_quality(track_id, "high")
    assert await layer_changed(subscriber, track_id, "high", 3) < 2.0
    await asyncio.sleep(0.5)
    track = subscriber.tracks[track_id]
    assert_one_clean_stream(track)
    assert {(320, 180), (1280, 720)} <= set(track.keyframe_sizes)
    # All three layers cross once each, as one relay stream of the track.
    assert (await a.info())["relay"]["out_streams"] == 1


async def test_mute_unpublish_and_a_second_session_cross_nodes(
    start_nodes: StartNodes, bots: list[Bot]
) -> None:
    a, b = await start_nodes("node-a", "node-b")
    alice = await _join(bots, a, "alice")
    ids = await alice.publish(audio=True)
    watcher = await _join(bots, b, "watcher")
    await watcher.wait_until(lambda: _flowing(watcher, 2, 20), 20, "watcher receives")
    await alice.send({"type": "mute", "track_id": ids["mic"], "muted": True})
    muted = await watcher.wait_for("track_muted", timeout=5)
    assert (muted["track_id"], muted["muted"]) == (ids["mic"], True)
    await alice.send({"type": "unpublish", "track_id": ids["mic"]})
    gone = await watcher.wait_for("track_unpublished", timeout=5)
    assert gone["track_id"] == ids["mic"]
    # b stops receiving the audio over the relay; the video stays.
    deadline = time.monotonic() + 10
    while (await b.info())["relay"]["in_streams"] != 1:
        assert time.monotonic() < deadline, await b.info()
        await asyncio.sleep(0.1)
    # The same identity joining on the other node replaces the first session.
    again = await _join(bots, b, "alice")
    kicked = await alice.wait_for("leave", timeout=5)
    assert kicked["reason"] == "duplicate_identity"
    await watcher.wait_for(
        "participant_left",
        lambda msg: msg.get("participant_id") == alice.participant_id,
        timeout=5,
    )
    assert again.joined is not None
    assert [p["identity"] for p in again.joined["participants"]] == ["watcher"]


async def _readyz(node: NodeProcess) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(f"{node.http}/readyz") as response:
        return response.status, await response.json()


async def _wait_readyz(node: NodeProcess, status: int, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        got, body = await _readyz(node)
        if got == status:
            return body
        assert time.monotonic() < deadline, (got, body)
        await asyncio.sleep(0.1)


async def test_readyz_follows_redis_and_draining(
    start_nodes: StartNodes, bots: list[Bot], redis_server: RedisServer
) -> None:
    (a,) = await start_nodes("node-a")
    client = await _join(bots, a, "client")
    assert (await _readyz(a))[0] == 200
    redis_server.stop()
    body = await _wait_readyz(a, 503, 8)
    assert body["reasons"] == ["redis unreachable"]
    redis_server.start()
    await _wait_readyz(a, 200, 8)
    # SIGTERM: the node drains while it still answers, not-ready, then exits.
    a.signal(signal.SIGTERM)
    leave = await client.wait_for("leave", timeout=5)
    assert leave["reason"] == "migrate"
    body = await _wait_readyz(a, 503, 2)
    assert body["reasons"] == ["draining"]
    async with aiohttp.ClientSession() as http, http.get(f"{a.http}/v1/rtc") as response:
        assert response.status == 503
    assert await a.wait_exit(15) == 0


async def test_the_room_service_acts_on_every_node(
    start_nodes: StartNodes, bots: list[Bot]
) -> None:
    from signaling.auth import DEV_KEY, DEV_SECRET, Grants, issue_token

    a, b = await start_nodes("node-a", "node-b")
    on_a = await _join(bots, a, "on-a")
    on_b = await _join(bots, b, "on-b")
    await on_b.publish(audio=True)
    admin = issue_token(DEV_KEY, DEV_SECRET, "*", "ops", grants=Grants(admin=True))
    headers = {"Authorization": f"Bearer {admin}"}
    async with aiohttp.ClientSession() as http:
        # Node a lists and describes the room with node b's participant in it.
        async with http.get(f"{a.http}/v1/rooms/r1", headers=headers) as response:
            room = await response.json()
        assert {p["identity"]: p["node"] for p in room["participants"]} == {
            "on-a": "node-a",
            "on-b": "node-b",
        }
        # Removing a participant of node b through node a.
        async with http.delete(
            f"{a.http}/v1/rooms/r1/participants/on-b", headers=headers
        ) as response:
            assert response.status == 200
        assert (await on_b.wait_for("leave", timeout=5))["reason"] == "removed"
        await on_a.wait_for(
            "participant_left", lambda m: m["participant_id"] == on_b.participant_id, timeout=5
        )
        again = await _join(bots, b, "on-b2")
        # Ending the call through node b reaches node a's participant too.
        async with http.delete(f"{b.http}/v1/rooms/r1", headers=headers) as response:
            assert response.status == 200
        for bot in (on_a, again):
            assert (await bot.wait_for("leave", timeout=5))["reason"] == "room_closed"


async def test_a_redis_pause_longer_than_the_node_ttl_splits_nothing(
    start_nodes: StartNodes, bots: list[Bot], redis_server: RedisServer
) -> None:
    """Redis stops answering for longer than a node's TTL but keeps its data
    (a stall, a failover): when it answers again every key has expired, and
    no node may declare the others dead before they had a beat to re-register."""
    import os

    a, b = await start_nodes("node-a", "node-b")
    pub = await _join(bots, a, "pub")
    sub = await _join(bots, b, "sub")
    await pub.publish(audio=False)
    await sub.wait_until(lambda: _flowing(sub, 1, 30), 20, "sub receives")
    assert redis_server.proc is not None
    os.kill(redis_server.proc.pid, signal.SIGSTOP)
    try:
        await asyncio.sleep(8.0)
    finally:
        os.kill(redis_server.proc.pid, signal.SIGCONT)
    before = next(iter(sub.tracks.values())).packets
    await asyncio.sleep(8.0)  # a TTL and more after Redis is back
    assert next(iter(sub.tracks.values())).packets - before > 300, "media stopped"
    assert not [
        m for m in sub.messages if m.get("type") in ("participant_left", "track_unpublished")
    ]
    newcomer = await _join(bots, b, "newcomer", auto_subscribe=False)
    assert sorted(p["identity"] for p in newcomer.joined["participants"]) == ["pub", "sub"]
