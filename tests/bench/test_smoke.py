"""CI smoke of the benchmark: the whole pipeline, a few seconds, no thresholds.

It proves `python -m bench` still runs end to end (server process, bots,
probe, floor, reports); the figures themselves come from a full run that a
person starts (bench/README.md).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import scenarios

REPO = Path(__file__).resolve().parents[2]


def test_bench_smoke_produces_every_figure(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads((tmp_path / "smoke.json").read_text())
    assert data["run"]["machine"]["cores"] >= 1
    (result,) = data["results"]
    assert result["scenario"] == "fanout-4"
    assert result["subscribers"] == 4
    # Figures exist and are measurements, not placeholders.
    assert result["forwarded_packets"] > 0
    assert result["server_us_per_packet"] > 0
    assert result["floor"]["packets"] > 0
    assert result["ratio_to_floor_mean"] > 0
    assert result["server_us_per_packet_slices"]
    assert 0 < result["delivery"] <= 1.01
    assert result["delay_probe"]["count"] > 0
    assert result["join_to_first_frame"]["count"] >= 1
    assert result["server_rss_mb"] > 0
    table = (tmp_path / "smoke.md").read_text()
    assert "| fanout-4 | 4 |" in table
    assert (tmp_path / "smoke.png").stat().st_size > 1000


def test_bench_cluster_smoke_relays_each_track_once(tmp_path: Path) -> None:
    """Two nodes of one cluster, 2 + 2 subscribers, 2 s: the relay carries one
    stream per published track from A to B, and the subscribers on both get
    the media."""
    started = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--scenarios",
            "cluster",
            "--cluster",
            "4",
            "--duration",
            "2",
            "--probe-joins",
            "1",
            "--out",
            str(tmp_path),
            "--name",
            "cluster-smoke",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert time.monotonic() - started < 20
    data = json.loads((tmp_path / "cluster-smoke.json").read_text())
    (result,) = data["results"]
    assert result["scenario"] == "cluster-2x4"
    assert result["kind"] == "cluster"
    assert result["subscribers"] == 4
    assert result["forwarded_packets"] > 0
    assert result["server_us_per_packet"] > 0
    assert result["server_us_per_packet_slices"]
    assert result["floor"]["packets"] > 0
    assert result["delivery"] > 0.9
    assert result["delay_probe"]["count"] > 0
    assert result["join_to_first_frame"]["count"] >= 1
    a, b = result["nodes"]
    assert (a["node_id"], b["node_id"]) == ("bench-a", "bench-b")
    assert a["subscribers"] == 2 and b["subscribers"] == 2 and b["probe"]
    assert a["rss_mb"] > 0 and b["rss_mb"] > 0
    assert a["cpu_s"] > 0 and b["cpu_s"] > 0
    # One relay stream per published track (audio + video), A to B only.
    assert result["published_tracks"] == 2
    assert a["relay"]["out_streams"] == 2 and b["relay"]["in_streams"] == 2
    assert a["relay"]["in_streams"] == 0 and b["relay"]["out_streams"] == 0
    assert result["relay_one_stream_per_track"] is True
    assert result["relay_packets_sent"] > 0 and result["relay_packets_per_s"] > 0
    # No single-node fan-out in this invocation: nothing to compare against.
    assert result["cluster_overhead"] is None and result["cluster_overhead_vs"] is None
    table = (tmp_path / "cluster-smoke.md").read_text()
    assert "| cluster-2x4 | 4 |" in table
    assert "| cluster-2x4 | – |" in table  # the cluster section's row
    assert (tmp_path / "cluster-smoke.png").stat().st_size > 1000


async def test_cluster_run_stops_redis_and_nodes_when_a_node_fails(tmp_path: Path) -> None:
    options = scenarios.Options(server_cpu=None, log_dir=tmp_path)
    run = scenarios.ClusterRun("cluster-broken", options)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        run.servers[1].port = taken.getsockname()[1]  # node B cannot bind
        with pytest.raises(RuntimeError, match="server exited"):
            async with run:
                pass
    assert run.redis._proc is not None and run.redis._proc.returncode is not None
    for server in run.servers:
        assert server._proc is not None and server._proc.returncode is not None
