"""The bot's pacer (used by the benchmark publishers): frames leave spread over
time like a browser's, and nothing is lost on the way."""

from __future__ import annotations

import asyncio
import struct

from sfu_bot.stamp import read_send_stamp
from tests.integration.conftest import BotFactory

PACING_BPS = 400_000


async def test_paced_publisher_spreads_keyframes_and_loses_nothing(make_bot: BotFactory) -> None:
    arrivals: list[tuple[float, int, int, bool]] = []  # (arrival, ts, size, stamped)

    def sink(packet: bytes, arrival_s: float) -> None:
        ts = struct.unpack_from("!I", packet, 4)[0]
        arrivals.append((arrival_s, ts, len(packet), read_send_stamp(packet) is not None))

    publisher = await make_bot("pub", pacing_bps=PACING_BPS, stamp_send_time=True)
    await publisher.publish(audio=False, width=640, height=360, bitrate_bps=300_000)
    watcher = await make_bot("watcher", sink=sink)
    await asyncio.sleep(2.5)  # a keyframe (requested at the join) and a GOP's deltas
    assert publisher.pacer_dropped == 0
    video = publisher.stream("cam")
    assert len(arrivals) > 100
    assert all(stamped for *_, stamped in arrivals)
    # The largest frame (a keyframe) leaves no faster than the pacing rate allows,
    # minus one 5 ms slot's burst.
    frames: dict[int, list[tuple[float, int]]] = {}
    for arrival, ts, size, _ in arrivals:
        frames.setdefault(ts, []).append((arrival, size))
    biggest = max(frames.values(), key=lambda f: sum(size for _, size in f))
    size_bytes = sum(size for _, size in biggest)
    spread_s = biggest[-1][0] - biggest[0][0]
    assert size_bytes > 2500, size_bytes
    assert spread_s >= (size_bytes * 8 / PACING_BPS) * 0.7 - 0.005, (size_bytes, spread_s)
    assert video.packets > 100
    await watcher.close()
