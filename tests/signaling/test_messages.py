"""Table tests for signaling/messages.py: the v1 wire contract, field by field."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from signaling import messages as m
from signaling.messages import (
    Candidate,
    IceCandidate,
    LayerInfo,
    LayerSpec,
    Leave,
    Mute,
    ParticipantInfo,
    Ping,
    ProtocolError,
    Publish,
    PublishTrack,
    SetQuality,
    SetVideoSize,
    Subscribe,
    SubscriberAnswer,
    TrackInfo,
    Unpublish,
    Unsubscribe,
    parse_client_message,
)

SDP = "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"


def frame(**fields: Any) -> str:
    return json.dumps(fields)


def track(**overrides: Any) -> dict[str, Any]:
    t: dict[str, Any] = {"mid": "0", "source": "camera"}
    t.update(overrides)
    return t


LAYERS = [
    {"rid": "q", "quality": "low", "width": 320, "height": 180},
    {"rid": "h", "quality": "medium", "width": 640, "height": 360},
    {"rid": "f", "quality": "high", "width": 1280, "height": 720},
]

# --------------------------------------------------------------------------
# Good messages
# --------------------------------------------------------------------------

GOOD: list[tuple[str, str, m.ClientMessage]] = [
    (
        "publish minimal",
        frame(type="publish", sdp=SDP, tracks=[{"mid": "0", "source": "microphone"}]),
        Publish(SDP, (PublishTrack("0", "microphone", "", ()),)),
    ),
    (
        "publish with name and simulcast layers",
        frame(type="publish", sdp=SDP, tracks=[track(mid="1", name="Front camera", layers=LAYERS)]),
        Publish(
            SDP,
            (
                PublishTrack(
                    "1",
                    "camera",
                    "Front camera",
                    (
                        LayerSpec("q", "low", 320, 180),
                        LayerSpec("h", "medium", 640, 360),
                        LayerSpec("f", "high", 1280, 720),
                    ),
                ),
            ),
        ),
    ),
    (
        "publish: source and name absent or null default",
        frame(type="publish", sdp=SDP, tracks=[{"mid": "a", "name": None, "layers": None}]),
        Publish(SDP, (PublishTrack("a", "unknown", "", ()),)),
    ),
    (
        "publish with no tracks (renegotiation)",
        frame(type="publish", sdp=SDP, tracks=[]),
        Publish(SDP, ()),
    ),
    (
        "publish: every source",
        frame(
            type="publish",
            sdp=SDP,
            tracks=[track(mid=str(i), source=s) for i, s in enumerate(m.TRACK_SOURCES)],
        ),
        Publish(SDP, tuple(PublishTrack(str(i), s) for i, s in enumerate(m.TRACK_SOURCES))),
    ),
    ("unpublish", frame(type="unpublish", track_id="TR_1"), Unpublish("TR_1")),
    ("subscriber_answer", frame(type="subscriber_answer", sdp=SDP), SubscriberAnswer(SDP)),
    ("subscribe", frame(type="subscribe", track_ids=["a", "b"]), Subscribe(("a", "b"))),
    ("subscribe empty", frame(type="subscribe", track_ids=[]), Subscribe(())),
    (
        "subscribe drops repeated ids, keeps order",
        frame(type="subscribe", track_ids=["b", "a", "b"]),
        Subscribe(("b", "a")),
    ),
    ("unsubscribe", frame(type="unsubscribe", track_ids=["a"]), Unsubscribe(("a",))),
    (
        "candidate full",
        frame(
            type="candidate",
            target="publisher",
            candidate={
                "candidate": "candidate:1 1 udp 2122260223 10.0.0.2 54321 typ host",
                "sdpMid": "0",
                "sdpMLineIndex": 0,
                "usernameFragment": "abcd",
            },
        ),
        Candidate(
            "publisher",
            IceCandidate("candidate:1 1 udp 2122260223 10.0.0.2 54321 typ host", "0", 0),
        ),
    ),
    (
        "candidate null = end of candidates",
        frame(type="candidate", target="subscriber", candidate=None),
        Candidate("subscriber", None),
    ),
    (
        "candidate empty string = end of candidates",
        frame(type="candidate", target="subscriber", candidate={"candidate": "", "sdpMid": "1"}),
        Candidate("subscriber", IceCandidate("", "1", None)),
    ),
    (
        "candidate null sdpMid / sdpMLineIndex",
        frame(
            type="candidate",
            target="publisher",
            candidate={"candidate": "candidate:x", "sdpMid": None, "sdpMLineIndex": None},
        ),
        Candidate("publisher", IceCandidate("candidate:x", None, None)),
    ),
    *[
        (
            f"set_quality {q}",
            frame(type="set_quality", track_id="t", quality=q),
            SetQuality("t", q),
        )
        for q in ("low", "medium", "high", "off")
    ],
    (
        "set_video_size",
        frame(type="set_video_size", track_id="t", width=640, height=360),
        SetVideoSize("t", 640, 360),
    ),
    (
        "set_video_size zero (hidden)",
        frame(type="set_video_size", track_id="t", width=0, height=0),
        SetVideoSize("t", 0, 0),
    ),
    ("mute", frame(type="mute", track_id="t", muted=True), Mute("t", True)),
    ("unmute", frame(type="mute", track_id="t", muted=False), Mute("t", False)),
    ("ping int", frame(type="ping", ts=1700000000123), Ping(1700000000123)),
    ("ping float", frame(type="ping", ts=12.5), Ping(12.5)),
    ("leave", frame(type="leave"), Leave()),
    (
        "unknown extra fields are ignored",
        frame(type="mute", track_id="t", muted=True, future_field={"x": [1, 2]}, v=2),
        Mute("t", True),
    ),
    ("bytes frame", frame(type="leave").encode(), Leave()),
    ("id of exactly 128 chars", frame(type="unpublish", track_id="x" * 128), Unpublish("x" * 128)),
]


@pytest.mark.parametrize(("text", "expected"), [g[1:] for g in GOOD], ids=[g[0] for g in GOOD])
def test_good_messages(text: str | bytes, expected: m.ClientMessage) -> None:
    msg = parse_client_message(text)
    assert msg == expected
    assert msg.type == json.loads(text)["type"]


def test_candidate_end_of_candidates_property() -> None:
    assert Candidate("publisher", None).is_end_of_candidates
    assert Candidate("publisher", IceCandidate("", "0", 0)).is_end_of_candidates
    assert not Candidate("publisher", IceCandidate("candidate:1", "0", 0)).is_end_of_candidates


def test_sdp_exactly_at_limit_is_accepted() -> None:
    sdp = SDP + "a=x\r\n" * 10
    msg = parse_client_message(frame(type="subscriber_answer", sdp=sdp), max_bytes=len(sdp))
    assert msg == SubscriberAnswer(sdp)


def test_limits_of_64_are_accepted() -> None:
    ids = [f"t{i}" for i in range(m.MAX_TRACKS)]
    assert parse_client_message(frame(type="subscribe", track_ids=ids)) == Subscribe(tuple(ids))
    tracks = [{"mid": str(i)} for i in range(m.MAX_TRACKS)]
    msg = parse_client_message(frame(type="publish", sdp=SDP, tracks=tracks))
    assert isinstance(msg, Publish) and len(msg.tracks) == m.MAX_TRACKS


# --------------------------------------------------------------------------
# Bad messages: (id, frame, code, substring the message must contain)
# --------------------------------------------------------------------------


def pub(**fields: Any) -> str:
    base: dict[str, Any] = {"type": "publish", "sdp": SDP, "tracks": [track()]}
    base.update(fields)
    return json.dumps(base)


def pub_track(**overrides: Any) -> str:
    return pub(tracks=[track(**overrides)])


def pub_layer(**overrides: Any) -> str:
    layer = dict(LAYERS[0])
    layer.update(overrides)
    return pub_track(layers=[layer])


def drop(d: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k != key}


# Kept one case per line or two for scanning; the formatter would explode it.
# fmt: off
BAD: list[tuple[str, str | bytes, str, str]] = [
    # framing
    ("not json", "{type: ping}", "bad_request", "malformed JSON at line 1 column 2"),
    ("not json multi-line", '{\n "type": "ping",\n}', "bad_request", "at line 3 column 1"),
    ("empty frame", "", "bad_request", "malformed JSON at line 1 column 1"),
    ("NaN is not JSON", '{"type":"ping","ts":NaN}', "bad_request", "NaN"),
    ("Infinity is not JSON", '{"type":"ping","ts":-Infinity}', "bad_request", "-Infinity"),
    ("deep nesting", "[" * 100_000 + "]" * 100_000, "bad_request", "nested too deeply"),
    ("invalid utf-8", b'{"type":"leave","x":"\xff"}', "bad_request", "not valid UTF-8"),
    ("array", "[1, 2]", "bad_request", "expected a JSON object, got an array"),
    ("string", '"ping"', "bad_request", "expected a JSON object, got a string"),
    ("null", "null", "bad_request", "expected a JSON object, got null"),
    ("no type", frame(ts=1), "bad_request", "type: required field is missing"),
    ("type not string", frame(type=5), "bad_request", "type: expected a string, got a number"),
    ("unknown type", frame(type="join"), "unsupported", 'unknown message type "join"'),
    # publish
    ("publish no sdp", json.dumps({"type": "publish", "tracks": []}), "bad_request",
     "publish.sdp: required"),
    ("publish sdp not string", pub(sdp=1), "bad_request", "publish.sdp: expected a string"),
    ("publish sdp not sdp", pub(sdp="hello"), "bad_request", 'publish.sdp: expected an SDP'),
    ("publish sdp empty", pub(sdp=""), "bad_request", "publish.sdp"),
    ("publish no tracks", json.dumps({"type": "publish", "sdp": SDP}), "bad_request",
     "publish.tracks: required field is missing"),
    ("publish tracks not array", pub(tracks={"mid": "0"}), "bad_request",
     "publish.tracks: expected an array, got an object"),
    ("publish too many tracks", pub(tracks=[{"mid": str(i)} for i in range(65)]), "bad_request",
     "publish.tracks: has 65 entries; the limit is 64"),
    ("publish track not object", pub(tracks=["0"]), "bad_request",
     "publish.tracks[0]: expected an object"),
    ("publish mid missing", pub(tracks=[track(), {"source": "camera"}]), "bad_request",
     "publish.tracks[1].mid: required field is missing"),
    ("publish mid not string", pub_track(mid=0), "bad_request",
     "publish.tracks[0].mid: expected a string, got a number"),
    ("publish mid empty", pub_track(mid=""), "bad_request", "publish.tracks[0].mid: must not be"),
    ("publish mid too long", pub_track(mid="m" * 129), "bad_request",
     "publish.tracks[0].mid: is 129 characters; the limit is 128"),
    ("publish mid with newline", pub_track(mid="0\r\na=evil"), "bad_request",
     "publish.tracks[0].mid: must not contain control characters"),
    ("publish duplicate mid", pub(tracks=[track(), track()]), "bad_request",
     'publish.tracks[1].mid: duplicate mid "0"'),
    ("publish bad source", pub_track(source="webcam"), "bad_request",
     "publish.tracks[0].source: expected one of camera, microphone, screen, screen_audio, "
     'unknown; got "webcam"'),
    ("publish source wrong type", pub_track(source=True), "bad_request",
     "publish.tracks[0].source: expected one of"),
    ("publish name not string", pub_track(name=7), "bad_request",
     "publish.tracks[0].name: expected a string"),
    ("publish name too long", pub_track(name="n" * 257), "bad_request",
     "publish.tracks[0].name: is 257 characters; the limit is 256"),
    ("publish lone surrogate", '{"type":"publish","sdp":"v=0","tracks":[{"mid":"\\ud800"}]}',
     "bad_request", "publish.tracks[0].mid: contains an unpaired UTF-16 surrogate"),
    ("publish layers not array", pub_track(layers="high"), "bad_request",
     "publish.tracks[0].layers: expected an array, got a string"),
    ("publish too many layers", pub_track(layers=LAYERS + [LAYERS[0]]), "bad_request",
     "publish.tracks[0].layers: has 4 entries; the limit is 3"),
    ("publish layer rid missing", pub_track(layers=[drop(LAYERS[0], "rid")]), "bad_request",
     "publish.tracks[0].layers[0].rid: required field is missing"),
    ("publish layer bad quality", pub_layer(quality="ultra"), "bad_request",
     'publish.tracks[0].layers[0].quality: expected one of low, medium, high; got "ultra"'),
    ("publish layer quality off", pub_layer(quality="off"), "bad_request",
     "publish.tracks[0].layers[0].quality: expected one of low, medium, high"),
    ("publish layer width negative", pub_layer(width=-1), "bad_request",
     "publish.tracks[0].layers[0].width: expected an integer from 0 to 65535"),
    ("publish layer height float", pub_layer(height=1.5), "bad_request",
     "publish.tracks[0].layers[0].height: expected a non-negative integer, got a number"),
    ("publish layer width bool", pub_layer(width=True), "bad_request",
     "publish.tracks[0].layers[0].width: expected a non-negative integer, got a boolean"),
    ("publish layer height missing", pub_track(layers=[drop(LAYERS[0], "height")]),
     "bad_request", "publish.tracks[0].layers[0].height: required field is missing"),
    ("publish duplicate rid", pub_track(layers=[LAYERS[0], dict(LAYERS[1], rid="q")]),
     "bad_request", 'publish.tracks[0].layers[1].rid: duplicate rid "q"'),
    ("publish duplicate quality", pub_track(layers=[LAYERS[0], dict(LAYERS[1], quality="low")]),
     "bad_request", 'publish.tracks[0].layers[1].quality: duplicate quality "low"'),
    # unpublish / subscribe
    ("unpublish no track_id", frame(type="unpublish"), "bad_request",
     "unpublish.track_id: required field is missing"),
    ("unpublish track_id null", frame(type="unpublish", track_id=None), "bad_request",
     "unpublish.track_id: expected a string, got null"),
    ("subscriber_answer no sdp", frame(type="subscriber_answer"), "bad_request",
     "subscriber_answer.sdp: required field is missing"),
    ("subscriber_answer not sdp", frame(type="subscriber_answer", sdp="answer"), "bad_request",
     "subscriber_answer.sdp: expected an SDP"),
    ("subscribe not array", frame(type="subscribe", track_ids="a"), "bad_request",
     "subscribe.track_ids: expected an array, got a string"),
    ("subscribe too many", frame(type="subscribe", track_ids=[str(i) for i in range(65)]),
     "bad_request", "subscribe.track_ids: has 65 entries; the limit is 64"),
    ("subscribe bad item", frame(type="subscribe", track_ids=["a", 2]), "bad_request",
     "subscribe.track_ids[1]: expected a string, got a number"),
    ("unsubscribe missing", frame(type="unsubscribe"), "bad_request",
     "unsubscribe.track_ids: required field is missing"),
    ("unsubscribe long id", frame(type="unsubscribe", track_ids=["x" * 200]), "bad_request",
     "unsubscribe.track_ids[0]: is 200 characters"),
    # candidate
    ("candidate no target", frame(type="candidate", candidate=None), "bad_request",
     "candidate.target: required field is missing"),
    ("candidate bad target", frame(type="candidate", target="both", candidate=None),
     "bad_request", 'candidate.target: expected one of publisher, subscriber; got "both"'),
    ("candidate key missing", frame(type="candidate", target="publisher"), "bad_request",
     "candidate.candidate: required field is missing"),
    ("candidate is string", frame(type="candidate", target="publisher", candidate="candidate:1"),
     "bad_request", "candidate.candidate: expected an object, got a string"),
    ("candidate line missing", frame(type="candidate", target="publisher", candidate={}),
     "bad_request", "candidate.candidate.candidate: required field is missing"),
    ("candidate line with CRLF",
     frame(type="candidate", target="publisher", candidate={"candidate": "candidate:1\r\na=x"}),
     "bad_request", "candidate.candidate.candidate: must not contain control characters"),
    ("candidate line too long",
     frame(type="candidate", target="publisher", candidate={"candidate": "c" * 3000}),
     "bad_request", "candidate.candidate.candidate: is 3000 characters"),
    ("candidate sdpMid number",
     frame(type="candidate", target="publisher", candidate={"candidate": "", "sdpMid": 0}),
     "bad_request", "candidate.candidate.sdpMid: expected a string, got a number"),
    ("candidate sdpMLineIndex negative",
     frame(type="candidate", target="publisher", candidate={"candidate": "", "sdpMLineIndex": -1}),
     "bad_request", "candidate.candidate.sdpMLineIndex: expected an integer from 0"),
    ("candidate sdpMLineIndex string",
     frame(type="candidate", target="publisher", candidate={"candidate": "", "sdpMLineIndex": "0"}),
     "bad_request", "candidate.candidate.sdpMLineIndex: expected a non-negative integer"),
    # set_quality / set_video_size / mute / ping
    ("set_quality bad", frame(type="set_quality", track_id="t", quality="best"), "bad_request",
     'set_quality.quality: expected one of low, medium, high, off; got "best"'),
    ("set_quality no track", frame(type="set_quality", quality="low"), "bad_request",
     "set_quality.track_id: required field is missing"),
    ("set_video_size negative", frame(type="set_video_size", track_id="t", width=-5, height=1),
     "bad_request", "set_video_size.width: expected an integer from 0 to 65535"),
    ("set_video_size huge", frame(type="set_video_size", track_id="t", width=1, height=10**30),
     "bad_request", "set_video_size.height: expected an integer from 0 to 65535"),
    ("set_video_size string", frame(type="set_video_size", track_id="t", width="640", height=1),
     "bad_request", "set_video_size.width: expected a non-negative integer, got a string"),
    ("mute not bool", frame(type="mute", track_id="t", muted=1), "bad_request",
     "mute.muted: expected true or false, got a number"),
    ("mute missing", frame(type="mute", track_id="t"), "bad_request",
     "mute.muted: required field is missing"),
    ("ping no ts", frame(type="ping"), "bad_request", "ping.ts: required field is missing"),
    ("ping ts string", frame(type="ping", ts="now"), "bad_request",
     "ping.ts: expected a number, got a string"),
    ("ping ts bool", frame(type="ping", ts=True), "bad_request",
     "ping.ts: expected a number, got a boolean"),
    ("ping ts overflow", '{"type":"ping","ts":1e999}', "bad_request",
     "ping.ts: expected a finite number"),
]
# fmt: on


@pytest.mark.parametrize(
    ("text", "code", "fragment"), [b[1:] for b in BAD], ids=[b[0] for b in BAD]
)
def test_bad_messages(text: str | bytes, code: str, fragment: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_client_message(text)
    err = info.value
    assert err.code == code
    assert fragment in err.message, err.message
    assert str(err) == err.message


def test_request_type_is_reported_when_readable() -> None:
    with pytest.raises(ProtocolError) as info:
        parse_client_message(pub_track(mid=0))
    assert info.value.request_type == "publish"
    with pytest.raises(ProtocolError) as info:
        parse_client_message("{")
    assert info.value.request_type is None
    with pytest.raises(ProtocolError) as info:
        parse_client_message(frame(type="join"))
    assert info.value.request_type == "join"


def test_unknown_type_lists_known_types_and_bounds_the_echo() -> None:
    with pytest.raises(ProtocolError) as info:
        parse_client_message(frame(type="x" * 10_000))
    err = info.value
    assert err.code == "unsupported"
    for t in ("publish", "subscriber_answer", "set_video_size", "leave"):
        assert t in err.message
    assert len(err.message) < 400
    assert err.request_type is not None and len(err.request_type) <= m.MAX_ID_CHARS


def test_sdp_over_max_bytes() -> None:
    sdp = SDP + "a=" + "x" * 200 + "\r\n"
    with pytest.raises(ProtocolError) as info:
        parse_client_message(frame(type="subscriber_answer", sdp=sdp), max_bytes=100)
    assert info.value.code == "bad_request"
    assert info.value.message == (
        f"subscriber_answer.sdp: SDP is {len(sdp)} bytes; the limit is 100 bytes"
    )


def test_sdp_size_counts_utf8_bytes() -> None:
    sdp = "v=0\r\ns=" + "é" * 60 + "\r\n"  # 69 characters, 129 UTF-8 bytes
    parse_client_message(frame(type="subscriber_answer", sdp=sdp), max_bytes=200)
    with pytest.raises(ProtocolError, match="SDP is 129 bytes"):
        parse_client_message(frame(type="subscriber_answer", sdp=sdp), max_bytes=100)


@pytest.mark.parametrize("as_bytes", [False, True])
def test_oversized_frame_is_refused_before_parsing(as_bytes: bool) -> None:
    text = '{"type":"leave","pad":"' + "x" * (1000 + m.FRAME_OVERHEAD_BYTES) + '"}'
    with pytest.raises(ProtocolError) as info:
        parse_client_message(text.encode() if as_bytes else text, max_bytes=1000)
    assert info.value.code == "bad_request"
    assert "frame is" in info.value.message and "the limit is" in info.value.message


# --------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------

CAM = TrackInfo(
    id="TR_cam",
    kind="video",
    source="camera",
    name="cam",
    muted=False,
    codec="VP8",
    simulcast=True,
    layers=(LayerInfo("q", "low", 320, 180), LayerInfo("f", "high", 1280, 720)),
)
MIC = TrackInfo(id="TR_mic", kind="audio", source="microphone", codec="opus")
ALICE = ParticipantInfo(id="PA_a", identity="alice", name="Alice", tracks=(CAM, MIC))
BOB = ParticipantInfo(id="PA_b", identity="bob", name="Bob")


def test_info_shapes() -> None:
    assert CAM.to_json() == {
        "id": "TR_cam",
        "kind": "video",
        "source": "camera",
        "name": "cam",
        "muted": False,
        "codec": "VP8",
        "simulcast": True,
        "layers": [
            {"rid": "q", "quality": "low", "width": 320, "height": 180},
            {"rid": "f", "quality": "high", "width": 1280, "height": 720},
        ],
    }
    assert MIC.to_json()["layers"] == [] and MIC.to_json()["simulcast"] is False
    assert set(ALICE.to_json()) == {"id", "identity", "name", "tracks"}
    assert [t["id"] for t in ALICE.to_json()["tracks"]] == ["TR_cam", "TR_mic"]


def test_joined_shape() -> None:
    ice = [{"urls": ["stun:stun.example.org:3478"]}]
    msg = m.joined(BOB, "standup", "node-1", [ALICE], ice)
    assert msg == {
        "type": "joined",
        "participant": {"id": "PA_b", "identity": "bob", "name": "Bob"},
        "room": {"name": "standup", "node_id": "node-1"},
        "participants": [ALICE.to_json()],
        "ice_servers": ice,
        "resumed": False,
    }
    assert msg["ice_servers"][0] is not ice[0]  # copied, not aliased
    resumable = m.joined(BOB, "standup", "node-1", [], resume_token="tok", resumed=True)
    assert (resumable["resume_token"], resumable["resumed"]) == ("tok", True)


# Kept one case per line or two for scanning; the formatter would explode it.
# fmt: off
BUILDER_CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (
        "publish_answer",
        m.publish_answer("v=0 answer", {"0": "TR_a", "1": "TR_b"}),
        {
            "type": "publish_answer",
            "sdp": "v=0 answer",
            "tracks": [{"mid": "0", "track_id": "TR_a"}, {"mid": "1", "track_id": "TR_b"}],
        },
    ),
    (
        "subscriber_offer",
        m.subscriber_offer("v=0 offer", {"0": "TR_a"}),
        {"type": "subscriber_offer", "sdp": "v=0 offer", "tracks": {"0": "TR_a"}},
    ),
    (
        "participant_joined",
        m.participant_joined(BOB),
        {
            "type": "participant_joined",
            "participant": {"id": "PA_b", "identity": "bob", "name": "Bob", "tracks": []},
        },
    ),
    ("participant_left", m.participant_left("PA_b"),
     {"type": "participant_left", "participant_id": "PA_b"}),
    ("track_published", m.track_published("PA_a", MIC),
     {"type": "track_published", "participant_id": "PA_a", "track": MIC.to_json()}),
    ("track_unpublished", m.track_unpublished("PA_a", "TR_mic"),
     {"type": "track_unpublished", "participant_id": "PA_a", "track_id": "TR_mic"}),
    ("track_muted", m.track_muted("PA_a", "TR_mic", True),
     {"type": "track_muted", "participant_id": "PA_a", "track_id": "TR_mic", "muted": True}),
    ("layer_changed", m.layer_changed("TR_cam", "off"),
     {"type": "layer_changed", "track_id": "TR_cam", "quality": "off"}),
    (
        "candidate",
        m.candidate("subscriber", IceCandidate("candidate:1 1 udp 1 1.2.3.4 5 typ host", "0", 0)),
        {
            "type": "candidate",
            "target": "subscriber",
            "candidate": {
                "candidate": "candidate:1 1 udp 1 1.2.3.4 5 typ host",
                "sdpMid": "0",
                "sdpMLineIndex": 0,
            },
        },
    ),
    ("candidate end", m.candidate("publisher", None),
     {"type": "candidate", "target": "publisher", "candidate": None}),
    ("pong", m.pong(12.5), {"type": "pong", "ts": 12.5}),
    ("leave", m.leave("room closed"), {"type": "leave", "reason": "room closed"}),
    ("error", m.error("not_found", "unpublish.track_id: no track \"x\"", "unpublish"),
     {"type": "error", "code": "not_found", "message": "unpublish.track_id: no track \"x\"",
      "request_type": "unpublish"}),
    ("error without request", m.error("internal", "oops"),
     {"type": "error", "code": "internal", "message": "oops", "request_type": None}),
]
# fmt: on


@pytest.mark.parametrize(
    ("built", "expected"), [c[1:] for c in BUILDER_CASES], ids=[c[0] for c in BUILDER_CASES]
)
def test_builders(built: dict[str, Any], expected: dict[str, Any]) -> None:
    assert built == expected
    # Everything a builder returns must survive the wire unchanged.
    assert json.loads(json.dumps(built, allow_nan=False)) == built


@pytest.mark.parametrize(
    "cand",
    [None, IceCandidate("candidate:1 1 udp 1 1.2.3.4 5 typ host", "0", 0), IceCandidate("", "1")],
)
def test_candidate_builder_round_trips_through_parser(cand: IceCandidate | None) -> None:
    # Client and server candidates share one shape, so our own frame must parse.
    text = json.dumps(m.candidate("publisher", cand))
    assert parse_client_message(text) == Candidate("publisher", cand)


def test_ping_pong_round_trip() -> None:
    msg = parse_client_message(frame(type="ping", ts=1700000000.25))
    assert isinstance(msg, Ping)
    assert json.loads(json.dumps(m.pong(msg.ts))) == {"type": "pong", "ts": 1700000000.25}


def test_error_from_protocol_error() -> None:
    with pytest.raises(ProtocolError) as info:
        parse_client_message(frame(type="mute", track_id="t", muted="yes"))
    assert m.error_from(info.value) == {
        "type": "error",
        "code": "bad_request",
        "message": "mute.muted: expected true or false, got a string",
        "request_type": "mute",
    }


def test_builders_refuse_undocumented_values() -> None:
    with pytest.raises(ValueError):
        m.error("teapot", "x")
    with pytest.raises(ValueError):
        m.candidate("both", None)
    with pytest.raises(ValueError):
        m.layer_changed("t", "ultra")
    with pytest.raises(ValueError):
        ProtocolError("nope", "x")


# --------------------------------------------------------------------------
# Random inputs: only ProtocolError may escape
# --------------------------------------------------------------------------

_KEYS = [
    "type",
    "sdp",
    "tracks",
    "mid",
    "source",
    "name",
    "layers",
    "rid",
    "quality",
    "width",
    "height",
    "track_id",
    "track_ids",
    "target",
    "candidate",
    "sdpMid",
    "sdpMLineIndex",
    "muted",
    "ts",
    "x",
]
_STRINGS = [
    "",
    "v=0",
    SDP,
    "publish",
    "low",
    "off",
    "camera",
    "publisher",
    "\x00",
    "\ud800",
    "é",
    "x" * 300,
    "0",
    "candidate:1",
]


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth > 4 or roll < 0.45:
        return rng.choice(
            [
                None,
                True,
                False,
                0,
                -1,
                1.5,
                2**70,
                float("nan"),
                rng.randint(-10, 70000),
                rng.choice(_STRINGS),
                rng.choice(m.CLIENT_MESSAGE_TYPES),
                "".join(chr(rng.randint(0, 0x2FF)) for _ in range(rng.randint(0, 8))),
            ]
        )
    if roll < 0.7:
        return [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 5))]
    return {rng.choice(_KEYS): _random_value(rng, depth + 1) for _ in range(rng.randint(0, 6))}


def _mutated_valid_frame(rng: random.Random) -> Any:
    # Start from a valid message and break one field somewhere inside it, which
    # reaches much deeper validation paths than uniformly random values do.
    base = json.loads(rng.choice(GOOD)[1])
    node: Any = base
    for _ in range(rng.randint(0, 3)):
        if isinstance(node, dict) and node:
            child = node[rng.choice(list(node))]
        elif isinstance(node, list) and node:
            child = rng.choice(node)
        else:
            break
        if not isinstance(child, dict | list):
            break
        node = child
    if isinstance(node, dict):
        if node and rng.random() < 0.3:
            del node[rng.choice(list(node))]
        else:
            node[rng.choice(_KEYS)] = _random_value(rng, 2)
    elif isinstance(node, list) and node:
        node[rng.randrange(len(node))] = _random_value(rng, 2)
    return base


def test_random_inputs_only_raise_protocol_error() -> None:
    rng = random.Random(20240611)
    outcomes = {"ok": 0, "error": 0}
    for i in range(3000):
        kind = i % 4
        data: str | bytes
        if kind == 0:
            data = json.dumps(_random_value(rng))
        elif kind == 1:
            data = json.dumps(_mutated_valid_frame(rng))
        elif kind == 2:
            data = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 64)))
        else:
            # Truncated / spliced JSON text.
            text = json.dumps(_mutated_valid_frame(rng))
            cut = rng.randint(0, len(text))
            data = text[:cut] + rng.choice(["", "}", "]", ",", '"', "\\", "\x00", "{" * 50])
        try:
            msg = parse_client_message(data, max_bytes=rng.choice([16, 1024, 256 * 1024]))
        except ProtocolError as e:
            outcomes["error"] += 1
            assert e.code in m.ERROR_CODES
            assert e.message
            json.dumps(m.error_from(e), allow_nan=False)
        else:
            outcomes["ok"] += 1
            assert msg.type in m.CLIENT_MESSAGE_TYPES
    # The generator must exercise both sides or the test proves little.
    assert outcomes["ok"] > 100 and outcomes["error"] > 1000, outcomes
