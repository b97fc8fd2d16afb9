"""Simulcast through the SFU: a bot publishes three VP8 layers with RIDs, and
subscribers get the layer their preference, bandwidth and the publisher allow."""

from __future__ import annotations

import asyncio
import time

from sfu.downtrack import DownTrack
from sfu.track import PublishedTrack
from sfu_bot.client import Bot, RecvTrack, SendStream
from signaling.app import ROOMS
from tests.integration.conftest import BotFactory, Node

SIZES = {"q": (320, 180), "h": (640, 360), "f": (1280, 720)}
QUALITY_RID = {"low": "q", "medium": "h", "high": "f"}


def server_track(node: Node, track_id: str) -> PublishedTrack:
    for room in node.app[ROOMS].rooms.values():
        track = room.find_track(track_id)
        if track is not None:
            return track.media
    raise AssertionError(f"no track {track_id} on the server")


def server_downtrack(node: Node, track_id: str) -> DownTrack:
    downtracks = server_track(node, track_id).downtracks
    assert len(downtracks) == 1, downtracks
    return downtracks[0]


def sent_payloads(layer: SendStream) -> set[bytes]:
    assert layer.recorded_frames is not None
    return {payload for frame in layer.recorded_frames.values() for payload in frame}


def assert_one_clean_stream(track: RecvTrack) -> None:
    """What a decoder needs: no sequence gap, no timestamp going back, VP8
    PictureIDs one apart."""
    assert track.missing() == [], f"sequence gaps: {track.missing()[:10]}"
    assert track.timestamp_regressions() == []
    assert track.picture_id_gaps() == []


async def publish_simulcast(make_bot: BotFactory, **kwargs: object) -> tuple[Bot, str]:
    publisher = await make_bot("pub", record=True)
    ids = await publisher.publish(audio=False, simulcast=True, gop=30, frames=90, **kwargs)
    return publisher, ids["cam"]


async def layer_changed(bot: Bot, track_id: str, quality: str, timeout: float) -> float:
    """Wait for layer_changed(quality) after now; returns the seconds it took."""
    start = time.monotonic()
    seen = len(bot.layer_changes)
    await bot.wait_until(
        lambda: any(
            m["track_id"] == track_id and m["quality"] == quality for m in bot.layer_changes[seen:]
        ),
        timeout,
        f"layer_changed {quality}",
    )
    return time.monotonic() - start


async def test_each_subscriber_gets_only_its_layer(node: Node, make_bot: BotFactory) -> None:
    publisher, track_id = await publish_simulcast(make_bot)
    cam = publisher.stream("cam")
    assert {rid for rid, layer in cam.layers.items() if layer.active} == {"q", "h", "f"}
    subscribers = {}
    for quality in ("low", "medium", "high"):
        bot = await make_bot(f"sub-{quality}", auto_subscribe=False, record=True)
        # The preference may come before the subscription; it applies from the start.
        await bot.set_quality(track_id, quality)
        await bot.subscribe([track_id])
        subscribers[quality] = bot
    for bot in subscribers.values():
        await bot.wait_until(
            lambda bot=bot: (t := bot.tracks.get(track_id)) is not None and t.keyframes >= 2,
            15,
            "two keyframes",
        )
    published = next(
        t
        for p in subscribers["low"].participants.values()
        for t in p["tracks"]
        if t["id"] == track_id
    )
    assert published["simulcast"] is True
    assert [layer["quality"] for layer in published["layers"]] == ["low", "medium", "high"]

    payloads = {rid: sent_payloads(layer) for rid, layer in cam.layers.items()}
    for quality, bot in subscribers.items():
        rid = QUALITY_RID[quality]
        track = bot.tracks[track_id]
        assert set(track.keyframe_sizes) == {SIZES[rid]}, (quality, track.keyframe_sizes)
        assert track.first_is_keyframe
        assert_one_clean_stream(track)
        assert track.payloads
        received = set(track.payloads.values())
        # Byte-identical, and from that layer only.
        assert received <= payloads[rid], quality
        for other, other_payloads in payloads.items():
            if other != rid:
                assert not received & other_payloads, (quality, other)
        assert [m["quality"] for m in bot.layer_changes if m["track_id"] == track_id] == [quality]
        downtrack = server_downtrack_for(node, track_id, bot)
        assert downtrack.switches_up == downtrack.switches_down == 0


