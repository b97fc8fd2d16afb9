"""--rtc-ports: media sockets bind inside the configured UDP range."""

from __future__ import annotations

import argparse
import socket
from collections.abc import AsyncIterator

import pytest

from sfu_bot.client import Bot
from signaling.app import ENGINE
from signaling.cli import port_range
from tests.integration.conftest import Node, running_node


def _free_range(size: int) -> tuple[int, int]:
    """A run of `size` UDP ports free right now on 127.0.0.1."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            low = probe.getsockname()[1]
        if low + size > 65535:
            continue
        try:
            socks = []
            for port in range(low, low + size):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
        return low, low + size - 1
    raise RuntimeError("no free port range")


@pytest.fixture
async def ranged_node() -> AsyncIterator[Node]:
    async with running_node(rtc_port_range=_free_range(8)) as started:
        yield started


async def test_media_binds_inside_the_port_range(ranged_node: Node) -> None:
    node = ranged_node
    assert node.config.rtc_port_range is not None
    low, high = node.config.rtc_port_range
    bots = [Bot(node.url, node.token("r", f"b{i}"), name=f"b{i}") for i in range(2)]
    try:
        for bot in bots:
            await bot.connect()
        await bots[0].publish(audio=False)
        await bots[1].wait_until(
            lambda: any(t.packets > 30 for t in bots[1].tracks.values()), 15, "video"
        )
        ports = []
        for peer in node.app[ENGINE].peers.values():
            for side in (peer.publisher, peer.subscriber):
                if side is not None and side.transport.local_address is not None:
                    ports.append(side.transport.local_address[1])
        assert len(ports) >= 2
        assert all(low <= p <= high for p in ports), (ports, low, high)
    finally:
        for bot in bots:
            await bot.close()


@pytest.mark.parametrize(
    ("text", "expected"),
    [("50000-60000", (50000, 60000)), ("2000-2000", (2000, 2000))],
)
def test_port_range_option(text: str, expected: tuple[int, int]) -> None:
    assert port_range(text) == expected


@pytest.mark.parametrize("text", ["", "5000", "6000-5000", "80-90", "5000-70000", "a-b"])
def test_port_range_option_refuses(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        port_range(text)
