"""The `sfu` command as a new user runs it: separate processes, real sockets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

from signaling.auth import KeyStore, verify_token
from tests.integration.conftest import free_port

SFU = [sys.executable, "-m", "signaling.cli"]


def test_token_command_prints_a_token_the_server_accepts() -> None:
    out = subprocess.run(
        [
            *SFU,
            "token",
            "--dev",
            "--room",
            "r1",
            "--identity",
            "ann",
            "--no-publish",
            "--ttl",
            "10m",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    claims = verify_token(out.stdout.strip(), KeyStore.dev())
    assert (claims.room, claims.identity, claims.grants.publish, claims.grants.subscribe) == (
        "r1",
        "ann",
        False,
        True,
    )
    assert 540 < claims.expires_at - time.time() <= 600


def test_serve_without_keys_says_how_to_configure_them() -> None:
    env = {k: v for k, v in os.environ.items() if k != "SFU_KEYS"}
    out = subprocess.run(
        [*SFU, "serve", "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert out.returncode == 2
    assert "--keys" in out.stderr and "SFU_KEYS" in out.stderr and "--dev" in out.stderr


def test_serve_and_two_bot_processes_make_a_simulcast_call() -> None:
    port = free_port()
    server = subprocess.Popen(
        [*SFU, "serve", "--dev", "--rtc-host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                    assert json.load(r)["status"] == "ok"
                break
            except OSError:
                assert time.monotonic() < deadline, "server did not come up"
                time.sleep(0.1)
        url = f"ws://127.0.0.1:{port}"
        common = ["--url", url, "--room", "cli", "--width", "320", "--height", "240"]
        publisher = subprocess.Popen(
            [
                *SFU,
                "bot",
                "publish",
                *common,
                "--identity",
                "pub",
                "--duration",
                "8",
                "--simulcast",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        subscriber = subprocess.run(
            [*SFU, "bot", "subscribe", *common, "--identity", "sub", "--decode", "--duration", "5"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        publisher.wait(timeout=60)
        assert subscriber.returncode == 0, subscriber.stderr[-2000:]
        stats = json.loads(subscriber.stdout.strip().splitlines()[-1])
        received = list(stats["received"].values())
        video = [t for t in received if t["kind"] == "video"]
        audio = [t for t in received if t["kind"] == "audio"]
        assert video and video[0]["frames_decoded"] >= 30, stats
        assert audio and audio[0]["packets"] >= 100, stats
    finally:
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=20)
    assert server.returncode == 0, output[-2000:]
    assert "DEV MODE" in output and "devsecret" in output