def server_downtrack_for(node: Node, track_id: str, bot: Bot) -> DownTrack:
    participant_id = bot.participant_id
    for downtrack in server_track(node, track_id).downtracks:
        if downtrack.subscriber_id == participant_id:
            return downtrack
    raise AssertionError(f"{participant_id} has no downtrack for {track_id}")


async def test_layer_follows_the_subscriber_bandwidth_estimate(
    node: Node, make_bot: BotFactory
) -> None:
    publisher, track_id = await publish_simulcast(make_bot)
    cam = publisher.stream("cam")
    subscriber = await make_bot("sub", record=True, remb_bps=5_000_000)
    await layer_changed(subscriber, track_id, "high", 15)
    await subscriber.wait_until(
        lambda: subscriber.tracks[track_id].keyframes >= 1, 5, "a keyframe of the high layer"
    )
    await asyncio.sleep(1.0)

    requests_before = {rid: layer.keyframe_requests for rid, layer in cam.layers.items()}
    changes_before = len(subscriber.layer_changes)
    subscriber.remb_bps = 250_000  # fits the low layer only
    down_s = await layer_changed(subscriber, track_id, "low", 5)
    assert down_s < 2.0, f"down a layer after {down_s:.2f} s"
    switches = len(subscriber.layer_changes) - changes_before
    requests = sum(cam.layers[rid].keyframe_requests - requests_before[rid] for rid in cam.layers)
    assert requests <= switches, f"{requests} keyframe requests for {switches} switches"
    await asyncio.sleep(1.0)
    assert subscriber.tracks[track_id].width == 320

    requests_before = {rid: layer.keyframe_requests for rid, layer in cam.layers.items()}
    changes_before = len(subscriber.layer_changes)
    subscriber.remb_bps = 5_000_000
    up_s = await layer_changed(subscriber, track_id, "high", 12)
    assert up_s < 10.0, f"back up after {up_s:.2f} s"
    # Hysteresis: not straight back; the selector waits out its hold and backoff.
    assert up_s > 1.5, f"climbed after only {up_s:.2f} s"
    switches = len(subscriber.layer_changes) - changes_before
    requests = sum(cam.layers[rid].keyframe_requests - requests_before[rid] for rid in cam.layers)
    assert requests <= switches, f"{requests} keyframe requests for {switches} switches"
    await subscriber.wait_until(
        lambda: subscriber.tracks[track_id].width == 1280, 3, "a high-layer keyframe"
    )
    await asyncio.sleep(0.5)

    track = subscriber.tracks[track_id]
    sizes = set(track.keyframe_sizes)
    assert (1280, 720) in sizes and (320, 180) in sizes
    assert_one_clean_stream(track)
    downtrack = server_downtrack_for(node, track_id, subscriber)
    assert downtrack.switches_down >= 1 and downtrack.switches_up >= 1


async def test_subscriber_falls_when_the_high_layer_stops(node: Node, make_bot: BotFactory) -> None:
    publisher, track_id = await publish_simulcast(make_bot)
    subscriber = await make_bot("sub", record=True)
    await layer_changed(subscriber, track_id, "high", 15)
    await asyncio.sleep(1.0)

    publisher.pause_layer("f")
    fall_s = await layer_changed(subscriber, track_id, "medium", 3)
    assert fall_s < 1.0, f"fell to medium after {fall_s:.2f} s"
    await subscriber.wait_until(
        lambda: subscriber.tracks[track_id].width == 640, 2, "a medium keyframe"
    )

    # The layer comes back: the subscriber climbs back to it.
    publisher.resume_layer("f")
    await layer_changed(subscriber, track_id, "high", 10)
    await asyncio.sleep(0.5)
    assert_one_clean_stream(subscriber.tracks[track_id])


