"""/metrics after a real call: it parses, its counters match what the bots saw,
labels stay bounded, and counters never go back when participants leave."""

from __future__ import annotations

import asyncio

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import BotFactory, Node

ALLOWED_LABELS = {"node", "kind", "reason", "direction", "code", "le"}


async def scrape(node: Node) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """name (with _total/_bucket/... suffix) -> labels (without node) -> value."""
    url = node.url.replace("ws://", "http://") + "/metrics"
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        if family.name.startswith("sfu_"):
            assert family.documentation, f"{family.name} has no help text"
        for sample in family.samples:
            if sample.name.startswith("sfu_"):
                assert set(sample.labels) <= ALLOWED_LABELS, sample
                assert sample.labels["node"] == node.config.node_id
            labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "node"))
            out.setdefault(sample.name, {})[labels] = sample.value
    return out


def value(
    metrics: dict[str, dict[tuple[tuple[str, str], ...], float]], name: str, **labels: str
) -> float:
    return metrics[name][tuple(sorted(labels.items()))]


async def test_metrics_after_a_two_bot_call(node: Node, make_bot: BotFactory) -> None:
    before = await scrape(node)
    assert value(before, "sfu_participants") == 0
    publisher = await make_bot("pub")
    subscriber = await make_bot("sub")
    await publisher.publish()
    await subscriber.wait_until(
        lambda: (
            len(subscriber.tracks) == 2
            and all(t.packets >= 100 for t in subscriber.tracks.values())
        ),
        20,
        "100 packets of each track",
    )
    # A bad message is answered with an error, and counted by its code.
    await subscriber.send({"type": "subscribe", "track_ids": ["TR_nope"]})
    await subscriber.wait_for("error", timeout=5)
    # Receiver reports carry RTT once the subscriber has had a sender report.
    for _ in range(50):
        metrics = await scrape(node)
        if value(metrics, "sfu_subscriber_rtt_seconds_count") >= 1:
            break
        await asyncio.sleep(0.1)
    received = {t.kind: t.packets for t in subscriber.tracks.values()}

    assert value(metrics, "sfu_rooms") == 1
    assert value(metrics, "sfu_participants") == 2
    assert value(metrics, "sfu_published_tracks", kind="video") == 1
    assert value(metrics, "sfu_published_tracks", kind="audio") == 1
    assert value(metrics, "sfu_subscribed_tracks", kind="video") == 1
    assert value(metrics, "sfu_signaling_connections") == 2
    assert value(metrics, "sfu_signaling_connections_opened_total") >= 2
    for kind in ("audio", "video"):
        forwarded = value(metrics, "sfu_rtp_forwarded_packets_total", kind=kind)
        # What the server says it forwarded is what the subscriber counted
        # (give or take packets in flight and since the bot's count).
        assert abs(forwarded - received[kind]) <= max(10, 0.05 * received[kind]), (
            kind,
            forwarded,
            received[kind],
        )
        assert value(metrics, "sfu_rtp_received_packets_total", kind=kind) >= forwarded
        assert value(metrics, "sfu_rtp_forwarded_bytes_total", kind=kind) > forwarded * 20
    assert value(metrics, "sfu_signaling_errors_total", code="not_found") >= 1
    assert value(metrics, "sfu_subscriber_rtt_seconds_count") >= 1
    assert value(metrics, "sfu_subscriber_loss_ratio_count") >= 1
    assert value(metrics, "sfu_event_loop_lag_seconds_count") >= 1
    assert value(metrics, "sfu_packets_dropped_total", reason="srtp") == 0
    assert value(metrics, "sfu_redis_up") == 1  # no Redis configured
    assert value(metrics, "sfu_relay_streams", direction="out") == 0

    # Counters keep what the departed counted.
    video_forwarded = value(metrics, "sfu_rtp_forwarded_packets_total", kind="video")
    await subscriber.leave()
    await publisher.leave()
    await asyncio.sleep(0.3)
    after = await scrape(node)
    assert value(after, "sfu_participants") == 0
    assert value(after, "sfu_subscribed_tracks", kind="video") == 0
    assert value(after, "sfu_rtp_forwarded_packets_total", kind="video") >= video_forwarded
    assert value(after, "sfu_subscriber_rtt_seconds_count") >= value(
        metrics, "sfu_subscriber_rtt_seconds_count"
    )


async def test_counters_never_go_back_while_a_participant_leaves(
    node: Node, make_bot: BotFactory
) -> None:
    from signaling.app import ENGINE

    engine = node.app[ENGINE]
    # Both publish and subscribe: the one that leaves has a publisher (closed
    # first, with awaits) and DownTracks (counted until they are retired).
    publisher = await make_bot("pub")
    subscriber = await make_bot("sub")
    await publisher.publish()
    await subscriber.publish()
    for bot in (publisher, subscriber):
        await bot.wait_until(
            lambda bot=bot: sum(t.packets for t in bot.tracks.values()) > 100, 15, "media"
        )
    seen: list[tuple[int, int, int]] = []
    stop = asyncio.Event()

    async def scrape_every_iteration() -> None:
        while not stop.is_set():
            totals = engine.media_totals()
            seen.append(
                (
                    totals.forwarded_packets["video"],
                    totals.received_packets["video"],
                    sum(totals.dropped.values()),
                )
            )
            await asyncio.sleep(0)

    scraper = asyncio.ensure_future(scrape_every_iteration())
    await subscriber.leave()
    await publisher.leave()
    await asyncio.sleep(0.3)
    stop.set()
    await scraper
    assert len(seen) > 50
    for before, after in zip(seen, seen[1:], strict=False):
        assert all(b <= a for b, a in zip(before, after, strict=True)), (before, after)
