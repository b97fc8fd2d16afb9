"""`sfu serve --workers N`: run N server processes on one machine, and keep them running.

One Python process forwards media on one core. To use more cores, the
supervisor here starts N `sfu serve` processes that all bind the same
signaling port with SO_REUSEPORT: the kernel spreads new WebSocket
connections across them, so clients still see one address.

Each worker is a full cluster node, with its own node id (`{base}-{index}`)
and its own relay port (`base port + index`, or an ephemeral one). Two
participants of one room can land on different workers of the same machine,
exactly as they can land on different machines, so the workers need the
shared membership and the relays between nodes to see each other's rooms
and tracks: that is why `--workers N` with N > 1 requires Redis.

The supervisor restarts a worker that dies (after a backoff, so a worker that
crashes at start does not spin), gives up when one keeps crashing, and on
SIGTERM/SIGINT asks every worker to drain (they tell their clients to migrate)
before it exits.
"""

from __future__ import annotations

import collections
import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import FrameType

logger = logging.getLogger("sfu.workers")

#: First wait before restarting a worker that died; doubles on each crash ...
RESTART_BACKOFF_S = 1.0
#: ... up to this.
MAX_BACKOFF_S = 30.0
#: A worker that stayed up this long is healthy again: its backoff starts over.
STABLE_AFTER_S = 60.0
#: More crashes than this within RESTART_WINDOW_S (one worker) stop everything:
#: restarting a worker that cannot run only hides the problem.
MAX_RESTARTS = 10
RESTART_WINDOW_S = 300.0
#: How long workers get to drain after SIGTERM before they are killed.
STOP_TIMEOUT_S = 15.0
#: How often the supervisor looks at its children.
POLL_S = 0.2

#: Options the supervisor sets itself for each worker, so the ones it was given
#: are dropped: with a value ...
_OWN_OPTIONS = ("--workers", "--node-id", "--relay-port", "--metrics-port")
#: ... and without.
_OWN_FLAGS = ("--reuse-port",)


def default_command() -> list[str]:
    """The command a worker runs, before its arguments: this Python, this package."""
    return [sys.executable, "-m", "signaling.cli", "serve"]


def worker_argv(
    serve_argv: Sequence[str],
    index: int,
    *,
    node_id_base: str,
    relay_port: int,
    metrics_port: int | None = None,
) -> list[str]:
    """The `sfu serve` arguments of worker `index` (0-based).

    Every argument is kept in order except the ones that must differ per worker
    or would make the worker a supervisor itself (`--workers`, `--node-id`,
    `--relay-port`, `--reuse-port`, also in their `--opt=value` forms); those
    are appended: one process (`--workers 1`), sharing the signaling port
    (`--reuse-port`), with its own node id and relay port. A relay port of 0
    stays 0, meaning each worker picks a free one. A `--metrics-port P`
    becomes `P+index`: one scrape target per worker (they cannot share it).
    """
    out: list[str] = []
    skip_value = False
    for arg in serve_argv:
        if skip_value:
            skip_value = False
            continue
        if arg in _OWN_OPTIONS:
            skip_value = True
            continue
        if arg in _OWN_FLAGS or any(arg.startswith(f"{opt}=") for opt in _OWN_OPTIONS):
            continue
        out.append(arg)
    port = relay_port + index if relay_port else 0
    argv = [
        *out,
        "--workers",
        "1",
        "--reuse-port",
        "--node-id",
        f"{node_id_base}-{index}",
        "--relay-port",
        str(port),
    ]
    if metrics_port is not None:
        argv += ["--metrics-port", str(metrics_port + index)]
    return argv


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"code {code} (killed by {signal.Signals(-code).name})"
        except ValueError:
            pass
    return f"code {code}"


