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

The cluster scenario runs two `sfu serve` nodes sharing a redis-server, both
pinned to the server's core: its CPU is the sum over both processes.
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
from bench.server import RedisProcess, ServerProcess
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
        #: Every server process measured (one here; a cluster's nodes in ClusterRun).
        self.servers = [self.server]
        #: The server the probe joins (a cluster's last node).
        self.probe_server = self.server
        self.publishers: list[Bot] = []
        self.subscribers: list[tuple[Bot, Counter]] = []
        #: Index in self.servers of each subscriber bot's server, by bot name.
        self.node_of: dict[str, int] = {}
        self.join_s: list[float] = []
        self.result: dict[str, Any] = {"scenario": name}

    async def start(self) -> None:
        await self.server.start()

    async def stop(self) -> None:
        await asyncio.gather(*(server.stop() for server in self.servers), return_exceptions=True)

    async def __aenter__(self) -> Run:
        try:
            await self.start()
        except BaseException:
            await self.stop()  # a server that started but is not healthy
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        bots = self.publishers + [bot for bot, _ in self.subscribers]
        try:
            await asyncio.gather(*(bot.close() for bot in bots), return_exceptions=True)
        finally:
            await self.stop()

    def cpu_seconds(self) -> list[float]:
        """CPU seconds each server process has used so far."""
        return [server.cpu_seconds() for server in self.servers]

    def user_system_seconds(self) -> tuple[float, float]:
        splits = [procstat.user_system_seconds(server.pid) for server in self.servers]
        return sum(user for user, _ in splits), sum(system for _, system in splits)

    def received_by_node(self) -> list[int]:
        """Packets the load subscribers received so far, per server."""
        counts = [0] * len(self.servers)
        for bot, counter in self.subscribers:
            counts[self.node_of.get(bot.name, 0)] += counter.packets
        return counts

    async def window_started(self) -> None:
        """Called just before the window's first CPU reading."""

    async def window_ended(self, result: dict[str, Any]) -> None:
        """Called just after the window's last CPU reading."""

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
            # Spread over the servers in turn (a cluster's nodes: half each).
            node = i % len(self.servers)
            server = self.servers[node]
            self.node_of[name] = node
            bot, counter = new_subscriber(
                server.url, server.token(ROOM, name), name, max_delays=per_bot
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
            "url": self.probe_server.url,
            "room": ROOM,
            "joins": self.options.probe_joins,
            "duration_s": self.options.duration_s,
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.probe",
            json.dumps(config),
            env=dict(os.environ, BENCH_SFU_SECRET=self.probe_server.secret),
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
        await self.window_started()
        udp0 = procstat.udp_counters()
        cpu0_each = self.cpu_seconds()
        split0 = self.user_system_seconds()
        pub0 = published_packets(self.publishers)
        recv0_each = self.received_by_node()
        t0 = time.monotonic()
        slices_us: list[float] = []
        last_cpu, last_recv = sum(cpu0_each), sum(recv0_each)
        slices = max(1, int(self.options.duration_s / SLICE_S))
        for k in range(1, slices + 1):
            await asyncio.sleep(
                max(0.0, t0 + k * self.options.duration_s / slices - time.monotonic())
            )
            cpu = sum(self.cpu_seconds())
            recv = sum(c.packets for _, c in self.subscribers)
            if recv > last_recv:
                slices_us.append((cpu - last_cpu) / (recv - last_recv) * 1e6)
            last_cpu, last_recv = cpu, recv
        cpu1_each = self.cpu_seconds()
        split1 = self.user_system_seconds()
        pub1 = published_packets(self.publishers)
        recv1_each = self.received_by_node()
        wall_s = time.monotonic() - t0
        udp1 = procstat.udp_counters()
        rss_each = [server.rss_bytes() for server in self.servers]
        await self.window_ended(self.result)
        for _bot, counter in self.subscribers:
            counter.recording = False
        probe = json.loads(await asyncio.wait_for(probe_out, self.options.duration_s + 30))
        await proc.wait()
        received = sum(recv1_each) - sum(recv0_each)
        expected = expected_per_window(pub0, pub1)
        forwarded = received + probe["packets"]
        cpu_s = sum(cpu1_each) - sum(cpu0_each)
        rss = sum(rss_each)
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
        if len(self.servers) > 1:
            # Per node: its load subscribers (and the probe on the probe's node).
            probe_node = self.servers.index(self.probe_server)
            loads = [0] * len(self.servers)
            for bot, _counter in self.subscribers:
                loads[self.node_of.get(bot.name, 0)] += 1
            nodes = self.result.setdefault("nodes", [{} for _ in self.servers])
            for k, server in enumerate(self.servers):
                node_cpu = cpu1_each[k] - cpu0_each[k]
                node_received = recv1_each[k] - recv0_each[k]
                node_forwarded = node_received + (probe["packets"] if k == probe_node else 0)
                node_expected = expected * loads[k] / len(self.subscribers) if expected else 0
                nodes[k].update(
                    {
                        "node_id": server.node_id,
                        "subscribers": loads[k],
                        "probe": k == probe_node,
                        "cpu_s": round(node_cpu, 3),
                        "cpu_share": round(node_cpu / wall_s, 3),
                        "forwarded_packets": node_forwarded,
                        "us_per_packet": (
                            round(node_cpu / node_forwarded * 1e6, 2) if node_forwarded else None
                        ),
                        "delivery": (
                            round(node_received / node_expected, 5) if node_expected else None
                        ),
                        "rss_mb": round(rss_each[k] / 2**20, 1),
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
        idle0 = sum(self.cpu_seconds())
        t0 = time.monotonic()
        out, _ = await asyncio.wait_for(proc.communicate(), self.options.duration_s + 120)
        # Meanwhile the server holds every subscriber with no media to forward:
        # what its timers, RTCP and ICE consent checks cost on their own.
        self.result["server_idle_cpu_share"] = round(
            (sum(self.cpu_seconds()) - idle0) / (time.monotonic() - t0), 4
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


class ClusterRun(Run):
    """``nodes`` `sfu serve` processes of one cluster sharing a redis-server.

    Every node is pinned to the server's core, as the single server is: the
    load generator keeps the other core, so this measures what being a cluster
    costs (a second process, the relay hop), not how a cluster scales.
    Publishers join the first node ("A"), the probe the last ("B").
    """

    def __init__(self, name: str, options: Options, nodes: int = 2) -> None:
        super().__init__(name, options)
        self.redis = RedisProcess(options.log_dir / f"bench-redis-{name}.log")
        secret = self.server.secret  # one API key for every node of the cluster
        letters = "abcdefghijklmnopqrstuvwxyz"[:nodes]
        self.servers = [
            ServerProcess(
                cpu=options.server_cpu,
                log_path=options.log_dir / f"bench-server-{name}-{letter}.log",
                redis_url=self.redis.url,
                node_id=f"bench-{letter}",
                cluster="bench",
                secret=secret,
            )
            for letter in letters
        ]
        self.server = self.servers[0]
        self.probe_server = self.servers[-1]
        self._window: dict[str, Any] = {}

    async def start(self) -> None:
        await self.redis.start()
        started = await asyncio.gather(
            *(server.start() for server in self.servers), return_exceptions=True
        )
        for outcome in started:
            if isinstance(outcome, BaseException):
                raise outcome

    async def stop(self) -> None:
        try:
            await super().stop()
        finally:
            # After the nodes: a node leaving removes itself from Redis.
            await self.redis.stop()

    async def _snapshot(self) -> dict[str, Any]:
        infos = await asyncio.gather(*(server.info() for server in self.servers))
        return {
            "t": time.monotonic(),
            "info": infos,
            "published": sum(published_packets(self.publishers).values()),
            "redis_cpu_s": self.redis.cpu_seconds(),
        }

    async def window_started(self) -> None:
        self._window["before"] = await self._snapshot()

    async def window_ended(self, result: dict[str, Any]) -> None:
        self._window["after"] = await self._snapshot()

    def relay_figures(self) -> None:
        """The relay's state at the end of the window and its traffic during it,
        from every node's /v1/node, into self.result."""
        before, after = self._window["before"], self._window["after"]
        span_s = after["t"] - before["t"]
        tracks = sum(len(bot.streams) for bot in self.publishers)
        nodes = self.result.setdefault("nodes", [{} for _ in self.servers])
        for k, (info0, info1) in enumerate(zip(before["info"], after["info"], strict=True)):
            relay0, relay1 = info0.get("relay") or {}, info1.get("relay") or {}
            nodes[k].update(
                {
                    "participants": info1.get("participants"),
                    "downtracks": info1.get("downtracks"),
                    "relay": relay1,
                    # Counters' growth over the window (stream counts are levels).
                    "relay_window": {
                        key: value - relay0.get(key, 0)
                        for key, value in relay1.items()
                        if key not in ("out_streams", "in_streams")
                    },
                }
            )
        out_streams = [n["relay"].get("out_streams", 0) for n in nodes]
        in_streams = [n["relay"].get("in_streams", 0) for n in nodes]
        # A (the publisher's node) sends; the others receive.
        sent = nodes[0]["relay_window"].get("packets_sent", 0)
        sent_bytes = nodes[0]["relay_window"].get("bytes_sent", 0)
        received = sum(n["relay_window"].get("packets_received", 0) for n in nodes[1:])
        published = after["published"] - before["published"]
        self.result.update(
            {
                "cluster_nodes": len(self.servers),
                "published_tracks": tracks,
                "relay_out_streams": out_streams,
                "relay_in_streams": in_streams,
                # One relay stream per published track and receiving node.
                "relay_one_stream_per_track": (
                    out_streams[0] == tracks * (len(nodes) - 1)
                    and all(n == tracks for n in in_streams[1:])
                    and sum(out_streams[1:]) == 0
                    and in_streams[0] == 0
                ),
                "relay_packets_sent": sent,
                "relay_packets_received": received,
                "relay_packets_per_s": round(sent / span_s) if span_s > 0 else None,
                "relay_bytes_per_s": round(sent_bytes / span_s) if span_s > 0 else None,
                # A sends each published packet once per receiving node (plus a
                # sender report now and then): ~1.0 with two nodes.
                "relay_packets_per_published": round(sent / published, 3) if published else None,
                # B to A: lease refreshes, NACKs, keyframe requests.
                "relay_feedback_packets": sum(
                    n["relay_window"].get("packets_sent", 0) for n in nodes[1:]
                ),
                "redis_cpu_share": (
                    round((after["redis_cpu_s"] - before["redis_cpu_s"]) / span_s, 4)
                    if span_s > 0
                    else None
                ),
                # Not derivable here: the relay carries ~1/N of the forwarded
                # packets, and its cost drowns in the run-to-run variation of
                # the fan-out's (bench/README.md, "The cluster figures").
                "relay_us_per_packet_estimate": None,
            }
        )
        if not self.result["relay_one_stream_per_track"]:
            print(
                f"bench: {self.name}: expected one relay stream per track ({tracks}), "
                f"got out {out_streams}, in {in_streams}",
                file=sys.stderr,
                flush=True,
            )


async def cluster(subscribers: int, options: Options, nodes: int = 2) -> dict[str, Any]:
    """One publisher (as in fan-out) on node A of a two-node cluster, N
    subscribers split between A and B, the probe on B (its delay includes the
    relay hop); both nodes on the server's core."""
    async with ClusterRun(f"cluster-{nodes}x{subscribers}", options, nodes) as run:
        await run.publisher("pub")
        await run.join_subscribers(subscribers)

        def expected(before: dict[str, int], after: dict[str, int]) -> int:
            per_sub = _delta(before, after, "pub/audio") + _delta(before, after, "pub/video")
            return per_sub * subscribers

        await run.measure(expected)
        run.relay_figures()
        dests = run.dests([bot for bot, _ in run.subscribers])
        await run.floor([{"video": _spec(), "audio": True, "dests": dests}])
        run.result["kind"] = "cluster"
        return run.result


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def compare_cluster(results: list[dict[str, Any]]) -> None:
    """Each cluster result against the single-node fan-out to as many
    subscribers in the same invocation: ``cluster_overhead`` is the ratio of
    their µs per packet (means; ``cluster_overhead_p10`` of the low deciles),
    None when that fan-out did not run (or failed)."""
    single = {
        r["subscribers"]: r for r in results if r.get("kind") == "fanout" and "error" not in r
    }
    for r in results:
        if r.get("kind") != "cluster" or "error" in r:
            continue
        fan = single.get(r.get("subscribers"))
        r["cluster_overhead_vs"] = fan["scenario"] if fan else None
        r["cluster_overhead"] = _ratio(
            r.get("server_us_per_packet"), fan.get("server_us_per_packet") if fan else None
        )
        r["cluster_overhead_p10"] = _ratio(
            r.get("server_us_per_packet_p10"), fan.get("server_us_per_packet_p10") if fan else None
        )
