"""Benchmark scenarios: a real server process under load from bots.

Each scenario starts its own `sfu serve` (pinned to core 0 on a machine with
two or more cores; the load generator runs on the others), joins its bots,
opens a measurement window, then runs the floor loop against the same
subscriber sockets. Figures per scenario (see bench/README.md):

- server CPU µs per forwarded packet, from /proc (the OS, not the server);
- the floor's µs per packet in the same run, and the ratio of the two;
- delivery ratio: packets subscribers received / packets they should have;
- added delay p50/p99: publisher send stamp to probe arrival (bench.probe);
- join-to-first-frame: the probe's sequential joins on the loaded server;
- server RSS at the end of the window.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import procstat
from bench.load import (
    MAX_DELAY_SAMPLES,
    Counter,
    join_subscribers,
    new_subscriber,
    published_packets,
)
from bench.media import CLIP_FRAMES, FPS, GOP, VideoSpec
from bench.server import ServerProcess
from bench.stats import percentile, summarize_ms
from sfu_bot.client import DEFAULT_SIMULCAST_LAYERS, Bot

ROOM = "bench"
JOIN_CONCURRENCY = 16
#: WebRTC's pacer sends at 2.5x the target bitrate (kDefaultPaceMultiplier).
PACING_FACTOR = 2.5
AUDIO_BPS = 64_000
#: CPU per packet is also read per slice of this length: a shared host slows
#: this VM by up to 2x for seconds at a time (see bench/README.md).
SLICE_S = 1.0
_QUALITY_RID = {"low": "q", "medium": "h", "high": "f"}


@dataclass
class Options:
    duration_s: float = 10.0
    probe_joins: int = 5
    server_cpu: int | None = 0
    #: Publishers pace like a browser (2.5x their bitrate); False sends every
    #: frame in one burst, the harsher case for delay.
    pacing: bool = True
    log_dir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()))


def pin_load_generator() -> int | None:
    """Keep this process (and the probe and bots it starts) off the server's core.
    Returns the core the server gets, or None on a one-core machine."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return None
    os.sched_setaffinity(0, set(cores[1:]))
    return cores[0]