@dataclass
class _Worker:
    """One worker slot: its fixed argv, and the process currently filling it."""

    index: int
    node_id: str
    cmd: list[str]
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    backoff_s: float = 0.0
    restart_at: float = 0.0
    crashes: collections.deque[float] = field(default_factory=collections.deque)

    def start(self) -> None:
        self.started_at = time.monotonic()
        try:
            self.proc = subprocess.Popen(self.cmd)
        except OSError as exc:
            # A crash like any other: retried after the backoff, counted.
            logger.error("worker %s could not start: %s", self.node_id, exc)
            self.proc = None
            self._crashed(self.started_at)
            return
        logger.info("worker %s started (pid %d)", self.node_id, self.proc.pid)

    def _crashed(self, now: float) -> None:
        """Schedules the restart: a backoff that grows while the worker keeps dying."""
        if now - self.started_at >= STABLE_AFTER_S or self.backoff_s <= 0:
            self.backoff_s = RESTART_BACKOFF_S
        self.restart_at = now + self.backoff_s
        self.backoff_s = min(self.backoff_s * 2, MAX_BACKOFF_S)
        self.crashes.append(now)
        while self.crashes and now - self.crashes[0] > RESTART_WINDOW_S:
            self.crashes.popleft()

    def check(self, now: float) -> bool:
        """Restarts the worker if it died and its backoff is over.

        Returns False when it has crashed too often to go on.
        """
        if self.proc is None:
            if now >= self.restart_at:
                self.start()
            return len(self.crashes) <= MAX_RESTARTS
        code = self.proc.poll()
        if code is None:
            return True
        pid = self.proc.pid
        self.proc = None
        self._crashed(now)
        logger.warning(
            "worker %s (pid %d) exited unexpectedly with %s after %.1f s; restarting in %.1f s",
            self.node_id,
            pid,
            _describe_exit(code),
            now - self.started_at,
            self.restart_at - now,
        )
        return len(self.crashes) <= MAX_RESTARTS


def _stop_all(workers: Sequence[_Worker], hurry: Callable[[], bool] = lambda: False) -> None:
    """SIGTERM every worker, give them STOP_TIMEOUT_S to drain, then SIGKILL the rest."""
    live = [w for w in workers if w.proc is not None and w.proc.poll() is None]
    for w in live:
        assert w.proc is not None
        logger.info("stopping worker %s (pid %d)", w.node_id, w.proc.pid)
        try:
            w.proc.terminate()
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline and not hurry():
        if all(w.proc is None or w.proc.poll() is not None for w in live):
            break
        time.sleep(min(POLL_S, 0.05))
    for w in live:
        assert w.proc is not None
        if w.proc.poll() is None:
            logger.warning("worker %s (pid %d) did not stop: killing it", w.node_id, w.proc.pid)
            w.proc.kill()
        w.proc.wait()
        w.proc = None


def run_workers(
    serve_argv: Sequence[str],
    workers: int,
    *,
    node_id_base: str,
    relay_port: int,
    metrics_port: int | None = None,
    command: Sequence[str] | None = None,
    stop_event: threading.Event | None = None,
) -> int:
    """Runs `workers` server processes until told to stop; returns the exit status.

    Stops on SIGTERM/SIGINT (handled only when called from the main thread) or
    when `stop_event` is set: every worker gets SIGTERM so it can drain, and
    those still running after STOP_TIMEOUT_S are killed; returns 0. A worker
    that exits on its own is restarted with the same arguments after a backoff;
    if one crashes more than MAX_RESTARTS times in RESTART_WINDOW_S, all are
    stopped and 1 is returned, so a service manager sees the failure.

    `command` replaces `python -m signaling.cli serve` (tests use a fake child).
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, not {workers}")
    base_cmd = list(command) if command is not None else default_command()
    slots = [
        _Worker(
            index=i,
            node_id=f"{node_id_base}-{i}",
            cmd=[
                *base_cmd,
                *worker_argv(
                    serve_argv,
                    i,
                    node_id_base=node_id_base,
                    relay_port=relay_port,
                    metrics_port=metrics_port,
                ),
            ],
        )
        for i in range(workers)
    ]

    # Signal handlers only note the signal: the loop below acts on it. (Setting a
    # threading.Event from a handler can deadlock on the Event's own lock.)
    signals: list[int] = []
    previous: dict[int, object] = {}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        signals.append(signum)

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.getsignal(sig)
            signal.signal(sig, on_signal)

    def stopping() -> bool:
        return bool(signals) or (stop_event is not None and stop_event.is_set())

    status = 0
    # Signals seen when the drain starts: one more means "now", not in 15 s.
    seen = 0
    try:
        logger.info(
            "starting %d workers (%s-0 .. %s-%d) sharing one signaling port",
            workers,
            node_id_base,
            node_id_base,
            workers - 1,
        )
        for w in slots:
            w.start()
        while not stopping():
            now = time.monotonic()
            failed = next((w for w in slots if not w.check(now)), None)
            if failed is not None:
                logger.error(
                    "worker %s crashed %d times in %.0f s: stopping all workers",
                    failed.node_id,
                    len(failed.crashes),
                    RESTART_WINDOW_S,
                )
                status = 1
                break
            time.sleep(POLL_S)
        seen = len(signals)
        if signals:
            logger.info(
                "%s: draining the workers (up to %.0f s; signal again to kill them now)",
                signal.Signals(signals[0]).name,
                STOP_TIMEOUT_S,
            )
    finally:
        _stop_all(slots, hurry=lambda: len(signals) > seen)
        for sig, handler in previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
    return status
