"""Tests for signaling/workers.py: worker arguments, and the supervisor with fake children."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from signaling import workers
from signaling.workers import run_workers, worker_argv

TAIL_0 = ["--workers", "1", "--reuse-port", "--node-id", "ND_abc-0", "--relay-port"]


@pytest.mark.parametrize(
    ("serve_argv", "index", "relay_port", "expected"),
    [
        pytest.param([], 0, 0, [*TAIL_0, "0"], id="empty"),
        pytest.param(
            ["--port", "8080", "--workers", "2", "--redis-url", "redis://127.0.0.1:6379"],
            0,
            7000,
            ["--port", "8080", "--redis-url", "redis://127.0.0.1:6379", *TAIL_0, "7000"],
            id="space-form",
        ),
        pytest.param(
            ["--workers=4", "--port=8080", "--node-id=mine", "--relay-port=9000", "--dev"],
            3,
            7000,
            [
                "--port=8080",
                "--dev",
                "--workers",
                "1",
                "--reuse-port",
                "--node-id",
                "ND_abc-3",
                "--relay-port",
                "7003",
            ],
            id="equals-forms",
        ),
        pytest.param(
            ["--reuse-port", "--node-id", "mine", "--relay-port", "7000", "--workers", "2"],
            1,
            0,
            ["--workers", "1", "--reuse-port", "--node-id", "ND_abc-1", "--relay-port", "0"],
            id="only-own-options-ephemeral-relay",
        ),
        pytest.param(
            [
                "--rtc-host",
                "10.0.0.1",
                "--workers",
                "2",
                "--rtc-host",
                "10.0.0.2",
                "--stun",
                "stun:s:3478",
                "--stun",
                "stun:t:3478",
                "--log-level",
                "debug",
            ],
            1,
            7000,
            [
                "--rtc-host",
                "10.0.0.1",
                "--rtc-host",
                "10.0.0.2",
                "--stun",
                "stun:s:3478",
                "--stun",
                "stun:t:3478",
                "--log-level",
                "debug",
                "--workers",
                "1",
                "--reuse-port",
                "--node-id",
                "ND_abc-1",
                "--relay-port",
                "7001",
            ],
            id="repeated-options-kept-in-order",
        ),
        pytest.param(
            ["--node-id", "a", "--node-id=b", "--workers", "2", "--workers=3", "--host", "::"],
            0,
            0,
            ["--host", "::", *TAIL_0, "0"],
            id="own-options-repeated",
        ),
        pytest.param(
            ["--workers-extra", "x", "--node-identity", "y"],
            0,
            0,
            ["--workers-extra", "x", "--node-identity", "y", *TAIL_0, "0"],
            id="longer-names-are-not-ours",
        ),
    ],
)
def test_worker_argv(
    serve_argv: list[str], index: int, relay_port: int, expected: list[str]
) -> None:
    before = list(serve_argv)
    assert worker_argv(serve_argv, index, node_id_base="ND_abc", relay_port=relay_port) == expected
    assert serve_argv == before  # pure: the caller's list is left alone


def test_each_worker_gets_its_own_metrics_port() -> None:
    argv = ["--metrics-port", "9100", "--port", "8080"]
    for index in (0, 1):
        out = worker_argv(argv, index, node_id_base="n", relay_port=0, metrics_port=9100)
        assert out.count("--metrics-port") == 1
        assert out[out.index("--metrics-port") + 1] == str(9100 + index)
    assert "--metrics-port" not in worker_argv(argv, 0, node_id_base="n", relay_port=0)


def test_worker_argv_parses_with_the_value_of_each_own_option_last() -> None:
    # Whatever was kept, the appended options come last, so they win in argparse.
    argv = worker_argv(["--port", "9"], 2, node_id_base="n", relay_port=100)
    assert argv[-7:] == [
        "--workers",
        "1",
        "--reuse-port",
        "--node-id",
        "n-2",
        "--relay-port",
        "102",
    ]


# --- the supervisor, with fake children ----------------------------------------------------

# A child that records its pid and arguments (atomically) and then waits.
RECORD_AND_SLEEP = (
    "import json, os, sys, time\n"
    "out = sys.argv[1]\n"
    "tmp = os.path.join(out, f'.{os.getpid()}')\n"
    "with open(tmp, 'w') as f: json.dump(sys.argv[2:], f)\n"
    "os.rename(tmp, os.path.join(out, f'{os.getpid()}.json'))\n"
    "time.sleep(60)\n"
)
# The same, but it ignores SIGTERM (a worker that does not drain).
STUBBORN = "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" + RECORD_AND_SLEEP


def started(out: Path) -> dict[int, str]:
    """pid -> node id of every child that has started so far."""
    result = {}
    for path in out.glob("*.json"):
        argv = json.loads(path.read_text())
        result[int(path.stem)] = argv[argv.index("--node-id") + 1]
    return result


def wait_for(what: str, predicate: Callable[[], bool], timeout: float = 8.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class Supervisor:
    """run_workers in a thread, stoppable with its stop_event."""

    def __init__(self, command: list[str], n: int = 2, argv: list[str] | None = None) -> None:
        self.stop = threading.Event()
        self.result: list[int] = []
        self.thread = threading.Thread(
            target=lambda: self.result.append(
                run_workers(
                    argv if argv is not None else ["--port", "8080", "--workers", str(n)],
                    n,
                    node_id_base="ND_test",
                    relay_port=7000,
                    command=command,
                    stop_event=self.stop,
                )
            ),
            daemon=True,
        )
        self.thread.start()

    def join(self, timeout: float = 10.0) -> int:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "run_workers did not return"
        return self.result[0]


def test_supervisor_starts_restarts_and_stops(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sfu.workers")
    sup = Supervisor([sys.executable, "-c", RECORD_AND_SLEEP, str(tmp_path)])
    try:
        wait_for("two workers", lambda: len(started(tmp_path)) == 2)
        first = started(tmp_path)
        assert sorted(first.values()) == ["ND_test-0", "ND_test-1"]
        for path in tmp_path.glob("*.json"):
            argv = json.loads(path.read_text())
            assert argv[:2] == ["--port", "8080"]
            assert argv.count("--workers") == 1 and "--reuse-port" in argv
            node = argv[argv.index("--node-id") + 1]
            assert argv[argv.index("--relay-port") + 1] == str(7000 + int(node[-1]))

        victim = next(pid for pid, node in first.items() if node == "ND_test-0")
        os.kill(victim, signal.SIGKILL)
        wait_for("worker 0 restarted", lambda: len(started(tmp_path)) == 3)
        now = started(tmp_path)
        new = [pid for pid in now if pid not in first]
        assert len(new) == 1 and new[0] != victim and now[new[0]] == "ND_test-0"
        crash_logs = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any("ND_test-0" in m and "-9" in m and "SIGKILL" in m for m in crash_logs)
        assert all(alive(pid) for pid in now if pid != victim)
    finally:
        sup.stop.set()
        assert sup.join() == 0
    assert not any(alive(pid) for pid in started(tmp_path))


def test_supervisor_gives_up_on_a_worker_that_keeps_crashing(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(workers, "RESTART_BACKOFF_S", 0.01)
    monkeypatch.setattr(workers, "MAX_RESTARTS", 3)
    monkeypatch.setattr(workers, "RESTART_WINDOW_S", 60.0)
    sup = Supervisor([sys.executable, "-c", "raise SystemExit(3)"])
    assert sup.join(timeout=12) == 1
    messages = [r.getMessage() for r in caplog.records if r.name == "sfu.workers"]
    assert any("ND_test-" in m and "code 3" in m for m in messages)
    assert any("crashed 4 times" in m for m in messages)


def test_supervisor_kills_workers_that_do_not_drain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(workers, "STOP_TIMEOUT_S", 0.5)
    sup = Supervisor([sys.executable, "-c", STUBBORN, str(tmp_path)], n=1)
    # The record is written after SIGTERM is ignored: from here SIGTERM does nothing.
    wait_for("the worker", lambda: len(started(tmp_path)) == 1)
    sup.stop.set()
    assert sup.join() == 0
    assert not any(alive(pid) for pid in started(tmp_path))
    assert any("did not stop: killing it" in r.getMessage() for r in caplog.records)


def test_sigterm_drains_the_workers_and_exits_0(tmp_path: Path) -> None:
    # In the main thread of its own process, as `sfu serve --workers 2` runs it.
    code = (
        "import sys\n"
        "from signaling.workers import run_workers\n"
        "sys.exit(run_workers(['--port', '8080'], 2, node_id_base='ND_sig', relay_port=0,\n"
        "                     command=[sys.executable, '-c', sys.argv[1], sys.argv[2]]))\n"
    )
    sup = subprocess.Popen(
        [sys.executable, "-c", code, RECORD_AND_SLEEP, str(tmp_path)],
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        wait_for("two workers", lambda: len(started(tmp_path)) == 2)
        assert sorted(started(tmp_path).values()) == ["ND_sig-0", "ND_sig-1"]
        sup.send_signal(signal.SIGTERM)
        assert sup.wait(timeout=10) == 0
    finally:
        if sup.poll() is None:
            sup.kill()
            sup.wait()
    assert not any(alive(pid) for pid in started(tmp_path))
