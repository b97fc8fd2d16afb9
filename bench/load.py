"""The load side of a benchmark: publisher and subscriber bots that cost little.

Subscribers are `Bot`s in load mode: each received packet goes to a
`Counter` that counts it and, while a window is open, reads the publisher's
send stamp from its padding (sfu_bot.stamp) to sample the delay. Nothing is
decoded or recorded per packet.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any

from sfu_bot.client import Bot
from sfu_bot.stamp import read_send_stamp

_SSRC = struct.Struct("!I")

#: Delay samples kept across all subscribers of one run (bounded memory).
MAX_DELAY_SAMPLES = 200_000


class Counter:
    """The sink of one load-mode subscriber bot."""

    __slots__ = (
        "bot",
        "delays_s",
        "delay_every",
        "first_frame_s",
        "max_delays",
        "packets",
        "recording",
        "_n",
        "_video_ssrcs",
    )

    def __init__(self, max_delays: int = 10_000, delay_every: int = 1) -> None:
        self.bot: Bot | None = None
        self.packets = 0
        self.recording = False
        self.delays_s: list[float] = []
        self.max_delays = max_delays
        self.delay_every = max(1, delay_every)
        #: Monotonic time the last packet of the first video frame arrived.
        self.first_frame_s: float | None = None
        self._video_ssrcs: set[int] = set()
        self._n = 0

    def __call__(self, packet: bytes, arrival_s: float) -> None:
        self.packets += 1
        if self.first_frame_s is None:
            self._watch_first_frame(packet, arrival_s)
        if self.recording:
            self._n += 1
            if self._n % self.delay_every == 0 and len(self.delays_s) < self.max_delays:
                stamp_ns = read_send_stamp(packet)
                if stamp_ns is not None:
                    self.delays_s.append(arrival_s - stamp_ns / 1e9)

    def _watch_first_frame(self, packet: bytes, arrival_s: float) -> None:
        # The server holds video back until a keyframe, so the first video
        # frame forwarded is a decodable one; its last packet has the marker bit.
        ssrc = _SSRC.unpack_from(packet, 8)[0]
        if ssrc not in self._video_ssrcs and self.bot is not None:
            self._video_ssrcs = {
                t.ssrc for t in self.bot.tracks.values() if t.kind == "video" and t.ssrc
            }
        if ssrc in self._video_ssrcs and packet[1] & 0x80:
            self.first_frame_s = arrival_s


def published_packets(bots: list[Bot]) -> dict[str, int]:
    """Packets each publishing bot has sent so far, by bot name then layer:
    {"bot/audio": n, "bot/video": n} or "bot/video/<rid>" for simulcast."""
    counts: dict[str, int] = {}
    for bot in bots:
        # A paced packet counts once it has left, not when it was queued.
        queued = bot.queued_packets()
        for stream in bot.streams.values():
            kind = stream.info.kind
            if stream.layers:
                for rid, layer in stream.layers.items():
                    counts[f"{bot.name}/{kind}/{rid}"] = layer.packets - queued.get(layer.ssrc, 0)
            else:
                counts[f"{bot.name}/{kind}"] = stream.packets - queued.get(stream.ssrc, 0)
    return counts


async def join_subscribers(
    make: Callable[[int], Awaitable[tuple[Bot, Counter]]],
    count: int,
    concurrency: int,
    timeout_s: float,
) -> tuple[list[tuple[Bot, Counter]], list[float]]:
    """Join ``count`` subscribers, ``concurrency`` at a time; returns them and,
    for each, the seconds from starting its WebSocket to its first whole frame."""
    semaphore = asyncio.Semaphore(concurrency)
    joined: list[tuple[Bot, Counter]] = []
    join_s: list[float] = []

    async def one(i: int) -> None:
        async with semaphore:
            start = time.monotonic()
            bot, counter = await make(i)
            joined.append((bot, counter))
            deadline = start + timeout_s
            while counter.first_frame_s is None and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            if counter.first_frame_s is not None:
                join_s.append(counter.first_frame_s - start)

    await asyncio.gather(*(one(i) for i in range(count)))
    return joined, join_s


def new_subscriber(url: str, token: str, name: str, **counter_args: Any) -> tuple[Bot, Counter]:
    counter = Counter(**counter_args)
    bot = Bot(url, token, name=name, sink=counter)
    counter.bot = bot
    return bot, counter
