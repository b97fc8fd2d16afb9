"""Fixtures: a real SFU node on 127.0.0.1 (aiohttp + media engine in this event loop)
and bots that join it over real sockets."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from sfu_bot.client import Bot
from signaling.app import ServerConfig, create_app
from signaling.auth import DEV_KEY, DEV_SECRET, Grants, KeyStore, issue_token


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Node:
    def __init__(self, url: str, app: web.Application, config: ServerConfig) -> None:
        self.url = url
        self.app = app
        self.config = config

    def token(self, room: str, identity: str, **grants: bool) -> str:
        return issue_token(
            DEV_KEY, DEV_SECRET, room, identity, name=identity, grants=Grants(**grants)
        )


@contextlib.asynccontextmanager
async def running_node(**settings: Any) -> AsyncIterator[Node]:
    """A dev-mode node on a free port of 127.0.0.1, media on 127.0.0.1;
    `settings` override ServerConfig fields."""
    port = free_port()
    config = ServerConfig(
        **{
            "host": "127.0.0.1",
            "port": port,
            "keys": KeyStore.dev(),
            "rtc_hosts": ("127.0.0.1",),
            "dev": True,
            **settings,
        }
    )
    app = create_app(config)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield Node(f"ws://127.0.0.1:{port}", app, config)
    finally:
        await runner.cleanup()


@pytest.fixture
async def node() -> AsyncIterator[Node]:
    async with running_node() as started:
        yield started


BotFactory = Callable[..., Awaitable[Bot]]


@pytest.fixture
async def make_bot(node: Node) -> AsyncIterator[BotFactory]:
    bots: list[Bot] = []

    async def make(
        identity: str, room: str = "room1", connect: bool = True, **kwargs: object
    ) -> Bot:
        grants = {k: kwargs.pop(k) for k in ("publish", "subscribe") if k in kwargs}
        bot = Bot(node.url, node.token(room, identity, **grants), name=identity, **kwargs)  # type: ignore[arg-type]
        bots.append(bot)
        if connect:
            await bot.connect()
        return bot

    yield make
    for bot in bots:
        await bot.close()
