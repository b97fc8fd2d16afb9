"""A token is good for its room only: nothing of room B is visible or
reachable from room A."""

from __future__ import annotations

import asyncio

from tests.integration.conftest import BotFactory


async def test_a_token_for_room_a_cannot_see_or_touch_room_b(make_bot: BotFactory) -> None:
    b_pub = await make_bot("b-pub", room="room-b")
    b_ids = await b_pub.publish(audio=True)
    a_bot = await make_bot("a-bot", room="room-a")
    assert a_bot.joined is not None and a_bot.joined["participants"] == []
    # Its subscribe, unsubscribe, quality and size requests for room B's tracks
    # all find nothing; room B's events never reach it.
    for message in (
        {"type": "subscribe", "track_ids": [b_ids["cam"]]},
        {"type": "unsubscribe", "track_ids": [b_ids["mic"]]},
        {"type": "set_quality", "track_id": b_ids["cam"], "quality": "high"},
        {"type": "set_video_size", "track_id": b_ids["cam"], "width": 320, "height": 180},
        {"type": "mute", "track_id": b_ids["mic"], "muted": True},
        {"type": "unpublish", "track_id": b_ids["cam"]},
    ):
        await a_bot.send(message)
        error = await a_bot.wait_for("error", timeout=5, include_past=False)
        assert error["code"] == "not_found", (message, error)
    b_joiner = await make_bot("b-late", room="room-b")
    await asyncio.sleep(0.3)
    assert not [
        m
        for m in a_bot.messages
        if m.get("type") in ("participant_joined", "track_published", "subscriber_offer")
    ]
    assert a_bot.tracks == {}
    # Room B is undisturbed: its newcomer receives B's media.
    await b_joiner.wait_until(
        lambda: len(b_joiner.tracks) == 2 and all(t.packets > 20 for t in b_joiner.tracks.values()),
        10,
        "room B's media",
    )
