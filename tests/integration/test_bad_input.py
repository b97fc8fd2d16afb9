"""Bad input on the signaling socket and at the HTTP endpoint, against a real node
and real bots: every bad frame gets an `error` with the documented code and a
message naming the problem, the offending socket stays usable (it still answers
`ping` with `pong`), and media between a publisher and a subscriber in the same
room keeps flowing throughout."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest

from sfu_bot.client import Bot
from signaling.auth import DEV_KEY, DEV_SECRET, issue_token
from tests.integration.conftest import BotFactory, Node

# A minimal but complete publish offer (audio Opus + video VP8): ICE credentials,
# a DTLS fingerprint, setup:actpass, mids, BUNDLE, rtcp-mux and rtpmaps. The cases
# below mutate it one defect at a time.
_FINGERPRINT = ":".join(["AB"] * 32)
_SESSION = "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n{bundle}"
_AUDIO = (
    "m=audio 9 UDP/TLS/RTP/SAVPF {pts}\r\n"
    "c=IN IP4 0.0.0.0\r\n"
    "{ice}"
    f"a=fingerprint:sha-256 {_FINGERPRINT}\r\n"
    "a=setup:actpass\r\n"
    "a=mid:{mid}\r\n"
    "a=sendonly\r\n"
    "a=rtcp-mux\r\n"
    "{rtpmaps}"
)
_VIDEO = _AUDIO.replace("m=audio", "m=video")
_ICE = "a=ice-ufrag:Ufr4\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n"
_OPUS = "a=rtpmap:111 opus/48000/2\r\n"
_VP8 = "a=rtpmap:96 VP8/90000\r\n"


def _offer(
    *,
    audio: tuple[str, str] | None = ("111", _OPUS),
    video: tuple[str, str] | None = ("96", _VP8),
    ice: str = _ICE,
) -> str:
    sections = []
    mids = []
    if audio is not None:
        sections.append(_AUDIO.format(pts=audio[0], ice=ice, mid="0", rtpmaps=audio[1]))
        mids.append("0")
    if video is not None:
        sections.append(_VIDEO.format(pts=video[0], ice=ice, mid="1", rtpmaps=video[1]))
        mids.append("1")
    return _SESSION.format(bundle=f"a=group:BUNDLE {' '.join(mids)}\r\n") + "".join(sections)


def _publish(sdp: str, mids: tuple[str, ...] = ("0", "1")) -> str:
    return json.dumps({"type": "publish", "sdp": sdp, "tracks": [{"mid": mid} for mid in mids]})


# --- helpers -----------------------------------------------------------------

_ts = iter(range(1000, 10**9))


def _received(bot: Bot) -> int:
    return sum(track.packets for track in bot.tracks.values())


async def _media_keeps_flowing(
    subscriber: Bot, what: str, more: int = 15, timeout: float = 3.0
) -> None:
    before = _received(subscriber)
    deadline = time.monotonic() + timeout
    while _received(subscriber) < before + more:
        assert time.monotonic() < deadline, (
            f"after {what}: the subscriber received only {_received(subscriber) - before} "
            f"packets in {timeout} s (media stopped flowing)"
        )
        await asyncio.sleep(0.02)


async def _send_and_collect(bot: Bot, frame: str | bytes) -> list[dict[str, Any]]:
    """Send one frame, then a ping; return the errors that arrived before its pong.
    The server handles a socket's frames in order, so those errors answer `frame`,
    and the pong proves the socket is still open and served."""
    start = len(bot.messages)
    if isinstance(frame, bytes):
        assert bot._ws is not None
        await bot._ws.send_bytes(frame)
    else:
        await bot.send_raw(frame)
    ts = next(_ts)
    await bot.send({"type": "ping", "ts": ts})
    try:
        await bot.wait_for("pong", lambda msg: msg.get("ts") == ts, timeout=5.0)
    except Exception as exc:  # noqa: BLE001
        raise AssertionError(
            f"no pong after {frame[:80]!r}: the socket is not answering ({exc})"
        ) from None
    recent = list(bot.messages)[start:]
    return [msg for msg in recent if msg.get("type") == "error"]


async def _expect_error(
    bot: Bot,
    frame: str | bytes,
    code: str,
    substring: str,
    request_type: object = ...,  # ... = do not check
) -> dict[str, Any]:
    errors = await _send_and_collect(bot, frame)
    shown = frame[:100]
    assert len(errors) == 1, f"{shown!r}: expected exactly one error, got {errors}"
    error = errors[0]
    assert set(error) == {"type", "code", "message", "request_type"}, (
        f"{shown!r}: error shape {error}"
    )
    assert error["code"] == code, f"{shown!r}: expected code {code!r}, got {error}"
    assert isinstance(error["message"], str) and substring.lower() in error["message"].lower(), (
        f"{shown!r}: message should mention {substring!r}: {error['message']!r}"
    )
    if request_type is not ...:
        assert error["request_type"] == request_type, f"{shown!r}: request_type in {error}"
    return error


async def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def _room(make_bot: BotFactory, **offender: Any) -> tuple[Bot, Bot, Bot, dict[str, str]]:
    """A publisher and a subscriber exchanging media, plus the offending participant
    (subscribed too, so that its subscriber transport is negotiated and up)."""
    pub = await make_bot("pub")
    sub = await make_bot("sub")
    bad = await make_bot("bad", **offender)
    ids = await pub.publish(width=160, height=120, frames=60, gop=30)
    await _wait(
        lambda: len(sub.tracks) == 2 and _received(sub) > 30, 10, "media reaching the subscriber"
    )
    return pub, sub, bad, ids


# --- frames that do not parse, or ask for what does not exist ----------------

_GARBAGE = "candidate:1 1 udp notapriority 127.0.0.1 9 typ host"

FRAME_CASES: list[tuple[str | bytes, str, str, str | None]] = [
    # (frame, code, a substring the message must contain, request_type)
    ("{not json", "bad_request", "malformed JSON", None),
    ("", "bad_request", "malformed JSON", None),
    ('{"type": "ping", "ts": 1', "bad_request", "malformed JSON", None),
    ('{"type": "ping", "ts": NaN}', "bad_request", "NaN", None),
    ('[{"type": "ping", "ts": 1}]', "bad_request", "expected a JSON object", None),
    ('"ping"', "bad_request", "expected a JSON object", None),
    ("42", "bad_request", "expected a JSON object", None),
    ("null", "bad_request", "expected a JSON object", None),
    ('{"ts": 1}', "bad_request", "type: required field is missing", None),
    ('{"type": 7}', "bad_request", "type: expected a string", None),
    ('{"type": "dance"}', "unsupported", "dance", "dance"),
    ('{"type": "PING", "ts": 1}', "unsupported", "PING", "PING"),
    ('{"type": "publish", "tracks": []}', "bad_request", "publish.sdp", "publish"),
    ('{"type": "publish", "sdp": 5, "tracks": []}', "bad_request", "publish.sdp", "publish"),
    ('{"type": "publish", "sdp": "hello", "tracks": []}', "bad_request", "publish.sdp", "publish"),
    ('{"type": "ping"}', "bad_request", "ping.ts", "ping"),
    ('{"type": "ping", "ts": "now"}', "bad_request", "ping.ts", "ping"),
    ('{"type": "unpublish"}', "bad_request", "unpublish.track_id", "unpublish"),
    ('{"type": "unpublish", "track_id": 12}', "bad_request", "unpublish.track_id", "unpublish"),
    (
        '{"type": "subscribe", "track_ids": "TR_x"}',
        "bad_request",
        "subscribe.track_ids",
        "subscribe",
    ),
    ('{"type": "mute", "track_id": "TR_x", "muted": "yes"}', "bad_request", "mute.muted", "mute"),
    (
        '{"type": "set_quality", "track_id": "TR_x", "quality": "ultra"}',
        "bad_request",
        "set_quality.quality",
        "set_quality",
    ),
    (
        '{"type": "set_video_size", "track_id": "TR_x", "width": -1, "height": 1}',
        "bad_request",
        "set_video_size.width",
        "set_video_size",
    ),
    (
        '{"type": "candidate", "target": "both", "candidate": null}',
        "bad_request",
        "candidate.target",
        "candidate",
    ),
    (
        '{"type": "candidate", "target": "subscriber"}',
        "bad_request",
        "candidate.candidate",
        "candidate",
    ),
    ('{"type": "unpublish", "track_id": "TR_nope"}', "not_found", "TR_nope", "unpublish"),
    ('{"type": "mute", "track_id": "TR_nope", "muted": true}', "not_found", "TR_nope", "mute"),
    ('{"type": "subscribe", "track_ids": ["TR_nope"]}', "not_found", "TR_nope", "subscribe"),
    ('{"type": "unsubscribe", "track_ids": ["TR_nope"]}', "not_found", "TR_nope", "unsubscribe"),
    (
        '{"type": "set_quality", "track_id": "TR_nope", "quality": "low"}',
        "not_found",
        "TR_nope",
        "set_quality",
    ),
    (
        '{"type": "set_video_size", "track_id": "TR_nope", "width": 1, "height": 1}',
        "not_found",
        "TR_nope",
        "set_video_size",
    ),
    (
        json.dumps(
            {
                "type": "subscriber_answer",
                "sdp": "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n",
            }
        ),
        "bad_request",
        "no subscriber_offer",
        "subscriber_answer",
    ),
    (
        json.dumps(
            {
                "type": "candidate",
                "target": "subscriber",
                "candidate": {"candidate": _GARBAGE, "sdpMid": "0"},
            }
        ),
        "bad_request",
        "candidate",
        "candidate",
    ),
    (
        json.dumps(
            {
                "type": "candidate",
                "target": "subscriber",
                "candidate": {"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host\r\na=x"},
            }
        ),
        "bad_request",
        "control characters",
        "candidate",
    ),
    (b'{"type": "ping", "ts": 1}', "bad_request", "binary", None),
    (b"\xff\xfe\x00", "bad_request", "binary", None),
]


async def test_bad_frames_get_their_error_and_the_room_keeps_working(make_bot: BotFactory) -> None:
    pub, sub, bad, ids = await _room(make_bot)
    # The offender's own subscriber transport is up, so a candidate for it is
    # really parsed rather than queued.
    await _wait(
        lambda: bad.sub is not None and bad.sub.state == "connected",
        10,
        "bad's subscriber transport",
    )
    for frame, code, substring, request_type in FRAME_CASES:
        await _expect_error(bad, frame, code, substring, request_type)
        await _media_keeps_flowing(sub, f"{frame[:60]!r}", more=10)
    # The publisher's and subscriber's own sockets were never disturbed.
    for bot in (pub, sub):
        assert not [msg for msg in bot.messages if msg.get("type") == "error"], (
            f"{bot.name} got an error"
        )
    # And the offender is still a full participant: it still receives the tracks.
    before = _received(bad)
    await _wait(lambda: _received(bad) > before + 20, 3, "media reaching the offender")
    assert set(sub.tracks) == set(ids.values())


# --- publish offers the server cannot use ------------------------------------

SDP_CASES: list[tuple[str, str, str]] = [
    # (sdp, code, a substring the message must contain)
    ("v=0\r\nm=video notaport RTP/AVP 96\r\n", "bad_request", "does not parse"),
    ("v=0\r\nthis is not sdp\r\n", "bad_request", "does not parse"),
    (_offer(audio=("0", "a=rtpmap:0 PCMU/8000\r\n"), video=None), "unsupported", "PCMU"),
    (_offer(audio=None, video=("98", "a=rtpmap:98 ZORK9/90000\r\n")), "unsupported", "ZORK9"),
    (
        _offer(
            audio=("0 8", "a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"),
            video=("98", "a=rtpmap:98 ZORK9/90000\r\n"),
        ),
        "unsupported",
        "PCMU",
    ),
    (_offer(ice=""), "bad_request", "ice-ufrag"),
    (
        _offer().replace(f"a=fingerprint:sha-256 {_FINGERPRINT}\r\n", ""),
        "bad_request",
        "fingerprint",
    ),
    (_offer().replace("a=rtcp-mux\r\n", ""), "bad_request", "rtcp-mux"),
]


@pytest.mark.parametrize("offender", ["newcomer", "publisher"])
async def test_unusable_publish_offers_are_refused_and_the_room_keeps_working(
    make_bot: BotFactory, offender: str
) -> None:
    """A participant that has not published yet, and the publisher itself (a bad
    renegotiation offer must leave its published tracks as they were)."""
    pub, sub, bad, ids = await _room(make_bot, auto_subscribe=False)
    who = pub if offender == "publisher" else bad
    for sdp, code, substring in SDP_CASES:
        error = await _expect_error(who, _publish(sdp), code, substring, "publish")
        await _media_keeps_flowing(sub, f"publish of {sdp[:40]!r} ({error['message']})", more=10)
    assert set(sub.tracks) == set(ids.values())
    assert not [msg for msg in sub.messages if msg.get("type") == "track_unpublished"]
    if offender == "newcomer":
        # The refused offers left nothing behind: the same socket can still publish.
        assert not [msg for msg in sub.messages if msg.get("type") == "error"]
        new_ids = await bad.publish(video=None)
        await _wait(
            lambda: new_ids["mic"] in sub.tracks and sub.tracks[new_ids["mic"]].packets > 10,
            10,
            "the newcomer's audio after its refused offers",
        )


def test_the_hand_written_offer_is_otherwise_valid() -> None:
    """Each case above must carry only its own defect: the base offer parses and is
    answered by the server's publish negotiation, both m-sections accepted."""
    from sfu.negotiate import LocalTransport, answer_publish
    from sfu.sdp import parse

    local = LocalTransport("srvU", "srvpasswordsrvpassword00", [("sha-256", _FINGERPRINT)])
    result = answer_publish(parse(_offer()), local)
    assert [(m.kind, m.codec.name.lower()) for m in result.accepted] == [
        ("audio", "opus"),
        ("video", "vp8"),
    ]
    assert result.rejected == []


