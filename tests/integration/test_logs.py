"""Logs of a whole call from a real `sfu serve` process: JSON lines that name
node, room and participant, and never a token or an API secret."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import jwt
import pytest

from sfu_bot.client import Bot, BotError
from signaling.auth import issue_token
from signaling.logs import ContextFilter
from tests.integration.conftest import free_port

SECRET = "s3cr3t-" + "x" * 30


async def _ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    async with aiohttp.ClientSession() as http:
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                async with http.get(url + "/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            await asyncio.sleep(0.1)


async def test_no_token_or_secret_in_the_logs_of_a_call(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text(f"prodkey: {SECRET}\n")
    log = tmp_path / "sfu.log"
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "signaling.cli",
                "serve",
                "--keys",
                str(keys),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--rtc-host",
                "127.0.0.1",
                "--node-id",
                "logtest",
                "--log-format",
                "json",
                "--log-level",
                "debug",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    tokens = [issue_token("prodkey", SECRET, "room-l", who, name=who) for who in ("ann", "bo")]
    bad = [
        issue_token("prodkey", "wrong-secret-" + "y" * 20, "room-l", "eve"),
        jwt.encode(  # expired a minute ago
            {
                "iss": "prodkey",
                "sub": "old",
                "room": "room-l",
                "iat": int(time.time()) - 120,
                "exp": int(time.time()) - 60,
                "grants": {"publish": True, "subscribe": True},
            },
            SECRET,
            algorithm="HS256",
        ),
    ]
    try:
        await _ready(url, proc, log)
        ann, bo = (
            Bot(f"ws://127.0.0.1:{port}", t, name=n)
            for t, n in zip(tokens, ("ann", "bo"), strict=True)
        )
        try:
            await ann.connect()
            await bo.connect()
            await ann.publish()
            await bo.wait_until(
                lambda: len(bo.tracks) == 2 and all(t.packets > 50 for t in bo.tracks.values()),
                20,
                "media",
            )
            for token in bad:  # refused joins are logged too, without the token
                with pytest.raises((BotError, aiohttp.WSServerHandshakeError)):
                    await Bot(f"ws://127.0.0.1:{port}", token, name="x").connect(timeout=3)
            participant_ids = {ann.participant_id, bo.participant_id}
            await bo.leave()
        finally:
            await ann.close()
            await bo.close()
        await asyncio.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
    text = log.read_text()
    for secret_thing in [SECRET, *tokens, *bad]:
        assert secret_thing not in text
    for token in tokens + bad:
        # Not even the signature part of a token.
        assert token.rsplit(".", 1)[1] not in text
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert all(entry["node"] == "logtest" for entry in lines)
    about = [e for e in lines if e.get("participant") in participant_ids]
    assert about, "no line names a participant"
    assert all(e.get("room") == "room-l" for e in about)
    joined = [e for e in about if e["msg"].startswith("joined as")]
    assert len(joined) == 2


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln in a url", "token [token] in a url"),
        ("secret is abcdefgh1234", "secret is [secret]"),
        ("nothing here", "nothing here"),
    ],
)
def test_redaction(message: str, expected: str) -> None:
    assert ContextFilter("n", ["abcdefgh1234", "short"]).redact(message) == expected