class Run:
    """One scenario's server, bots and measurements."""

    def __init__(self, name: str, options: Options) -> None:
        self.name = name
        self.options = options
        self.server = ServerProcess(
            cpu=options.server_cpu, log_path=options.log_dir / f"bench-server-{name}.log"
        )
        self.publishers: list[Bot] = []
        self.subscribers: list[tuple[Bot, Counter]] = []
        self.join_s: list[float] = []
        self.result: dict[str, Any] = {"scenario": name}

    async def __aenter__(self) -> Run:
        await self.server.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        bots = self.publishers + [bot for bot, _ in self.subscribers]
        await asyncio.gather(*(bot.close() for bot in bots), return_exceptions=True)
        await self.server.stop()

    async def publisher(
        self, name: str, *, simulcast: bool = False, subscribe: bool = False, room: str = ROOM
    ) -> Bot:
        counter = Counter() if subscribe else None
        video = VideoSpec()
        sent_bps = AUDIO_BPS + (
            sum(bps for *_, bps in DEFAULT_SIMULCAST_LAYERS) if simulcast else video.bitrate_bps
        )
        bot = Bot(
            self.server.url,
            self.server.token(room, name),
            name=name,
            auto_subscribe=subscribe,
            sink=counter,
            stamp_send_time=True,
            pacing_bps=int(PACING_FACTOR * sent_bps) if self.options.pacing else None,
        )
        if counter is not None:
            counter.bot = bot
            self.subscribers.append((bot, counter))
        await bot.connect()
        await bot.publish(
            width=video.width,
            height=video.height,
            bitrate_bps=video.bitrate_bps,
            fps=FPS,
            gop=GOP,
            frames=CLIP_FRAMES,
            simulcast=simulcast,
        )
        self.publishers.append(bot)
        return bot

    async def join_subscribers(self, count: int) -> None:
        per_bot = max(100, MAX_DELAY_SAMPLES // max(count, 1))

        async def make(i: int) -> tuple[Bot, Counter]:
            name = f"sub-{i}"
            bot, counter = new_subscriber(
                self.server.url, self.server.token(ROOM, name), name, max_delays=per_bot
            )
            await bot.connect(timeout=30)
            return bot, counter

        start = time.monotonic()
        joined, join_s = await join_subscribers(make, count, JOIN_CONCURRENCY, timeout_s=30)
        self.subscribers += joined
        self.join_s += join_s
        self.result["join_all_s"] = round(time.monotonic() - start, 2)

    async def _start_probe(self) -> tuple[asyncio.subprocess.Process, asyncio.Task[bytes]]:
        config = {
            "url": self.server.url,
            "room": ROOM,
            "joins": self.options.probe_joins,
            "duration_s": self.options.duration_s,
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.probe",
            json.dumps(config),
            env=dict(os.environ, BENCH_SFU_SECRET=self.server.secret),
            stdout=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        if not line or not json.loads(line).get("ready"):
            raise RuntimeError("the probe did not get ready")
        return proc, asyncio.ensure_future(proc.stdout.read())

    async def measure(self, expected_per_window: Any) -> None:
        """The window: CPU, delivery and delay while the load runs.

        ``expected_per_window(before, after)`` returns the packets all load
        subscribers together should have received between two
        published_packets() snapshots.
        """
        proc, probe_out = await self._start_probe()
        # Every load subscriber samples delays too (they include the load
        # generator's own queueing; reported apart from the probe's).
        for _bot, counter in self.subscribers:
            counter.recording = True
        udp0 = procstat.udp_counters()
        cpu0 = self.server.cpu_seconds()
        split0 = procstat.user_system_seconds(self.server.pid)
        pub0 = published_packets(self.publishers)
        recv0 = sum(c.packets for _, c in self.subscribers)
        t0 = time.monotonic()
        slices_us: list[float] = []
        last_cpu, last_recv = cpu0, recv0
        slices = max(1, int(self.options.duration_s / SLICE_S))
        for k in range(1, slices + 1):
            await asyncio.sleep(
                max(0.0, t0 + k * self.options.duration_s / slices - time.monotonic())
            )
            cpu = self.server.cpu_seconds()
            recv = sum(c.packets for _, c in self.subscribers)
            if recv > last_recv:
                slices_us.append((cpu - last_cpu) / (recv - last_recv) * 1e6)
            last_cpu, last_recv = cpu, recv
        cpu1 = self.server.cpu_seconds()
        split1 = procstat.user_system_seconds(self.server.pid)
        pub1 = published_packets(self.publishers)
        recv1 = sum(c.packets for _, c in self.subscribers)
        wall_s = time.monotonic() - t0
        udp1 = procstat.udp_counters()
        rss = self.server.rss_bytes()
        for _bot, counter in self.subscribers:
            counter.recording = False
        probe = json.loads(await asyncio.wait_for(probe_out, self.options.duration_s + 30))
        await proc.wait()
        received = recv1 - recv0
        expected = expected_per_window(pub0, pub1)
        forwarded = received + probe["packets"]
        cpu_s = cpu1 - cpu0
        self.result.update(
            {
                "subscribers": len(self.subscribers),
                "window_s": round(wall_s, 2),
                "server_cpu_s": round(cpu_s, 3),
                "server_cpu_share": round(cpu_s / wall_s, 3),
                # Kernel time is mostly sendto/recvfrom on loopback (the kernel
                # delivers each datagram within the sender's system call).
                "server_user_share": round((split1[0] - split0[0]) / wall_s, 3),
                "server_system_share": round((split1[1] - split0[1]) / wall_s, 3),
                "forwarded_packets": forwarded,
                "forwarded_pps": round(forwarded / wall_s),
                "server_us_per_packet": round(cpu_s / forwarded * 1e6, 2) if forwarded else None,
                # Per 1 s slice (load subscribers' packets, scaled to include
                # the probe's); the low decile is the cost when the shared
                # host is not slowing this VM down (see bench/README.md).
                "server_us_per_packet_slices": [
                    round(us * received / forwarded, 2) for us in slices_us
                ],
                "server_us_per_packet_p10": _p10(
                    [us * received / forwarded for us in slices_us] if forwarded else []
                ),
                "delivery": round(received / expected, 5) if expected else None,
                "delay_probe": probe["delay"],
                "delay_all_subscribers": summarize_ms(
                    [d for _, c in self.subscribers for d in c.delays_s]
                ),
                "join_to_first_frame": probe["join_to_first_frame"],
                "join_to_first_frame_during_ramp": summarize_ms(self.join_s),
                "server_rss_mb": round(rss / 2**20, 1),
                # Datagrams the kernel dropped at a full socket buffer (server's
                # or bots'): tells loss at a receiver from loss elsewhere.
                "udp_rcvbuf_errors": udp1.get("RcvbufErrors", 0) - udp0.get("RcvbufErrors", 0),
            }
        )

    async def floor(self, streams: list[dict[str, Any]]) -> None:
        """Stop the publishers, then run the floor loop to the same subscriber
        sockets on the server's core for as long as the window lasted."""
        await asyncio.gather(*(bot.close() for bot in self.publishers), return_exceptions=True)
        await asyncio.sleep(0.3)
        config = {"streams": streams, "duration_s": self.options.duration_s}
        command = [sys.executable, "-m", "bench.floor", json.dumps(config)]
        if self.options.server_cpu is not None:
            command = ["taskset", "-c", str(self.options.server_cpu), *command]
        proc = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE)
        idle0 = self.server.cpu_seconds()
        t0 = time.monotonic()
        out, _ = await asyncio.wait_for(proc.communicate(), self.options.duration_s + 120)
        # Meanwhile the server holds every subscriber with no media to forward:
        # what its timers, RTCP and ICE consent checks cost on their own.
        self.result["server_idle_cpu_share"] = round(
            (self.server.cpu_seconds() - idle0) / (time.monotonic() - t0), 4
        )
        floor = json.loads(out.decode().strip().splitlines()[-1])
        self.result["floor"] = floor
        self.result["floor_us_per_packet"] = floor["us_per_packet"]
        self.result["floor_us_per_packet_p10"] = floor["us_per_packet_p10"]
        server_us = self.result.get("server_us_per_packet")
        if server_us and floor["us_per_packet"]:
            self.result["ratio_to_floor_mean"] = round(server_us / floor["us_per_packet"], 2)
        server_p10 = self.result.get("server_us_per_packet_p10")
        if server_p10 and floor["us_per_packet_p10"]:
            self.result["ratio_to_floor"] = round(server_p10 / floor["us_per_packet_p10"], 2)

    def dests(self, bots: list[Bot]) -> list[list[Any]]:
        out = []
        for bot in bots:
            address = bot.sub.local_address if bot.sub is not None else None
            if address is not None:
                out.append(list(address))
        return out


def _p10(values: list[float]) -> float | None:
    value = percentile(values, 10)
    return None if value is None else round(value, 2)


def _delta(before: dict[str, int], after: dict[str, int], key: str) -> int:
    return after.get(key, 0) - before.get(key, 0)


async def fanout(subscribers: int, options: Options) -> dict[str, Any]:
    """One publisher (VP8 ~800 kbit/s + Opus) to N subscribers."""
    async with Run(f"fanout-{subscribers}", options) as run:
        await run.publisher("pub")
        await run.join_subscribers(subscribers)

        def expected(before: dict[str, int], after: dict[str, int]) -> int:
            per_sub = _delta(before, after, "pub/audio") + _delta(before, after, "pub/video")
            return per_sub * subscribers

        await run.measure(expected)
        dests = run.dests([bot for bot, _ in run.subscribers])
        await run.floor([{"video": _spec(), "audio": True, "dests": dests}])
        run.result["kind"] = "fanout"
        return run.result


def _spec(spec: VideoSpec | None = None) -> dict[str, int]:
    spec = spec or VideoSpec()
    return {"width": spec.width, "height": spec.height, "bitrate_bps": spec.bitrate_bps}


async def meeting(participants: int, rooms: int, options: Options) -> dict[str, Any]:
    """``rooms`` meetings at once, in each everyone publishes and subscribes to
    everyone else (the probe joins the first room)."""
    async with Run(f"meeting-{rooms}x{participants}", options) as run:
        for r in range(rooms):
            room = ROOM if r == 0 else f"{ROOM}-{r}"
            for i in range(participants):
                await run.publisher(f"r{r}p{i}", subscribe=True, room=room)
        # Wait until every participant gets every other participant's video.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if all(
                sum(1 for t in bot.tracks.values() if t.kind == "video") >= participants - 1
                for bot, _ in run.subscribers
            ):
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)

        def expected(before: dict[str, int], after: dict[str, int]) -> int:
            total = sum(_delta(before, after, key) for key in after)
            return total * (participants - 1)

        await run.measure(expected)
        run.result["rooms"] = rooms
        run.result["participants_per_room"] = participants
        bots = [bot for bot, _ in run.subscribers]
        dests = run.dests(bots)
        streams = []
        for r in range(rooms):
            group = dests[r * participants : (r + 1) * participants]
            streams += [
                {"video": _spec(), "audio": True, "dests": group[:i] + group[i + 1 :]}
                for i in range(len(group))
            ]
        await run.floor(streams)
        run.result["kind"] = "meeting"
        return run.result


