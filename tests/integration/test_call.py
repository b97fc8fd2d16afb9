"""Publish and subscribe through the SFU with real bots on 127.0.0.1."""

from __future__ import annotations

import asyncio

from tests.integration.conftest import BotFactory


async def test_two_participants_exchange_audio_and_video(make_bot: BotFactory) -> None:
    alice = await make_bot("alice")
    bob = await make_bot("bob")
    await alice.publish()
    await bob.publish()
    for me, other in ((alice, bob), (bob, alice)):
        await me.wait_until(lambda me=me: len(me.tracks) == 2, 10, "two tracks offered")
        await me.wait_until(
            lambda me=me: all(t.packets > 30 for t in me.tracks.values()), 10, "media from the other"
        )
    await asyncio.sleep(0.1)
