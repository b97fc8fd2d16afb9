"""CI smoke of the benchmark: the whole pipeline, a few seconds, no thresholds.

It proves `python -m bench` still runs end to end (server process, bots,
probe, floor, reports); the figures themselves come from a full run that a
person starts (bench/README.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
