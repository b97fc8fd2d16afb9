"""The probe: a subscriber in its own process, so what it measures is the
server's doing and not the load generator's queue.

It joins the loaded room ``joins`` times in a row (each time timing WebSocket
start to the first whole video frame, then leaving), joins once more and stays:
that last subscriber is the newest, hence last in the server's fan-out order,
and samples every packet's delay for ``duration_s``. Prints one JSON line with
"ready" when its last join is done, then one with the results.

Run as ``python -m bench.probe CONFIG_JSON`` (the API secret in BENCH_SFU_SECRET).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

from bench.load import new_subscriber
from bench.stats import summarize_ms
from signaling.auth import Grants, issue_token


async def probe(config: dict) -> dict:
    secret = os.environ["BENCH_SFU_SECRET"]

    def token(identity: str) -> str:
        return issue_token(
            "bench", secret, config["room"], identity, name=identity, grants=Grants(publish=False)
        )

    join_s: list[float] = []
    # The load subscribers' joins have just asked for a keyframe; see below.
    await asyncio.sleep(0.6)
    for i in range(config["joins"] + 1):
        bot, counter = new_subscriber(
            config["url"], token(f"probe-{i}"), f"probe-{i}", max_delays=1_000_000
        )
        start = time.monotonic()
        await bot.connect()
        deadline = start + 10
        while counter.first_frame_s is None and time.monotonic() < deadline:
            await asyncio.sleep(0.002)
        if counter.first_frame_s is not None:
            join_s.append(counter.first_frame_s - start)
        if i < config["joins"]:
            await bot.leave()
            # The server asks the publisher for a keyframe per join, at most
            # one per 500 ms per track: keep joins apart so none waits on that.
            await asyncio.sleep(0.6)
    print(json.dumps({"ready": True}), flush=True)
    counter.recording = True
    packets_start = counter.packets
    await asyncio.sleep(config["duration_s"])
    counter.recording = False
    packets = counter.packets - packets_start
    await bot.leave()
    return {
        "join_to_first_frame": summarize_ms(join_s),
        "join_s": [round(s, 4) for s in join_s],
        "delay": summarize_ms(counter.delays_s),
        "packets": packets,
    }


def _prefer_cpu() -> None:
    """Run ahead of the load generator that shares this core, so a packet is
    read when it arrives and the delay measured is the server's, not the time
    spent waiting for a CPU slice (the probe itself needs very little)."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
    except (AttributeError, PermissionError, OSError):
        try:
            os.nice(-10)
        except (PermissionError, OSError):
            pass


def main() -> None:
    config = json.loads(sys.argv[1])
    _prefer_cpu()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    print(json.dumps(asyncio.run(probe(config))), flush=True)


if __name__ == "__main__":
    main()