# --- candidates before negotiation -------------------------------------------


async def test_unparsable_candidate_before_negotiation_is_refused(make_bot: BotFactory) -> None:
    """The protocol (section 11) says a malformed frame gets `bad_request`. A candidate
    that does not parse must be refused whatever the state of its transport."""
    pub, sub, _bad, _ids = await _room(make_bot, auto_subscribe=False)
    bad = await make_bot("early", auto_subscribe=False)  # no publisher, no subscriber transport
    frame = json.dumps(
        {"type": "candidate", "target": "publisher", "candidate": {"candidate": _GARBAGE}}
    )
    errors = await _send_and_collect(bad, frame)
    await _media_keeps_flowing(sub, "a garbage candidate before negotiation")
    assert [e["code"] for e in errors] == ["bad_request"], (
        "SERVER BUG (signaling/rooms.py Participant.add_candidate): a candidate that does not "
        "parse, sent before the target transport is negotiated, is queued without validation "
        "and later dropped silently by _flush_candidates; the client gets no error at all. "
        f"Errors received: {errors}"
    )
    assert "candidate" in errors[0]["message"]


# --- HTTP refusals before the upgrade ----------------------------------------


def _auth_cases() -> list[tuple[str, dict[str, str], str]]:
    now = time.time()
    return [
        ("no token", {}, "missing access token"),
        ("empty token", {"access_token": ""}, "missing access token"),
        ("garbage token", {"access_token": "garbage"}, "not a JWT"),
        ("garbage JWT", {"access_token": "aaa.bbb.ccc"}, "not a JWT"),
        (
            "wrong secret",
            {"access_token": issue_token(DEV_KEY, "not-the-secret" * 3, "room1", "mallory")},
            "signature",
        ),
        (
            "unknown key",
            {"access_token": issue_token("APInobody", DEV_SECRET, "room1", "mallory")},
            "unknown API key",
        ),
        (
            "expired",
            {
                "access_token": issue_token(
                    DEV_KEY, DEV_SECRET, "room1", "late", ttl_s=60, now=now - 3600
                )
            },
            "expired",
        ),
    ]