async def test_set_quality_and_video_size_move_between_layers(
    node: Node, make_bot: BotFactory
) -> None:
    _publisher, track_id = await publish_simulcast(make_bot)
    subscriber = await make_bot("sub", record=True)
    await layer_changed(subscriber, track_id, "high", 15)

    await subscriber.set_quality(track_id, "low")
    assert await layer_changed(subscriber, track_id, "low", 3) < 2.0
    # A user's raise climbs at once, without the bandwidth hysteresis.
    await subscriber.set_quality(track_id, "high")
    assert await layer_changed(subscriber, track_id, "high", 3) < 2.0
    # The rendered size caps the layer: 600x340 is covered by 640x360.
    await subscriber.set_video_size(track_id, 600, 340)
    assert await layer_changed(subscriber, track_id, "medium", 3) < 2.0
    await subscriber.set_quality(track_id, "off")
    await layer_changed(subscriber, track_id, "off", 3)
    packets = subscriber.tracks[track_id].packets
    await asyncio.sleep(0.5)
    assert subscriber.tracks[track_id].packets - packets <= 5
    await subscriber.set_video_size(track_id, 1280, 720)
    await subscriber.set_quality(track_id, "high")
    await layer_changed(subscriber, track_id, "high", 3)
    await asyncio.sleep(0.5)
    track = subscriber.tracks[track_id]
    assert_one_clean_stream(track)
    assert {(320, 180), (640, 360), (1280, 720)} <= set(track.keyframe_sizes)


async def test_temporal_layers_are_dropped_before_the_spatial_layer(
    node: Node, make_bot: BotFactory
) -> None:
    publisher, track_id = await publish_simulcast(make_bot, temporal_layers=2)
    track = server_track(node, track_id)
    await publisher.wait_until(
        lambda: (
            len(track.rates()[2].temporal_bitrates_bps) == 2
            and track.rates()[2].temporal_bitrates_bps[0] > 0
        ),
        10,
        "temporal bitrates of the high layer",
    )
    await asyncio.sleep(1.5)  # a full measuring span
    base_bps, full_bps = track.rates()[2].temporal_bitrates_bps
    medium_bps = track.rates()[1].bitrate_bps
    assert medium_bps < base_bps < full_bps, track.rates()
    # An estimate between the high layer's base and its full rate: the
    # subscriber keeps the high picture at half the frame rate.
    remb_bps = int((base_bps + full_bps) / 2 / 0.9)
    subscriber = await make_bot("sub", record=True, remb_bps=remb_bps)
    await layer_changed(subscriber, track_id, "high", 15)
    recv = subscriber.tracks[track_id]
    # The estimate arrives with the subscriber's first REMBs: give it a moment.
    await asyncio.sleep(1.0)
    settled = len(recv.frame_starts)
    await subscriber.wait_until(lambda: len(recv.frame_starts) >= settled + 30, 10, "30 frames")
    downtrack = server_downtrack_for(node, track_id, subscriber)
    assert downtrack.dropped_temporal > 0
    assert downtrack.forwarded_quality == "high"
    assert {tid for _seq, _pid, _tl0, tid in recv.frame_starts[settled:]} == {0}
    assert_one_clean_stream(recv)

    # With room for everything, the upper temporal layer comes back.
    subscriber.remb_bps = 10_000_000
    await subscriber.wait_until(
        lambda: any(tid == 1 for _s, _p, _t, tid in recv.frame_starts), 10, "TID 1 frames"
    )
    await asyncio.sleep(0.5)
    assert_one_clean_stream(recv)


async def test_a_climbing_estimate_does_not_hold_the_subscriber_down(
    node: Node, make_bot: BotFactory
) -> None:
    """A receiver-side estimate like Chromium's starts low and grows a few
    percent per report, capped near 1.5x what arrives: read as a cap, it would
    keep the subscriber on the low layer for good. A fixed estimate (the test
    above) stays a cap."""
    _publisher, track_id = await publish_simulcast(make_bot)
    subscriber = await make_bot("sub", record=True, remb_bps=120_000)
    await layer_changed(subscriber, track_id, "low", 15)
    await asyncio.sleep(1.0)
    assert subscriber.forwarded_quality[track_id] == "low"  # a flat 120 kbit/s is a cap

    async def climb() -> None:
        while True:
            await asyncio.sleep(0.25)
            subscriber.remb_bps = int((subscriber.remb_bps or 0) * 1.02)

    climbing = asyncio.ensure_future(climb())
    try:
        # One layer at a time, each after the selector's hold.
        assert await layer_changed(subscriber, track_id, "medium", 10) < 5.0
        assert await layer_changed(subscriber, track_id, "high", 10) < 8.0
    finally:
        climbing.cancel()
