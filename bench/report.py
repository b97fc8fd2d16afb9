"""Results as JSON, a Markdown table and a plot (PNG, when matplotlib is there)."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["machine", "markdown", "write"]


def machine() -> dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import uvloop  # noqa: F401

        loop = "uvloop"
    except ImportError:
        loop = "asyncio"
    return {
        "cpu": model or platform.processor(),
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "event_loop": loop,
    }


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown(results: list[dict[str, Any]], info: dict[str, Any]) -> str:
    lines = [
        f"Run {info['date']} on {info['machine']['cpu']} ({info['machine']['cores']} cores), "
        f"Python {info['machine']['python']}, {info['machine']['event_loop']}; "
        f"server pinned to one core, {info['duration_s']:.0f} s windows.",
        "",
        "| scenario | subs | fwd pkt/s | server CPU | µs/pkt (p10) | floor µs/pkt (p10) "
        "| ratio p10 (mean) | delivery | delay p50 / p99 ms | join→frame p50 / max ms | RSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['scenario']} | failed: {r['error']} |" + " |" * 9)
            continue
        delay = r.get("delay_probe", {})
        join = r.get("join_to_first_frame", {})
        delivery = r.get("delivery")
        lines.append(
            "| {scenario} | {subs} | {pps} | {share} | {us} | {floor} | {ratio} | {delivery} "
            "| {d50} / {d99} | {j50} / {jmax} | {rss} |".format(
                scenario=r["scenario"],
                subs=r.get("subscribers", "–"),
                pps=_fmt(r.get("forwarded_pps")),
                share=f"{r['server_cpu_share'] * 100:.0f} %" if "server_cpu_share" in r else "–",
                us=f"{_fmt(r.get('server_us_per_packet'))} "
                f"({_fmt(r.get('server_us_per_packet_p10'))})",
                floor=f"{_fmt(r.get('floor_us_per_packet'))} "
                f"({_fmt(r.get('floor_us_per_packet_p10'))})",
                ratio=f"{_fmt(r.get('ratio_to_floor'))} ({_fmt(r.get('ratio_to_floor_mean'))})",
                delivery=f"{delivery * 100:.2f} %" if delivery is not None else "–",
                d50=_fmt(delay.get("p50_ms")),
                d99=_fmt(delay.get("p99_ms")),
                j50=_fmt(join.get("p50_ms"), 0),
                jmax=_fmt(join.get("max_ms"), 0),
                rss=_fmt(r.get("server_rss_mb"), 0),
            )
        )
    lines += _cluster_lines(results)
    return "\n".join(lines) + "\n"


def _cluster_lines(results: list[dict[str, Any]]) -> list[str]:
    """The cluster rows' own figures: cost against the single node, the relay."""
    rows = [r for r in results if r.get("kind") == "cluster" and "error" not in r]
    if not rows:
        return []
    lines = [
        "",
        "Cluster: both nodes on the server's one core (server CPU and RSS above are "
        "their sums); the probe on node B, behind the relay.",
        "",
        "| scenario | vs | overhead mean (p10) | relay streams A→B | relay pkt/s "
        "| relay pkt / published | per node: subs, CPU, µs/pkt, RSS MB |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        out_streams = r.get("relay_out_streams") or []
        in_streams = r.get("relay_in_streams") or []
        streams = (
            f"{out_streams[0]} out / {in_streams[-1]} in" if out_streams and in_streams else "–"
        )
        if r.get("relay_one_stream_per_track") is False:
            streams += " (not 1 per track)"
        nodes = "; ".join(
            "{id}: {subs}, {share}, {us}, {rss}".format(
                id=n.get("node_id", "?"),
                subs=n.get("subscribers", "–"),
                share=f"{n['cpu_share'] * 100:.0f} %" if "cpu_share" in n else "–",
                us=_fmt(n.get("us_per_packet")),
                rss=_fmt(n.get("rss_mb"), 0),
            )
            for n in r.get("nodes", [])
        )
        lines.append(
            "| {scenario} | {vs} | {over} | {streams} | {pps} | {per_pub} | {nodes} |".format(
                scenario=r["scenario"],
                vs=r.get("cluster_overhead_vs") or "–",
                over=f"{_fmt(r.get('cluster_overhead'))} ({_fmt(r.get('cluster_overhead_p10'))})",
                streams=streams,
                pps=_fmt(r.get("relay_packets_per_s")),
                per_pub=_fmt(r.get("relay_packets_per_published"), 3),
                nodes=nodes or "–",
            )
        )
    return lines


def plot(results: list[dict[str, Any]], path: Path) -> bool:
    """Fan-out: cost per packet (server and floor) and delay against N; the
    cluster's points (two nodes, same core) beside them at their N."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fan = sorted(
        (r for r in results if r.get("kind") == "fanout" and "error" not in r),
        key=lambda r: r["subscribers"],
    )
    clusters = sorted(
        (r for r in results if r.get("kind") == "cluster" and "error" not in r),
        key=lambda r: r["subscribers"],
    )
    if not fan and not clusters:
        return False
    n = [r["subscribers"] for r in fan]
    cn = [r["subscribers"] for r in clusters]
    fig, (cost, delay) = plt.subplots(1, 2, figsize=(10, 4))
    panels = [
        (
            cost,
            "Fan-out 1→N: cost per packet",
            "CPU µs per forwarded packet",
            [
                ("server", "o-", [r.get("server_us_per_packet") for r in fan]),
                ("floor (protect+send)", "s--", [r.get("floor_us_per_packet") for r in fan]),
            ],
        ),
        (
            delay,
            "Added delay",
            "ms, publisher send → last subscriber",
            [
                ("p50", "o-", [r["delay_probe"].get("p50_ms") for r in fan]),
                ("p99", "s-", [r["delay_probe"].get("p99_ms") for r in fan]),
            ],
        ),
    ]
    cluster_points = [
        [("cluster, 2 nodes on 1 core", "D", [r.get("server_us_per_packet") for r in clusters])],
        [
            ("cluster p50 (probe on B)", "D", [r["delay_probe"].get("p50_ms") for r in clusters]),
            ("cluster p99 (probe on B)", "^", [r["delay_probe"].get("p99_ms") for r in clusters]),
        ],
    ]
    ticks = sorted(set(n) | set(cn))
    for (axes, title, ylabel, lines), points in zip(panels, cluster_points, strict=True):
        for label, style, values in lines:
            if n:
                axes.plot(n, values, style, label=label)
        for label, style, values in points:
            if cn:
                axes.plot(cn, values, style, label=label, markerfacecolor="none")
        axes.set_xscale("log")
        axes.minorticks_off()
        axes.set_xticks(ticks, [str(x) for x in ticks])
        axes.set_xlabel("subscribers")
        axes.set_ylabel(ylabel)
        axes.set_ylim(bottom=0)
        axes.legend()
        axes.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write(
    results: list[dict[str, Any]], info: dict[str, Any], out_dir: Path, stem: str
) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    json_path = out_dir / f"{stem}.json"
    json_path.write_text(json.dumps({"run": info, "results": results}, indent=2) + "\n")
    written.append(json_path)
    md_path = out_dir / f"{stem}.md"
    md_path.write_text(markdown(results, info))
    written.append(md_path)
    png_path = out_dir / f"{stem}.png"
    if plot(results, png_path):
        written.append(png_path)
    return written


def today() -> str:
    return time.strftime("%Y-%m-%d")
