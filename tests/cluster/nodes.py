"""SFU node processes for the cluster tests: `sfu serve --redis-url ...` on
127.0.0.1, each its own process (so SIGKILL and SIGTERM are real)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from signaling.auth import DEV_KEY, DEV_SECRET, Grants, issue_token
from tests.integration.conftest import free_port


class NodeProcess:
    def __init__(
        self, node_id: str, redis_url: str, log_dir: Path, *, workers: int = 1, port: int = 0
    ) -> None:
        self.node_id = node_id
        self.redis_url = redis_url
        self.port = port or free_port()
        self.workers = workers
        self.url = f"ws://127.0.0.1:{self.port}"
        self.http = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"{node_id}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [
            sys.executable,
            "-m",
            "signaling.cli",
            "serve",
            "--dev",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--rtc-host",
            "127.0.0.1",
            "--redis-url",
            self.redis_url,
            "--cluster",
            "test",
            "--node-id",
            self.node_id,
            "--workers",
            str(self.workers),
        ]
        self.log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            command, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )

    async def wait_ready(self, timeout_s: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession() as http:
            while True:
                assert self.proc is not None and self.proc.poll() is None, self.tail()
                try:
                    async with http.get(f"{self.http}/readyz") as response:
                        if response.status == 200:
                            return await response.json()
                except aiohttp.ClientError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"node {self.node_id} not ready\n{self.tail()}")
                await asyncio.sleep(0.1)

    async def info(self) -> dict[str, Any]:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{self.http}/v1/node") as response:
                assert response.status == 200
                return await response.json()

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    async def wait_exit(self, timeout_s: float) -> int:
        assert self.proc is not None
        deadline = time.monotonic() + timeout_s
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"node {self.node_id} still running\n{self.tail()}")
            await asyncio.sleep(0.05)
        return self.proc.returncode

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def token(room: str, identity: str, **grants: bool) -> str:
    return issue_token(DEV_KEY, DEV_SECRET, room, identity, name=identity, grants=Grants(**grants))
