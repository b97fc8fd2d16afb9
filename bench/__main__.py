"""``python -m bench``: run the benchmark scenarios and write the reports.

python -m bench                      # the full run (~10 minutes)
python -m bench --smoke              # a few seconds: one tiny fan-out
python -m bench --scenarios fanout --fanout 50,200 --duration 5
python -m bench --scenarios fanout,cluster --fanout 200 --cluster 200
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import traceback
from pathlib import Path
from typing import Any

from bench import report, scenarios

DEFAULT_FANOUT = (25, 50, 100, 200, 400)
SCENARIOS = ("fanout", "meeting", "simulcast", "cluster")


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help="comma-separated: " + ", ".join(SCENARIOS) + " (default: all)",
    )
    parser.add_argument(
        "--fanout",
        default=",".join(map(str, DEFAULT_FANOUT)),
        help="subscriber counts of the fan-out scenario",
    )
    parser.add_argument("--meeting", type=int, default=10, help="participants per meeting")
    parser.add_argument(
        "--meeting-rooms",
        default="1,5",
        help="meetings at once, one run per value (5 x 10x10 loads over half a core)",
    )
    parser.add_argument(
        "--simulcast", type=int, default=99, help="subscribers, spread over 3 layers"
    )
    parser.add_argument(
        "--cluster",
        type=int,
        default=200,
        help="subscribers of the cluster scenario, half on each of its two nodes",
    )
    parser.add_argument("--duration", type=float, default=10.0, help="window seconds per scenario")
    parser.add_argument("--probe-joins", type=int, default=5)
    parser.add_argument(
        "--no-pacing",
        action="store_true",
        help="publishers send each frame in one burst instead of pacing like a browser",
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--name", default=None, help="file stem of the reports (default: date)")
    parser.add_argument(
        "--smoke", action="store_true", help="CI smoke: one fan-out to 4 subscribers, 2 s"
    )
    return parser.parse_args()


async def _main(args: argparse.Namespace) -> list[dict[str, Any]]:
    server_cpu = scenarios.pin_load_generator()
    options = scenarios.Options(
        duration_s=args.duration,
        probe_joins=args.probe_joins,
        server_cpu=server_cpu,
        pacing=not args.no_pacing,
    )
    plan: list[tuple[str, Any]] = []
    wanted = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = set(wanted) - set(SCENARIOS)
    if unknown:
        raise SystemExit(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    if "fanout" in wanted:
        for n in (int(x) for x in args.fanout.split(",")):
            plan.append((f"fanout-{n}", lambda n=n: scenarios.fanout(n, options)))
    if "meeting" in wanted:
        for rooms in (int(x) for x in args.meeting_rooms.split(",")):
            plan.append(
                (
                    f"meeting-{rooms}x{args.meeting}",
                    lambda rooms=rooms: scenarios.meeting(args.meeting, rooms, options),
                )
            )
    if "simulcast" in wanted:
        plan.append(
            (f"simulcast-{args.simulcast}", lambda: scenarios.simulcast(args.simulcast, options))
        )
    if "cluster" in wanted:
        plan.append((f"cluster-2x{args.cluster}", lambda: scenarios.cluster(args.cluster, options)))
    results = []
    for name, run in plan:
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        try:
            result = await run()
        except Exception as exc:  # noqa: BLE001 - one failed scenario must not lose the rest
            traceback.print_exc()
            result = {"scenario": name, "error": f"{type(exc).__name__}: {exc}"}
        print(f"bench: {name}: {result}", file=sys.stderr, flush=True)
        results.append(result)
    # Against the single node's fan-out to as many subscribers, if it ran.
    scenarios.compare_cluster(results)
    return results


def main() -> int:
    args = _parse()
    if args.smoke:
        args.scenarios, args.fanout, args.duration, args.probe_joins = "fanout", "4", 2.0, 1
    logging.basicConfig(level=logging.WARNING)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    results = asyncio.run(_main(args))
    info = {
        "date": report.today(),
        "machine": report.machine(),
        "duration_s": args.duration,
        "pacing": not args.no_pacing,
        "command": " ".join(sys.argv),
    }
    stem = args.name or ("smoke" if args.smoke else report.today())
    for path in report.write(results, info, args.out, stem):
        print(path)
    print(report.markdown(results, info))
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