async def simulcast(subscribers: int, options: Options) -> dict[str, Any]:
    """One simulcast publisher (three VP8 layers + Opus) to N subscribers that
    ask for low, medium and high in turn."""
    qualities = ("low", "medium", "high")
    async with Run(f"simulcast-{subscribers}", options) as run:
        publisher = await run.publisher("pub", simulcast=True)
        track_id = publisher.stream("cam").track_id
        await run.join_subscribers(subscribers)
        for i, (bot, _counter) in enumerate(run.subscribers):
            await bot.set_quality(track_id, qualities[i % 3])
        # Switches happen at the next keyframe of the wanted layer.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if all(
                bot.forwarded_quality.get(track_id) == qualities[i % 3]
                for i, (bot, _) in enumerate(run.subscribers)
            ):
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        got = [bot.forwarded_quality.get(track_id) for bot, _ in run.subscribers]

        def expected(before: dict[str, int], after: dict[str, int]) -> int:
            audio = _delta(before, after, "pub/audio")
            return sum(
                audio + _delta(before, after, f"pub/video/{_QUALITY_RID.get(q or '', 'f')}")
                for q in got
            )

        await run.measure(expected)
        run.result["layers"] = {q: got.count(q) for q in qualities}
        bots = [bot for bot, _ in run.subscribers]
        dests = run.dests(bots)
        streams: list[dict[str, Any]] = [{"video": None, "audio": True, "dests": dests}]
        for rid, width, height, bitrate in DEFAULT_SIMULCAST_LAYERS:
            quality = next(q for q, r in _QUALITY_RID.items() if r == rid)
            layer_dests = [d for d, q in zip(dests, got, strict=False) if q == quality]
            if layer_dests:
                streams.append(
                    {
                        "video": {"width": width, "height": height, "bitrate_bps": bitrate},
                        "audio": False,
                        "dests": layer_dests,
                    }
                )
        await run.floor(streams)
        run.result["kind"] = "simulcast"
        return run.result
