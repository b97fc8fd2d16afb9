"""Hostile signaling input is refused without hurting a call in progress: a
1 MB frame, 1,000 messages a second on one socket, 100 join attempts a second
from one address, more tracks than allowed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from sfu.publisher import MediaLimits
from sfu_bot.client import Bot, BotError
from tests.integration.conftest import BotFactory, Node, running_node


async def _call(make_bot: BotFactory) -> Bot:
    """A call in progress: returns its subscriber, receiving video."""
    publisher = await make_bot("pub")
    subscriber = await make_bot("sub")
    await publisher.publish(audio=False)
    await subscriber.wait_until(
        lambda: any(t.packets > 30 for t in subscriber.tracks.values()), 15, "media"
    )
    return subscriber


def _packets(bot: Bot) -> int:
    return sum(t.packets for t in bot.tracks.values())


async def _assert_media_keeps_flowing(subscriber: Bot, attack: asyncio.Task[object]) -> None:
    before = _packets(subscriber)
    started = time.monotonic()
    await attack
    await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - started)))
    elapsed = time.monotonic() - started
    # ~800 kbit/s video is ~90 packets/s: at least half of that got through.
    assert _packets(subscriber) - before > 45 * elapsed, (before, _packets(subscriber), elapsed)


async def test_a_1_mb_frame_closes_only_that_socket(node: Node, make_bot: BotFactory) -> None:
    subscriber = await _call(make_bot)
    attacker = await make_bot("big")

    async def attack() -> None:
        with pytest.raises((ConnectionError, aiohttp.ClientError, BotError, RuntimeError)):
            await attacker.send_raw('{"type":"ping","ts":1,"x":"' + "a" * 1_000_000 + '"}')
            await attacker.wait_for("pong", timeout=5, include_past=False)

    await _assert_media_keeps_flowing(subscriber, asyncio.ensure_future(attack()))
    assert subscriber.closed is False


async def test_a_message_flood_is_rate_limited(node: Node, make_bot: BotFactory) -> None:
    subscriber = await _call(make_bot)
    flooder = await make_bot("flood")

    async def attack() -> None:
        for _ in range(10):  # 1,000 messages a second for one second
            for _ in range(100):
                await flooder.send({"type": "ping", "ts": 1})
            await asyncio.sleep(0.1)

    await _assert_media_keeps_flowing(subscriber, asyncio.ensure_future(attack()))
    limited = await flooder.wait_for("error", lambda e: e["code"] == "rate_limited", timeout=5)
    assert "messages a second" in limited["message"]
    pongs = sum(1 for msg in flooder.messages if msg.get("type") == "pong")
    assert 50 <= pongs < 400, pongs  # the burst and the refill, not the flood
    await subscriber.send({"type": "ping", "ts": 2})
    await subscriber.wait_for("pong", lambda msg: msg["ts"] == 2, timeout=5)


async def test_a_join_flood_from_one_address_is_refused(node: Node, make_bot: BotFactory) -> None:
    subscriber = await _call(make_bot)
    statuses: list[int] = []
    refusals: list[tuple[dict[str, object], dict[str, str]]] = []

    async def attack() -> None:
        async with aiohttp.ClientSession() as http:
            url = node.url.replace("ws://", "http://") + "/v1/rtc"
            for _ in range(10):  # 100 attempts a second for one second
                for _ in range(10):
                    async with http.get(url, params={"access_token": "x"}) as response:
                        statuses.append(response.status)
                        if response.status == 429 and not refusals:
                            refusals.append((await response.json(), dict(response.headers)))
                await asyncio.sleep(0.1)

    await _assert_media_keeps_flowing(subscriber, asyncio.ensure_future(attack()))
    refused = statuses.count(429)
    assert refused >= 30, statuses  # beyond the burst of 50 and 20/s
    assert set(statuses) <= {401, 429}
    body, headers = refusals[0]
    assert body["error"]["code"] == "rate_limited"  # type: ignore[index]
    assert headers["Retry-After"] == "1"


@pytest.fixture
async def one_track_node() -> AsyncIterator[Node]:
    async with running_node(limits=MediaLimits(max_tracks_per_publisher=1)) as started:
        yield started


async def test_more_tracks_than_allowed_is_forbidden(one_track_node: Node) -> None:
    node = one_track_node
    bot = Bot(node.url, node.token("r", "many"), name="many")
    try:
        await bot.connect()
        with pytest.raises(BotError):
            await bot.publish(audio=True, timeout=2)  # audio + video: two tracks, one allowed
        error = await bot.wait_for("error", timeout=5)
        assert error["code"] == "forbidden" and "limit is 1" in error["message"]
    finally:
        await bot.close()


async def test_a_websocket_that_never_sends_is_closed(
    node: Node, make_bot: BotFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from signaling import session

    monkeypatch.setattr(session, "IDLE_TIMEOUT_S", 0.5)
    silent = await make_bot("silent")
    error = await silent.wait_for("error", timeout=5)
    assert error["code"] == "bad_request" and "send ping" in error["message"]
    leave = await silent.wait_for("leave", timeout=5)
    assert leave["reason"] == "idle_timeout"
