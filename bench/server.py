"""The server under test: `sfu serve` as its own process, optionally pinned to
one core, measured from outside through /proc; for the cluster scenario, a
redis-server and several such processes sharing it."""

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
from typing import Any

import aiohttp

from bench import procstat
from signaling.auth import Grants, issue_token

API_KEY = "bench"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """One `sfu serve`. With ``redis_url`` it is a node of cluster ``cluster``
    (its relay on 127.0.0.1); nodes of one cluster need the same ``secret``."""

    def __init__(
        self,
        *,
        cpu: int | None,
        log_path: Path,
        redis_url: str | None = None,
        node_id: str | None = None,
        cluster: str | None = None,
        secret: str | None = None,
    ) -> None:
        self.cpu = cpu
        self.port = free_port()
        self.secret = secret or secrets.token_urlsafe(24)
        self.log_path = log_path
        self.redis_url = redis_url
        self.node_id = node_id
        self.cluster = cluster
        self.url = f"ws://127.0.0.1:{self.port}"
        self.http = f"http://127.0.0.1:{self.port}"
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

    def command(self) -> list[str]:
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
            # Hundreds of load subscribers join from one address (127.0.0.1).
            "--join-rate",
            "0",
        ]
        if self.redis_url is not None:
            command += ["--redis-url", self.redis_url, "--relay-host", "127.0.0.1"]
            if self.cluster is not None:
                command += ["--cluster", self.cluster]
        if self.node_id is not None:
            command += ["--node-id", self.node_id]
        if self.cpu is not None and shutil.which("taskset"):
            command = ["taskset", "-c", str(self.cpu), *command]
        return command

    async def start(self, timeout_s: float = 20.0) -> None:
        env = dict(os.environ, SFU_KEYS=f"{API_KEY}:{self.secret}")
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._proc = await asyncio.create_subprocess_exec(
            *self.command(), env=env, stdout=self._log, stderr=self._log
        )
        # A cluster node is ready once it reaches Redis (/readyz); alone, once it serves.
        check = "/readyz" if self.redis_url is not None else "/healthz"
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if self._proc.returncode is not None:
                    raise RuntimeError(
                        f"server exited with {self._proc.returncode}; see {self.log_path}"
                    )
                try:
                    async with http.get(f"{self.http}{check}") as response:
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

    async def info(self) -> dict[str, Any]:
        """GET /v1/node: participants, downtracks and the relay counters."""
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{self.http}/v1/node") as response:
                response.raise_for_status()
                return await response.json()

    async def stop(self) -> None:
        await _stop(self._proc)
        if self._log is not None:
            self._log.close()
            self._log = None


def redis_server_argv(binary: str, port: int) -> list[str]:
    """A redis-server on 127.0.0.1 only, keeping nothing on disk."""
    return [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]


async def _stop(proc: asyncio.subprocess.Process | None) -> None:
    """SIGTERM, then SIGKILL after 10 s."""
    if proc is not None and proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


class RedisProcess:
    """A throwaway redis-server on a free port of 127.0.0.1 (no persistence),
    the shared state of the cluster scenario's nodes."""

    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log_path = log_path
        self._proc: asyncio.subprocess.Process | None = None
        self._log = None

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    async def start(self, timeout_s: float = 10.0) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not os.path.exists(binary):
            raise RuntimeError("the cluster scenario needs redis-server (apt install redis-server)")
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._proc = await asyncio.create_subprocess_exec(
            *redis_server_argv(binary, self.port), stdout=self._log, stderr=self._log
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.returncode is not None:
                raise RuntimeError(
                    f"redis-server exited with {self._proc.returncode}; see {self.log_path}"
                )
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            await writer.wait_closed()
            return
        raise RuntimeError(f"redis-server not up within {timeout_s} s; see {self.log_path}")

    def cpu_seconds(self) -> float:
        return procstat.cpu_seconds(self.pid)

    async def stop(self) -> None:
        await _stop(self._proc)
        if self._log is not None:
            self._log.close()
            self._log = None
