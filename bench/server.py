"""The server under test: `sfu serve` as its own process, optionally pinned to
one core, measured from outside through /proc."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import socket
import sys
import time
from pathlib import Path

import aiohttp

from bench import procstat
from signaling.auth import Grants, issue_token

API_KEY = "bench"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    def __init__(self, *, cpu: int | None, log_path: Path) -> None:
        self.cpu = cpu
        self.port = free_port()
        self.secret = secrets.token_urlsafe(24)
        self.log_path = log_path
        self.url = f"ws://127.0.0.1:{self.port}"
        self._proc: asyncio.subprocess.Process | None = None
        self._log = None

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def token(self, room: str, identity: str) -> str:
        return issue_token(
            API_KEY, self.secret, room, identity, name=identity, grants=Grants(), ttl_s=3600
        )

    async def start(self, timeout_s: float = 20.0) -> None:
        command = [
            sys.executable,
            "-m",
            "signaling.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--rtc-host",
            "127.0.0.1",
            "--log-level",
            "warning",
        ]
        if self.cpu is not None and shutil.which("taskset"):
            command = ["taskset", "-c", str(self.cpu), *command]
        env = dict(os.environ, SFU_KEYS=f"{API_KEY}:{self.secret}")
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._proc = await asyncio.create_subprocess_exec(
            *command, env=env, stdout=self._log, stderr=self._log
        )
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if self._proc.returncode is not None:
                    raise RuntimeError(
                        f"server exited with {self._proc.returncode}; see {self.log_path}"
                    )
                try:
                    async with http.get(f"http://127.0.0.1:{self.port}/healthz") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        raise RuntimeError(f"server not healthy within {timeout_s} s; see {self.log_path}")

    def cpu_seconds(self) -> float:
        return procstat.cpu_seconds(self.pid)

    def rss_bytes(self) -> int:
        return procstat.rss_bytes(self.pid)

    async def stop(self) -> None:
        proc = self._proc
        if proc is not None and proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