_UPGRADE_HEADERS = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}


async def test_refused_tokens_get_401_json_and_no_upgrade(node: Node) -> None:
    base = node.url.replace("ws://", "http://", 1) + "/v1/rtc"
    async with aiohttp.ClientSession() as http:
        for label, params, substring in _auth_cases():
            for headers in ({}, _UPGRADE_HEADERS):
                async with http.get(base, params=params, headers=headers) as response:
                    assert response.status == 401, f"{label}: status {response.status}"
                    assert response.content_type == "application/json", (
                        f"{label}: {response.content_type}"
                    )
                    assert "Upgrade" not in response.headers and response.status != 101, label
                    body = await response.json()
                assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, (
                    f"{label}: {body}"
                )
                assert body["error"]["code"] == "unauthorized", f"{label}: {body}"
                message = body["error"]["message"]
                assert substring.lower() in message.lower(), f"{label}: message {message!r}"
                token = params.get("access_token")
                if token and len(token) > 20:
                    assert token not in message and token.split(".")[2] not in message, (
                        f"{label}: echoes the token"
                    )
            # A real WebSocket client sees the handshake fail with 401.
            with pytest.raises(aiohttp.WSServerHandshakeError) as info:
                await http.ws_connect(node.url + "/v1/rtc", params=params)
            assert info.value.status == 401, f"{label}: ws_connect got {info.value.status}"
        # A bearer header with a bad token is refused the same way.
        async with http.get(base, headers={"Authorization": "Bearer garbage"}) as response:
            assert response.status == 401
            assert (await response.json())["error"]["code"] == "unauthorized"


