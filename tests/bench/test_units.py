"""The benchmark's pure parts: /proc parsing, percentiles, send stamps, report."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench import procstat, report, scenarios
from bench.server import ServerProcess
from bench.stats import percentile, summarize_ms
from sfu.core.rtp import build_packet, parse_header
from sfu_bot.stamp import STAMP_SIZE, add_send_stamp, read_send_stamp

STAT = "1234 (sfu serve) S 1 1234 1234 0 -1 4194304 100 0 0 0 250 75 0 0 20 0 3 0 10 0 0"


@pytest.mark.parametrize(
    ("text", "ticks"),
    [
        (STAT, 325),
        # A command name with spaces and parentheses: fields count from the last ')'.
        ("7 (a) b) (c) R 1 7 7 0 -1 0 0 0 0 0 11 22 0 0 20 0 1 0 5 0 0", 33),
        ("9 (x) S 1 9 9 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5 0 0", 0),
    ],
)
def test_cpu_ticks_are_utime_plus_stime(text: str, ticks: int) -> None:
    assert procstat.parse_cpu_ticks(text) == ticks


@pytest.mark.parametrize(
    ("text", "rss"),
    [
        ("Name:\tpython\nVmPeak:\t 9000 kB\nVmRSS:\t  1024 kB\nThreads:\t3\n", 1024 * 1024),
        ("VmRSS: 1 kB", 1024),
    ],
)
def test_rss(text: str, rss: int) -> None:
    assert procstat.parse_rss_bytes(text) == rss


def test_rss_missing_or_odd_unit_is_an_error() -> None:
    with pytest.raises(ValueError):
        procstat.parse_rss_bytes("Name: zombie\n")
    with pytest.raises(ValueError):
        procstat.parse_rss_bytes("VmRSS: 3 MB\n")


def test_schedstat_and_udp_counters() -> None:
    assert procstat.parse_schedstat_ns("123456789 5000 42\n") == 123456789
    snmp = (
        "Ip: Forwarding DefaultTTL\nIp: 1 64\n"
        "Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\n"
        "Udp: 10 2 3 40 7 0\n"
    )
    assert procstat.parse_udp_counters(snmp)["RcvbufErrors"] == 7
    with pytest.raises(ValueError):
        procstat.parse_udp_counters("Ip: a\nIp: 1\n")


def test_this_process_is_measured_from_proc() -> None:
    spent = procstat.cpu_seconds(os.getpid())
    sum(range(2_000_000))  # burn a little CPU
    assert procstat.cpu_seconds(os.getpid()) > spent
    assert procstat.rss_bytes(os.getpid()) > 1 << 20
    assert "RcvbufErrors" in procstat.udp_counters()


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([], 50, None),
        ([5.0], 0, 5.0),
        ([5.0], 99, 5.0),
        ([1, 2, 3, 4], 50, 2),
        ([4, 3, 2, 1], 100, 4),
        (list(range(1, 101)), 99, 99),
        (list(range(1, 1001)), 99, 990),
    ],
)
def test_percentile_nearest_rank(values: list[float], q: float, expected: float | None) -> None:
    assert percentile(values, q) == expected


def test_percentile_range_and_summary() -> None:
    with pytest.raises(ValueError):
        percentile([1.0], 101)
    assert summarize_ms([0.001, 0.002, 0.010]) == {
        "count": 3,
        "p50_ms": 2.0,
        "p99_ms": 10.0,
        "max_ms": 10.0,
    }
    assert summarize_ms([])["p50_ms"] is None


def test_send_stamp_survives_as_rtp_padding() -> None:
    packet = build_packet(True, 96, 7, 9000, 0x1234, b"", b"\x10\x80payload")
    stamped = add_send_stamp(packet, 123_456_789_012)
    assert len(stamped) == len(packet) + STAMP_SIZE
    header = parse_header(stamped)
    # RFC 3550 §5.1: the padding is not payload; the payload is untouched.
    assert header.padding
    assert stamped[header.payload_start : header.payload_end] == b"\x10\x80payload"
    assert read_send_stamp(stamped) == 123_456_789_012
    assert read_send_stamp(packet) is None
    with pytest.raises(ValueError):
        add_send_stamp(stamped, 1)


def test_other_padding_is_not_a_stamp() -> None:
    padded = build_packet(False, 96, 1, 1, 1, b"", b"x" * 20, padding=STAMP_SIZE)
    assert read_send_stamp(padded) is None


def test_markdown_table_has_a_row_per_scenario() -> None:
    info = {
        "date": "2026-11-21",
        "duration_s": 10.0,
        "machine": {"cpu": "cpu", "cores": 2, "python": "3.11", "event_loop": "uvloop"},
    }
    results = [
        {
            "scenario": "fanout-25",
            "subscribers": 25,
            "forwarded_pps": 3600,
            "server_cpu_share": 0.031,
            "server_us_per_packet": 8.5,
            "server_us_per_packet_p10": 8.0,
            "floor_us_per_packet": 4.25,
            "floor_us_per_packet_p10": 4.0,
            "ratio_to_floor": 2.0,
            "ratio_to_floor_mean": 2.0,
            "delivery": 1.0,
            "delay_probe": {"p50_ms": 0.2, "p99_ms": 1.5},
            "join_to_first_frame": {"p50_ms": 60.0, "max_ms": 70.0},
            "server_rss_mb": 90.0,
        },
        {"scenario": "meeting-10", "error": "RuntimeError: boom"},
    ]
    table = report.markdown(results, info)
    assert (
        "| fanout-25 | 25 | 3600 | 3 % | 8.50 (8.00) | 4.25 (4.00) | 2.00 (2.00) | 100.00 % "
        "| 0.20 / 1.50 |"
    ) in table
    assert "| meeting-10 | failed: RuntimeError: boom |" in table


def _cluster_result(**extra: object) -> dict[str, object]:
    result: dict[str, object] = {
        "scenario": "cluster-2x200",
        "kind": "cluster",
        "subscribers": 200,
        "forwarded_pps": 29000,
        "server_cpu_share": 0.31,
        "server_us_per_packet": 11.0,
        "server_us_per_packet_p10": 9.0,
        "delivery": 1.0,
        "delay_probe": {"p50_ms": 1.5, "p99_ms": 5.0},
        "join_to_first_frame": {"p50_ms": 70.0, "max_ms": 90.0},
        "server_rss_mb": 230.0,
        "relay_out_streams": [2, 0],
        "relay_in_streams": [0, 2],
        "relay_one_stream_per_track": True,
        "relay_packets_per_s": 146,
        "relay_packets_per_published": 1.012,
        "nodes": [
            {
                "node_id": "bench-a",
                "subscribers": 100,
                "cpu_share": 0.16,
                "us_per_packet": 11.2,
                "rss_mb": 115.0,
            },
            {
                "node_id": "bench-b",
                "subscribers": 100,
                "cpu_share": 0.15,
                "us_per_packet": 10.8,
                "rss_mb": 115.0,
            },
        ],
    }
    result.update(extra)
    return result


def test_cluster_overhead_against_the_same_runs_single_node_fanout() -> None:
    fanout = {
        "scenario": "fanout-200",
        "kind": "fanout",
        "subscribers": 200,
        "server_us_per_packet": 10.0,
        "server_us_per_packet_p10": 7.5,
    }
    other = {
        "scenario": "fanout-50",
        "kind": "fanout",
        "subscribers": 50,
        "server_us_per_packet": 1.0,
        "server_us_per_packet_p10": 1.0,
    }
    cluster = _cluster_result()
    scenarios.compare_cluster([other, fanout, cluster])
    assert cluster["cluster_overhead_vs"] == "fanout-200"
    assert cluster["cluster_overhead"] == 1.1
    assert cluster["cluster_overhead_p10"] == 1.2
    # No fan-out to as many subscribers (or it failed): nothing is made up.
    alone = _cluster_result()
    failed = {"scenario": "fanout-200", "error": "RuntimeError: boom"}
    scenarios.compare_cluster([other, failed, alone])
    assert alone["cluster_overhead_vs"] is None
    assert alone["cluster_overhead"] is None and alone["cluster_overhead_p10"] is None


def test_markdown_has_the_cluster_row_and_its_relay_figures() -> None:
    info = {
        "date": "2026-11-21",
        "duration_s": 10.0,
        "machine": {"cpu": "cpu", "cores": 2, "python": "3.11", "event_loop": "uvloop"},
    }
    cluster = _cluster_result(
        cluster_overhead_vs="fanout-200", cluster_overhead=1.1, cluster_overhead_p10=1.2
    )
    table = report.markdown([cluster, {"scenario": "cluster-2x400", "error": "boom"}], info)
    assert "| cluster-2x200 | 200 | 29000 | 31 % | 11.00 (9.00) |" in table
    assert (
        "| cluster-2x200 | fanout-200 | 1.10 (1.20) | 2 out / 2 in | 146 | 1.012 "
        "| bench-a: 100, 16 %, 11.20, 115; bench-b: 100, 15 %, 10.80, 115 |"
    ) in table
    assert "| cluster-2x400 | failed: boom |" in table
    # Without a cluster result there is no cluster section.
    assert "relay" not in report.markdown([{"scenario": "x", "error": "e"}], info)
    broken = _cluster_result(relay_one_stream_per_track=False, relay_out_streams=[4, 0])
    assert "4 out / 2 in (not 1 per track)" in report.markdown([broken], info)


def test_plot_draws_cluster_points(tmp_path: Path) -> None:
    assert report.plot([_cluster_result()], tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 1000


def test_cluster_node_command_line(tmp_path: Path) -> None:
    node = ServerProcess(
        cpu=0,
        log_path=tmp_path / "a.log",
        redis_url="redis://127.0.0.1:6390/0",
        node_id="bench-a",
        cluster="bench",
        secret="s3cret",
    )
    command = node.command()
    assert command[command.index("--redis-url") + 1] == "redis://127.0.0.1:6390/0"
    assert command[command.index("--cluster") + 1] == "bench"
    assert command[command.index("--node-id") + 1] == "bench-a"
    assert command[command.index("--relay-host") + 1] == "127.0.0.1"
    assert node.secret == "s3cret"
    if command[0] == "taskset":
        assert command[:3] == ["taskset", "-c", "0"]
    alone = ServerProcess(cpu=None, log_path=tmp_path / "b.log")
    assert "--redis-url" not in alone.command() and alone.command()[0] != "taskset"
    # Every node of one ClusterRun shares one API secret, one Redis, one cluster.
    run = scenarios.ClusterRun("c", scenarios.Options(server_cpu=None, log_dir=tmp_path))
    a, b = run.servers
    assert a.secret == b.secret and a.redis_url == b.redis_url == run.redis.url
    assert a.port != b.port and run.server is a and run.probe_server is b
