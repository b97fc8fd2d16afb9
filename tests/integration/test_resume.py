"""A client whose WebSocket drops resumes its session within the window: same
participant, media and subscriptions kept, nobody sees it leave; one that does
not come back is removed."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from signaling import rooms
from tests.integration.conftest import BotFactory, Node


def _packets(bot: object, kind: str) -> int:
    return sum(t.packets for t in bot.tracks.values() if t.kind == kind)  # type: ignore[attr-defined]


async def test_a_dropped_websocket_resumes_the_session(node: Node, make_bot: BotFactory) -> None:
    pub = await make_bot("pub")
    sub = await make_bot("sub")
    await pub.publish(audio=False)
    await sub.wait_until(lambda: _packets(sub, "video") > 30, 15, "video")
    participant_id = sub.participant_id
    assert sub.joined is not None and sub.joined["resume_token"]
    old_token = sub.joined["resume_token"]

    await sub.drop_signaling()
    # While it is away: media still flows (ICE/DTLS do not depend on the
    # WebSocket), nobody sees it leave, and a newcomer publishes.
    before = _packets(sub, "video")
    late = await make_bot("late")
    await late.publish(audio=False)
    await asyncio.sleep(1.0)
    assert _packets(sub, "video") - before > 30
    assert participant_id in pub.participants
    assert not any(
        m.get("type") == "participant_left" and m.get("participant_id") == participant_id
        for m in [*pub.messages, *late.messages]
    )

    joined = await sub.resume()
    assert joined["resumed"] is True
    assert joined["participant"]["id"] == participant_id
    assert joined["resume_token"] != old_token  # one use each
    # What it missed arrives: the newcomer, its track and the offer to receive it.
    await sub.wait_until(
        lambda: any(
            t.kind == "video" and t.packets > 30
            for tid, t in sub.tracks.items()
            if tid
            in {tr["id"] for tr in sub.participants.get(late.participant_id, {}).get("tracks", [])}
        ),
        15,
        "the newcomer's video after resuming",
    )
    # The session works as before: ping, and the old token is spent.
    await sub.send({"type": "ping", "ts": 7})
    await sub.wait_for("pong", lambda m: m["ts"] == 7, timeout=5)


async def test_a_session_not_resumed_in_time_is_removed(
    node: Node, make_bot: BotFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rooms, "RESUME_WINDOW_S", 1.0)
    stayer = await make_bot("stayer")
    goner = await make_bot("goner")
    goner_id = goner.participant_id
    await goner.drop_signaling()
    await asyncio.sleep(0.5)
    assert goner_id in stayer.participants  # still within the window
    left = await stayer.wait_for(
        "participant_left", lambda m: m["participant_id"] == goner_id, timeout=5
    )
    assert left is not None
    # Too late: resuming now joins afresh, as a new participant.
    joined = await goner.resume()
    assert joined["resumed"] is False
    assert joined["participant"]["id"] != goner_id


async def test_a_resume_token_works_only_for_its_own_identity(
    node: Node, make_bot: BotFactory
) -> None:
    victim = await make_bot("victim")
    await victim.drop_signaling()
    thief = await make_bot("thief", connect=False)
    thief.joined = {"resume_token": victim.joined["resume_token"]}  # type: ignore[index]
    joined = await thief.resume()
    assert joined["resumed"] is False
    assert joined["participant"]["id"] != victim.participant_id
    # The victim can still resume its own session.
    again = await victim.resume()
    assert again["resumed"] is True and again["participant"]["id"] == victim.participant_id


async def test_a_resume_takes_over_a_connection_the_server_still_thinks_alive(
    node: Node, make_bot: BotFactory
) -> None:
    """A connection that died without a FIN still looks alive to the server;
    the client comes back first: its token lets the new connection take over."""
    watcher = await make_bot("watcher")
    mover = await make_bot("mover")
    participant_id = mover.participant_id
    old_ws = mover._ws  # noqa: SLF001 - kept open, as a dead TCP connection would look
    old_http = mover._http  # noqa: SLF001
    mover._http = None  # noqa: SLF001 - resume() opens its own session
    joined = await mover.resume()
    assert joined["resumed"] is True and joined["participant"]["id"] == participant_id
    assert old_ws is not None and old_http is not None
    # The old connection is closed by the server, without a leave to anyone.
    message = await old_ws.receive(timeout=5)
    assert message.type in (
        aiohttp.WSMsgType.CLOSE,
        aiohttp.WSMsgType.CLOSED,
        aiohttp.WSMsgType.CLOSING,
    )
    await old_http.close()
    await asyncio.sleep(0.3)
    assert participant_id in watcher.participants
    assert not [m for m in watcher.messages if m.get("type") == "participant_left"]
    await mover.send({"type": "ping", "ts": 3})
    await mover.wait_for("pong", lambda m: m["ts"] == 3, timeout=5)