# --- grants ------------------------------------------------------------------


async def test_missing_grants_are_forbidden_and_the_room_keeps_working(
    make_bot: BotFactory,
) -> None:
    listener = await make_bot("listener", subscribe=False)  # joined before anything is published
    pub = await make_bot("pub")
    sub = await make_bot("sub")
    viewer = await make_bot("viewer", publish=False)
    published_at = time.monotonic()
    ids = await pub.publish(width=160, height=120, frames=60, gop=30)
    await _wait(
        lambda: len(sub.tracks) == 2 and _received(sub) > 30, 10, "media reaching the subscriber"
    )
    await _wait(
        lambda: len(viewer.tracks) == 2 and _received(viewer) > 30, 10, "media reaching the viewer"
    )

    # No publish grant: a valid offer is refused with forbidden.
    await _expect_error(viewer, _publish(_offer()), "forbidden", "publish grant", "publish")
    await _media_keeps_flowing(sub, "publish without the publish grant")
    await _media_keeps_flowing(viewer, "its own refused publish")
    assert not [
        m
        for m in sub.messages
        if m.get("type") == "track_published" and m["participant_id"] == viewer.participant_id
    ], "a refused publish must publish nothing"

    # No subscribe grant: no subscriber_offer ever arrives, and subscribe is forbidden.
    await asyncio.sleep(max(0.0, 2.0 - (time.monotonic() - published_at)))
    assert [m for m in listener.messages if m.get("type") == "track_published"], (
        "listener sees the tracks"
    )
    offers = [m for m in listener.messages if m.get("type") == "subscriber_offer"]
    assert offers == [], f"a participant without the subscribe grant got {offers}"
    assert listener.tracks == {}
    await _expect_error(
        listener,
        json.dumps({"type": "subscribe", "track_ids": [ids["cam"]]}),
        "forbidden",
        "subscribe grant",
        "subscribe",
    )
    await _media_keeps_flowing(sub, "subscribe without the subscribe grant")
    await asyncio.sleep(0.3)
    assert not [m for m in listener.messages if m.get("type") == "subscriber_offer"]
    # The listener's socket is still served normally for what its grants allow.
    await _expect_error(
        listener,
        json.dumps({"type": "unsubscribe", "track_ids": ["TR_nope"]}),
        "not_found",
        "TR_nope",
    )
