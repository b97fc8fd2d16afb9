"""The same identity joining again replaces the older session, and the room
it joins is the live one even when the old session was its last member."""

from __future__ import annotations

from signaling.app import ROOMS
from tests.integration.conftest import BotFactory, Node


async def test_rejoining_an_otherwise_empty_room_keeps_one_room(
    node: Node, make_bot: BotFactory
) -> None:
    first = await make_bot("alice")
    again = await make_bot("alice")  # a reload: the old session was alone in the room
    assert (await first.wait_for("leave", timeout=5))["reason"] == "duplicate_identity"
    bob = await make_bot("bob")
    assert bob.joined is not None
    assert [p["identity"] for p in bob.joined["participants"]] == ["alice"]
    await again.wait_for(
        "participant_joined", lambda m: m["participant"]["identity"] == "bob", timeout=5
    )
    rooms = node.app[ROOMS]
    assert list(rooms.rooms) == ["room1"]
    assert sorted(p.identity for p in rooms.rooms["room1"].participants.values()) == [
        "alice",
        "bob",
    ]
    # The replaced session's departure does not take the live room with it.
    await first.close()
    carol = await make_bot("carol")
    assert sorted(p["identity"] for p in carol.joined["participants"]) == ["alice", "bob"]  # type: ignore[index]
