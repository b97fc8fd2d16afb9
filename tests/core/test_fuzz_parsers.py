"""Property tests: no unexpected exception escapes a parser of outside input.

Every parser that reads bytes or text from a client, a peer or another node
documents the one error type it may raise; anything else (an IndexError, an
OverflowError, a RecursionError, ...) would escape the caller's ``except`` and
end a session, a transport or a cluster loop. Each test feeds a parser
arbitrary input and structured near-valid input (so the checks deep inside are
reached, not only the first length check) and asserts only the documented
error comes out, and that what does parse is self-consistent.

Runs derandomized (the same examples every run) so CI is reproducible.

The bugs these tests found are fixed (an OverflowError from JSON Infinity in
track records and token claims, a RecursionError from deep nesting, a
non-ASCII token reaching PyJWT); each ``test_regression_*`` keeps one fixed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sfu.core import codecs, h264, relay_wire, rtcp, rtp, vp8
from sfu.negotiate import LocalTransport, NegotiationError, answer_publish
from sfu.relay import RemoteTrackSpec, SpecError
from sfu.sdp import Codec, SdpError, parse, serialize
from signaling import messages as m
from signaling.auth import DEV_KEY, DEV_SECRET, AuthError, KeyStore, TokenClaims, verify_token
from signaling.cluster.membership import ParticipantRecord
from signaling.cluster.records import RecordError, track_from_record


def fuzz(max_examples: int) -> Any:
    """Derandomized settings: the same examples on every run and machine."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
            HealthCheck.large_base_example,
        ],
    )


# --------------------------------------------------------------------------- JSON values


def chance(n: int) -> st.SearchStrategy[bool]:
    """True one time in n (st.integers would favour 0 far more often)."""
    return st.sampled_from([False] * (n - 1) + [True])


@st.composite
def _rarely(
    draw: st.DrawFn, common: st.SearchStrategy[Any], rare: st.SearchStrategy[Any], n: int
) -> Any:
    return draw(rare) if draw(chance(n)) else draw(common)


def rarely(
    common: st.SearchStrategy[Any], rare: st.SearchStrategy[Any], n: int = 6
) -> st.SearchStrategy[Any]:
    """`rare` one time in n, else `common`."""
    return _rarely(common, rare, n)


# Hostile characters: lone surrogates (JSON "\ud800" escapes decode to them,
# aiohttp's surrogateescape produces them from bad UTF-8), NUL, line breaks,
# DEL, non-characters. A quarter of the strings drawn by text() carry one.
HOSTILE_CHARS = st.sampled_from(
    ["\ud800", "\udcff", "\x00", "\n", "\r", "\u2028", "\uffff", "\x7f"]
)


def _spike(parts: tuple[str, str, int]) -> str:
    plain, char, at = parts
    at %= len(plain) + 1
    return plain[:at] + char + plain[at:]


def text(min_size: int = 0, max_size: int | None = None) -> st.SearchStrategy[str]:
    plain = st.text(min_size=min_size, max_size=max_size)
    if max_size == 0:
        return plain
    shorter = st.text(min_size=min_size, max_size=None if max_size is None else max_size - 1)
    spiked = st.tuples(shorter, HOSTILE_CHARS, st.integers(0, 1000)).map(_spike)
    return rarely(plain, spiked, 4)


# Numbers that break int(), float() and arithmetic: json.dumps writes the
# floats as NaN / Infinity and json.loads reads them back.
HOSTILE_NUMBERS = st.sampled_from(
    [float("inf"), float("-inf"), float("nan"), 10**400, -(10**400), 2**64, 1e308, -0.0]
)
JSON_SCALARS = (
    st.none() | st.booleans() | st.integers() | st.floats() | HOSTILE_NUMBERS | text(max_size=20)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(text(max_size=8), children, max_size=5)
    ),
    max_leaves=25,
)


@st.composite
def _maybe(draw: st.DrawFn, valid: st.SearchStrategy[Any]) -> Any:
    return draw(JSON_VALUES) if draw(chance(8)) else draw(valid)


def maybe(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly (7 in 8) a plausible value, else any JSON value at all.
    (Repeating a branch in st.one_of does not weight it.)"""
    return _maybe(valid)


@st.composite
def _near_dict(
    draw: st.DrawFn,
    required: dict[str, st.SearchStrategy[Any]],
    optional: dict[str, st.SearchStrategy[Any]],
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, strategy in required.items():
        if not draw(chance(12)):  # one in twelve is missing
            out[key] = draw(maybe(strategy))
    for key, strategy in optional.items():
        if draw(chance(3)):
            out[key] = draw(maybe(strategy))
    if draw(chance(8)):
        out[draw(text(max_size=6))] = draw(JSON_VALUES)  # a field nobody knows
    return out


def near_dict(
    required: dict[str, st.SearchStrategy[Any]],
    optional: dict[str, st.SearchStrategy[Any]] | None = None,
) -> st.SearchStrategy[dict[str, Any]]:
    """An object with the required fields (rarely one missing), some optional
    ones, each value mostly plausible: what reaches a parser's deep checks."""
    return _near_dict(required, optional or {})


def dumps(value: Any) -> str:
    return json.dumps(value)  # allow_nan: NaN / Infinity are hostile input too


# =========================================================================== signaling

IDS = st.one_of(
    st.sampled_from(["0", "1", "a", "q", "h", "f", "TR_x", ""]),
    text(max_size=12),
    text(min_size=120, max_size=140),
)
DIMENSIONS = st.integers(0, 4000) | st.integers(-2, 70_000)
LAYER = near_dict(
    {
        "rid": IDS,
        "quality": st.sampled_from([*m.LAYER_QUALITIES, "off", "x"]),
        "width": DIMENSIONS,
        "height": DIMENSIONS,
    }
)
PUBLISH_TRACK = near_dict(
    {"mid": IDS},
    {
        "source": st.sampled_from([*m.TRACK_SOURCES, "x"]),
        "name": text(max_size=300),
        "layers": st.lists(LAYER, max_size=4),
    },
)
ICE_CANDIDATE = near_dict(
    {
        "candidate": st.sampled_from(["", "candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host"])
        | text(max_size=50)
        | text(min_size=2040, max_size=2060)
    },
    {"sdpMid": IDS, "sdpMLineIndex": st.integers(-2, 70_000)},
)
FIELDS = {
    "sdp": text(max_size=40).map(lambda s: "v=0" + s),
    "tracks": st.lists(PUBLISH_TRACK, max_size=4),
    "track_id": IDS,
    "track_ids": st.lists(IDS, max_size=5),
    "target": st.sampled_from([*m.CANDIDATE_TARGETS, "x"]),
    "candidate": st.none() | ICE_CANDIDATE,
    "quality": st.sampled_from([*m.SUBSCRIBE_QUALITIES, "x"]),
    "width": DIMENSIONS,
    "height": DIMENSIONS,
    "muted": st.booleans(),
    "ts": st.floats() | st.integers(),
}
# The fields each message type reads (docs/protocol.md).
REQUIRED_FIELDS = {
    "publish": ("sdp", "tracks"),
    "unpublish": ("track_id",),
    "subscriber_answer": ("sdp",),
    "subscribe": ("track_ids",),
    "unsubscribe": ("track_ids",),
    "candidate": ("target", "candidate"),
    "set_quality": ("track_id", "quality"),
    "set_video_size": ("track_id", "width", "height"),
    "mute": ("track_id", "muted"),
    "ping": ("ts",),
    "leave": (),
}
assert set(REQUIRED_FIELDS) == set(m.CLIENT_MESSAGE_TYPES)


@st.composite
def near_valid_messages(draw: st.DrawFn) -> dict[str, Any]:
    """A message of a known type (rarely an unknown one) with its fields, each
    mostly plausible, sometimes missing or of another JSON type, plus other
    types' fields now and then."""
    kind = draw(st.sampled_from([*m.CLIENT_MESSAGE_TYPES, "nope"]))
    required = {name: FIELDS[name] for name in REQUIRED_FIELDS.get(kind, ())}
    others = {name: FIELDS[name] for name in FIELDS if name not in required}
    fields = draw(near_dict(required))
    if draw(chance(4)):
        name = draw(st.sampled_from(sorted(others)))
        fields[name] = draw(maybe(others[name]))
    return {"type": kind, **fields}


NEAR_VALID_MESSAGES = near_valid_messages()


def _check_client_message(frame: str | bytes, max_bytes: int = m.DEFAULT_MAX_SDP_BYTES) -> None:
    try:
        message = m.parse_client_message(frame, max_bytes)
    except m.ProtocolError as exc:
        # The message is echoed to the client in an error frame and logged.
        assert isinstance(exc.message, str)
        assert len(exc.message) < 2000, len(exc.message)
        assert "\n" not in exc.message and "\r" not in exc.message, exc.message
        assert exc.code in m.ERROR_CODES
        assert exc.request_type is None or (
            isinstance(exc.request_type, str) and len(exc.request_type) <= m.MAX_ID_CHARS
        )
        # The error frame builds and goes out as the session sends it.
        json.dumps(m.error_from(exc), separators=(",", ":")).encode("utf-8")
        return
    assert message.type in m.CLIENT_MESSAGE_TYPES


@fuzz(500)
@given(text())
@example("[" * 100_000)
@example('{"type": "ping", "ts": ' + "9" * 5000 + "}")
@example('{"type": "ping", "ts": NaN}')
@example('{"type": "' + "x" * 100_000 + '"}')
@example('{"type": "ping", "ts": 1e999}')
@example('"\\ud800"')
def test_parse_client_message_arbitrary_text(frame: str) -> None:
    _check_client_message(frame)


@fuzz(300)
@given(st.binary())
@example(b"\xff\xfe")
@example(b'{"type":"ping","ts":1}' + b"\x80")
def test_parse_client_message_arbitrary_bytes(data: bytes) -> None:
    _check_client_message(data)


@fuzz(500)
@given(JSON_VALUES)
def test_parse_client_message_arbitrary_json(value: Any) -> None:
    _check_client_message(dumps(value))


@fuzz(1000)
@given(NEAR_VALID_MESSAGES, st.sampled_from([m.DEFAULT_MAX_SDP_BYTES, 0, 5, 64]))
def test_parse_client_message_near_valid(message: dict[str, Any], max_bytes: int) -> None:
    _check_client_message(dumps(message), max_bytes)


# =========================================================================== SDP

FP = ":".join(["AB"] * 32)
LOCAL = LocalTransport(
    "srvU",
    "srvpasswordsrvpassword00",
    [("sha-256", FP)],
    ["1 1 udp 2130706431 127.0.0.1 40000 typ host"],
)

_URIS = [
    rtp.EXT_MID,
    rtp.EXT_RID,
    rtp.EXT_RRID,
    rtp.EXT_ABS_SEND_TIME,
    rtp.EXT_AUDIO_LEVEL,
    rtp.EXT_VIDEO_ORIENTATION,
    rtp.EXT_TRANSPORT_CC,
    "urn:x",
]
_TOKEN = st.text(
    alphabet=st.characters(codec="ascii", exclude_characters="\r\n"), min_size=0, max_size=12
)
_NUM = st.one_of(st.integers(-2, 300).map(str), st.sampled_from(["", "x", "96", "2147483648"]))
_PT = st.one_of(
    st.sampled_from(["96", "97", "98", "102", "103", "111", "0", "8", "9", "45", "127", "128"]),
    _NUM,
)
_CODEC_NAME = st.sampled_from(["VP8", "vp8", "H264", "VP9", "AV1", "opus", "rtx", "red", "", "x"])
_CLOCK = st.sampled_from(["90000", "48000", "8000", "0", "x", "10000001"])

_MEDIA_LINES = st.one_of(
    st.builds(
        lambda pt, name, clock, ch: f"a=rtpmap:{pt} {name}/{clock}{ch}",
        _PT,
        _CODEC_NAME,
        _CLOCK,
        st.sampled_from(["", "/2", "/0", "/x", "/2/3"]),
    ),
    st.builds(
        lambda pt, params: f"a=fmtp:{pt} {params}",
        _PT,
        st.sampled_from(
            [
                "apt=96",
                "apt=102",
                "apt=x",
                "packetization-mode=1;profile-level-id=42e01f",
                "packetization-mode=0",
                "minptime=10;useinbandfec=1",
                ";;=;",
                "",
            ]
        )
        | _TOKEN,
    ),
    st.builds(
        lambda pt, fb: f"a=rtcp-fb:{pt} {fb}",
        _PT | st.just("*"),
        st.sampled_from(["nack", "nack pli", "ccm fir", "goog-remb", "transport-cc", ""]),
    ),
    st.builds(
        lambda ident, direction, uri, attrs: f"a=extmap:{ident}{direction} {uri}{attrs}",
        _NUM,
        st.sampled_from(["", "/sendonly", "/recvonly", "/sendrecv", "/inactive", "/x"]),
        st.sampled_from(_URIS) | st.just(""),
        st.sampled_from(["", " x"]),
    ),
    st.builds(
        lambda direction, rids: f"a=simulcast:{direction} {rids}",
        st.sampled_from(["send", "recv", "x"]),
        st.sampled_from(["q;h;f", "~q;h", "x,q;h;f;g", "", ";;", "q;q"]) | _TOKEN,
    ),
    st.builds(
        lambda rid, direction, params: f"a=rid:{rid} {direction}{params}",
        st.sampled_from(["q", "h", "f", "g", ""]) | _TOKEN,
        st.sampled_from(["send", "recv", "x", ""]),
        st.sampled_from(["", " max-width=320", " pt=96"]),
    ),
    st.builds(
        lambda ssrc, attr: f"a=ssrc:{ssrc} {attr}",
        _NUM | st.sampled_from(["1234", "5678", "4294967295", "4294967296"]),
        st.sampled_from(["cname:abc", "msid:s t", "", "x", ":"]),
    ),
    st.builds(
        lambda sem, ssrcs: f"a=ssrc-group:{sem} {ssrcs}",
        st.sampled_from(["FID", "SIM", ""]),
        st.sampled_from(["1234 5678", "1234", "", "x y"]),
    ),
    st.builds(
        "a=candidate:{}".format,
        st.sampled_from(["1 1 udp 2130706431 127.0.0.1 5000 typ host", ""]) | _TOKEN,
    ),
    st.builds("a=mid:{}".format, st.sampled_from(["0", "1", "2", ""]) | _TOKEN),
    st.sampled_from(
        [
            "a=rtcp-mux",
            "a=rtcp-rsize",
            "a=sendonly",
            "a=recvonly",
            "a=sendrecv",
            "a=inactive",
            "a=end-of-candidates",
            "a=extmap-allow-mixed",
            "a=setup:actpass",
            "a=setup:active",
            "a=setup:passive",
            "a=setup:x",
            "a=ice-ufrag:abcd",
            "a=ice-pwd:abcdefghijklmnopqrstuvwx",
            f"a=fingerprint:sha-256 {FP}",
            "a=fingerprint:sha-256",
            "a=sctp-port:5000",
            "a=sctp-port:x",
            "a=max-message-size:262144",
            "a=rtcp:9 IN IP4 0.0.0.0",
            "a=msid:s t",
            "c=IN IP4 0.0.0.0",
            "b=AS:500",
            "a=",
            "a=:",
            "x=y",
            "=",
            "a",
        ]
    ),
    st.builds(lambda name, value: f"a={name}:{value}", _TOKEN, _TOKEN),
)
_M_LINE = st.builds(
    lambda kind, port, proto, fmts: f"m={kind} {port} {proto} {' '.join(fmts)}",
    st.sampled_from(["audio", "video", "application", "text", ""]),
    st.sampled_from(["9", "0", "9/2", "x", "65536", "-1"]),
    st.sampled_from(["UDP/TLS/RTP/SAVPF", "UDP/DTLS/SCTP", "RTP/AVP", "webrtc-datachannel"]),
    st.lists(_PT, max_size=4),
)
_SESSION_LINES = st.lists(
    st.sampled_from(
        [
            "o=- 1 2 IN IP4 127.0.0.1",
            "s=-",
            "t=0 0",
            "a=group:BUNDLE 0 1 2",
            "a=group:BUNDLE 0",
            "a=group:BUNDLE",
            "a=group:LS 0 1",
            "a=ice-lite",
            "a=extmap-allow-mixed",
            "a=msid-semantic: WMS *",
            "a=ice-ufrag:abcd",
            "a=ice-pwd:abcdefghijklmnopqrstuvwx",
            f"a=fingerprint:sha-256 {FP}",
            "a=setup:actpass",
        ]
    )
    | _MEDIA_LINES,
    max_size=8,
)


def _good_section(kind: str, mid: str) -> list[str]:
    """A section the server accepts, to be perturbed by the strategy."""
    if kind == "audio":
        return [
            "m=audio 9 UDP/TLS/RTP/SAVPF 111",
            f"a=mid:{mid}",
            "a=rtcp-mux",
            "a=sendonly",
            "a=rtpmap:111 opus/48000/2",
            f"a=extmap:1 {rtp.EXT_MID}",
            "a=ssrc:1111 cname:c",
        ]
    return [
        "m=video 9 UDP/TLS/RTP/SAVPF 96 97",
        f"a=mid:{mid}",
        "a=rtcp-mux",
        "a=sendonly",
        "a=rtpmap:96 VP8/90000",
        "a=rtcp-fb:96 nack pli",
        "a=rtpmap:97 rtx/90000",
        "a=fmtp:97 apt=96",
        f"a=extmap:4 {rtp.EXT_MID}",
        f"a=extmap:10 {rtp.EXT_RID}",
        "a=rid:q send",
        "a=rid:h send",
        "a=simulcast:send q;h",
        "a=ssrc-group:FID 1234 5678",
        "a=ssrc:1234 cname:c",
        "a=ssrc:5678 cname:c",
    ]


@st.composite
def near_valid_offers(draw: st.DrawFn) -> str:
    """An offer built from valid sections with lines dropped, replaced and added."""
    lines = ["v=0", "o=- 1 2 IN IP4 127.0.0.1", "s=-", "t=0 0"]
    kinds = draw(st.lists(st.sampled_from(["audio", "video"]), min_size=1, max_size=3))
    mids = [str(i) for i in range(len(kinds))]
    if not draw(chance(5)):
        lines.append("a=group:BUNDLE " + " ".join(draw(st.permutations(mids))))
    for line in (
        "a=ice-ufrag:abcd",
        "a=ice-pwd:abcdefghijklmnopqrstuvwx",
        f"a=fingerprint:sha-256 {FP}",
    ):
        if not draw(chance(10)):
            lines.append(line)
    lines.extend(draw(_SESSION_LINES))
    for kind, mid in zip(kinds, mids, strict=True):
        for line in _good_section(kind, mid):
            roll = draw(st.sampled_from(range(20)))  # 0 (the simplest) keeps the line
            if roll == 17:
                continue  # dropped
            if roll == 18:
                line = draw(_MEDIA_LINES | _M_LINE)  # replaced
            lines.append(line)
            if roll == 19:
                lines.extend(draw(st.lists(_MEDIA_LINES, max_size=3)))  # added
    eol = draw(st.sampled_from(["\r\n", "\n"]))
    return eol.join(lines) + eol


LINE_SOUP = st.lists(_MEDIA_LINES | _M_LINE | _SESSION_LINES.map("\n".join), max_size=30).map(
    lambda ls: "\r\n".join(["v=0", *ls]) + "\r\n"
)


def _check_sdp(sdp: str) -> None:
    try:
        offer = parse(sdp)
    except SdpError as exc:
        assert isinstance(str(exc), str)
        return
    try:
        result = answer_publish(offer, LOCAL)
    except NegotiationError:
        return
    # The answer goes to the client: it must serialize, and parse back.
    answer_text = serialize(result.answer)
    assert parse(answer_text).media is not None
    mids = [a.mid for a in result.accepted]
    assert len(result.answer.media) == len(offer.media)
    for accepted in result.accepted:
        assert accepted.kind in ("audio", "video")
        assert len(accepted.rids) <= 3
    # A renegotiation with the same offer is answered the same way (or refused
    # with a NegotiationError, never anything else).
    try:
        again = answer_publish(offer, LOCAL, previous=result.answer, version=2)
    except NegotiationError:
        return
    assert [a.mid for a in again.accepted] == mids


@fuzz(300)
@given(text())
@example("v=0\r\nm=audio 9 x 0\r\na=rtpmap:0 x")
@example("v=0\nm=video 99999999999999999999 RTP/AVP 96")
@example("v=0\n" + "m=audio 9 RTP/AVP 0\n" * 200)
def test_sdp_parse_arbitrary_text(sdp: str) -> None:
    _check_sdp(sdp)


@fuzz(400)
@given(LINE_SOUP)
def test_sdp_parse_and_answer_line_soup(sdp: str) -> None:
    _check_sdp(sdp)


@fuzz(600)
@given(near_valid_offers())
def test_sdp_answer_publish_near_valid_offers(sdp: str) -> None:
    _check_sdp(sdp)


def test_near_valid_offer_generator_reaches_answers() -> None:
    # The unperturbed offer is answered: the fuzzing above starts from
    # something the server accepts, so answer_publish is exercised deeply.
    lines = ["v=0", "o=- 1 2 IN IP4 127.0.0.1", "s=-", "t=0 0", "a=group:BUNDLE 0 1"]
    lines += [
        "a=ice-ufrag:abcd",
        "a=ice-pwd:abcdefghijklmnopqrstuvwx",
        f"a=fingerprint:sha-256 {FP}",
    ]
    lines += _good_section("audio", "0") + _good_section("video", "1")
    result = answer_publish(parse("\r\n".join(lines) + "\r\n"), LOCAL)
    assert [a.mid for a in result.accepted] == ["0", "1"]
    assert result.accepted[1].rids == ["q", "h"]


# =========================================================================== RTP


@st.composite
def rtp_packets(draw: st.DrawFn) -> bytes:
    """RTP-shaped bytes: plausible flags, CSRCs, extension blocks (one-byte,
    two-byte, other profiles) with lengths that may lie, padding that may lie."""
    b0 = 0x80 | draw(st.integers(0, 0x3F))
    if draw(chance(10)):
        b0 = draw(st.integers(0, 255))
    out = bytearray(struct.pack("!BBHII", b0, draw(st.integers(0, 255)), 1, 2, 3))
    out += draw(st.binary(max_size=4 * (b0 & 0x0F) + 2))
    if b0 & 0x10:
        profile = draw(st.sampled_from([0xBEDE, 0x1000, 0x100F, 0x0000, 0xFFFF]))
        body = draw(
            st.one_of(
                st.binary(max_size=40),
                # Well-formed one-byte elements, then maybe garbage.
                st.lists(
                    st.tuples(st.integers(0, 15), st.integers(0, 15)).map(
                        lambda e: bytes([(e[0] << 4) | e[1]]) + bytes(e[1] + 1)
                    ),
                    max_size=5,
                ).map(b"".join),
                # Two-byte elements.
                st.lists(
                    st.tuples(st.integers(0, 255), st.integers(0, 20)).map(
                        lambda e: bytes([e[0], e[1]]) + bytes(e[1])
                    ),
                    max_size=5,
                ).map(b"".join),
            )
        )
        words = draw(st.sampled_from([(len(body) + 3) // 4, len(body) // 4, 0, 0xFFFF]))
        out += struct.pack("!HH", profile, words) + body
    out += draw(st.binary(max_size=30))
    if b0 & 0x20 and draw(st.booleans()):
        out.append(draw(st.integers(0, 255)))
    cut = draw(st.integers(0, len(out)))
    return bytes(out[: len(out) - cut if draw(chance(6)) else len(out)])


def _check_rtp(data: bytes, ext_ids: list[int]) -> None:
    try:
        header = rtp.parse_header(data)
    except rtp.RtpError:
        return
    n = len(data)
    assert 12 <= header.payload_start <= header.payload_end <= n
    assert header.payload_end == n - header.padding
    if header.ext_start:
        assert 16 <= header.ext_start <= header.ext_end <= header.payload_start
    else:
        assert header.ext_end == 0
    assert 0 <= header.payload_type <= 127
    for ext_id in ext_ids:
        try:
            value = rtp.find_extension(data, header, ext_id)
        except rtp.RtpError:
            continue
        assert value is None or isinstance(value, bytes)
        if value is not None:
            assert len(value) <= header.ext_end - header.ext_start
    try:
        elements = rtp.iter_extensions(data, header)
    except rtp.RtpError:
        return
    for ext_id, value in elements:
        assert 0 < ext_id < 256 and isinstance(value, bytes)


@fuzz(600)
@given(st.binary(max_size=120), st.lists(st.integers(0, 255), max_size=4))
def test_rtp_parse_header_arbitrary_bytes(data: bytes, ext_ids: list[int]) -> None:
    _check_rtp(data, ext_ids)


@fuzz(800)
@given(rtp_packets(), st.lists(st.integers(0, 255), min_size=1, max_size=4))
def test_rtp_parse_header_structured(data: bytes, ext_ids: list[int]) -> None:
    _check_rtp(data, ext_ids)


# =========================================================================== RTCP

U32 = st.integers(0, 2**32 - 1)
REPORT_BLOCKS = st.lists(
    st.builds(
        rtcp.ReportBlock,
        U32,
        st.integers(0, 255),
        st.integers(-(2**23), 2**23 - 1),
        U32,
        U32,
        U32,
        U32,
    ),
    max_size=3,
)
RTCP_BUILT = st.one_of(
    st.builds(
        rtcp.pack_sender_report,
        U32,
        st.integers(0, 2**64 - 1),
        U32,
        U32,
        U32,
        REPORT_BLOCKS,
    ),
    st.builds(rtcp.pack_receiver_report, U32, REPORT_BLOCKS),
    st.builds(rtcp.pack_sdes_cname, U32, st.binary(max_size=40)),
    st.builds(rtcp.pack_bye, st.lists(U32, max_size=4), st.binary(max_size=20)),
    st.builds(rtcp.pack_nack, U32, U32, st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=40)),
    st.builds(rtcp.pack_pli, U32, U32),
    st.builds(
        rtcp.pack_fir,
        U32,
        st.lists(st.tuples(U32, st.integers(0, 255)), min_size=1, max_size=3),
    ),
    st.builds(rtcp.pack_remb, U32, st.integers(0, 2**40), st.lists(U32, max_size=4)),
)
RTCP_PARTS = st.one_of(
    RTCP_BUILT,
    # Hand-made headers for types without a builder (APP, XR, TWCC, unknown FMTs).
    st.builds(
        lambda count, pt, body: (
            struct.pack("!BBH", 0x80 | count, pt, len(body) // 4) + body[: 4 * (len(body) // 4)]
        ),
        st.integers(0, 31),
        st.sampled_from([200, 201, 202, 203, 204, 205, 206, 207, 192, 223]),
        st.binary(min_size=4, max_size=48),
    ),
)


@st.composite
def damaged_compounds(draw: st.DrawFn) -> bytes:
    data = bytearray(b"".join(draw(st.lists(RTCP_PARTS, min_size=1, max_size=4))))
    for _ in range(draw(st.integers(0, 4))):
        action = draw(st.integers(0, 3))
        if action == 0 and data:  # flip bits of one byte
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= draw(st.integers(1, 255))
        elif action == 1 and data:  # truncate
            del data[draw(st.integers(0, len(data) - 1)) :]
        elif action == 2:  # append garbage
            data += draw(st.binary(min_size=1, max_size=12))
        elif action == 3 and data:  # set the padding bit of the first packet
            data[0] |= 0x20
    return bytes(data)


def _check_rtcp(data: bytes) -> None:
    try:
        packets = rtcp.parse_compound(data)
    except rtcp.RtcpError:
        return
    assert packets
    for packet in packets:
        if isinstance(packet, rtcp.Nack):
            assert all(0 <= seq <= 0xFFFF for seq in packet.lost)
        elif isinstance(packet, rtcp.Remb):
            assert packet.bitrate_bps >= 0
        elif isinstance(packet, rtcp.SenderReport | rtcp.ReceiverReport):
            assert len(packet.reports) <= 31


@fuzz(500)
@given(st.binary(max_size=200))
def test_rtcp_parse_compound_arbitrary_bytes(data: bytes) -> None:
    _check_rtcp(data)


@fuzz(300)
@given(st.lists(RTCP_BUILT, min_size=1, max_size=4))
def test_rtcp_built_compounds_parse(parts: list[bytes]) -> None:
    # What our builders write, we read back, one packet per part.
    assert len(rtcp.parse_compound(b"".join(parts))) == len(parts)


@fuzz(800)
@given(damaged_compounds())
def test_rtcp_parse_compound_damaged(data: bytes) -> None:
    _check_rtcp(data)


# =========================================================================== payload formats

PAYLOADS = st.one_of(
    st.binary(max_size=40),
    # VP8-ish: X/I/M/L/T/K bits set, then short tails.
    st.builds(
        lambda b0, ext, tail: bytes([b0, ext]) + tail,
        st.sampled_from([0x90, 0x80, 0x10, 0xB0, 0x97]),
        st.integers(0, 255),
        st.binary(max_size=5),
    ),
    # H.264-ish: STAP-A with sizes that may lie, FU-A, single NAL units.
    st.builds(
        lambda nal, rest: bytes([nal]) + rest,
        st.sampled_from([24, 28, 5, 7, 1, 0x7C, 0x78, 0x65, 25, 29, 0, 31]),
        st.binary(max_size=12),
    ),
)
CODEC_NAMES = st.sampled_from(
    ["vp8", "vp9", "h264", "av1", "opus", "VP8", "video/H264", "video/", "", "x/y/z"]
) | text(max_size=8)


@fuzz(800)
@given(PAYLOADS, CODEC_NAMES, st.sampled_from([bytes, bytearray, memoryview]))
def test_keyframe_detectors_never_raise(payload: bytes, codec: str, kind: type) -> None:
    buf = kind(payload)
    assert isinstance(codecs.is_keyframe(codec, buf), bool)
    assert isinstance(vp8.is_keyframe(buf), bool)
    assert isinstance(h264.is_keyframe(buf), bool)
    assert isinstance(codecs.vp9_is_keyframe(buf), bool)
    assert isinstance(codecs.av1_is_keyframe(buf), bool)
    for nal in h264.split_nal_units(buf):
        assert isinstance(nal, bytes) and nal


@fuzz(600)
@given(PAYLOADS)
def test_vp8_parse_descriptor(payload: bytes) -> None:
    try:
        descriptor = vp8.parse_descriptor(payload)
    except ValueError:
        return
    assert 1 <= descriptor.size <= len(payload)
    assert descriptor.picture_id_bits in (0, 7, 15)
    assert 0 <= descriptor.partition <= 7


FRAME_PACKETS = st.lists(
    st.tuples(st.integers(0, 0xFFFF), st.sampled_from([0, 3000, 6000, 2**32 - 1]), st.booleans()),
    max_size=12,
)


@fuzz(300)
@given(FRAME_PACKETS, st.lists(PAYLOADS, min_size=12, max_size=12))
def test_frame_assemblers_survive_garbage(
    packets: list[tuple[int, int, bool]], payloads: list[bytes]
) -> None:
    # The bot reassembles whatever the server forwards: garbage payloads are
    # counted (invalid / incomplete), never raised.
    for assembler in (vp8.Vp8FrameAssembler(), h264.H264FrameAssembler()):
        for (seq, ts, marker), payload in zip(packets, payloads, strict=False):
            for frame in assembler.feed(seq, ts, marker, payload):
                assert isinstance(frame.data, bytes) and frame.data
        for frame in assembler.flush():
            assert isinstance(frame.data, bytes)


# =========================================================================== relay wire

RELAY_KEY = bytes(range(32))


@fuzz(500)
@given(st.binary(max_size=120))
def test_relay_open_datagram_arbitrary_bytes(data: bytes) -> None:
    try:
        relay_wire.open_datagram(RELAY_KEY, data)
    except relay_wire.RelayError:
        return
    raise AssertionError("a datagram without our tag was accepted")


@fuzz(500)
@given(
    st.integers(0, 255),
    st.integers(0, 255),
    st.integers(0, 2**32 - 1),
    st.binary(max_size=60),
    st.lists(st.tuples(st.integers(0, 200), st.integers(1, 255)), max_size=3),
    st.integers(0, 3),
)
def test_relay_open_datagram_sealed_and_damaged(
    kind: int,
    layer: int,
    channel: int,
    payload: bytes,
    flips: list[tuple[int, int]],
    cut: int,
) -> None:
    sealer = relay_wire.Sealer(RELAY_KEY, 1_700_000_000_000_000, sender=42)
    sealed = sealer.seal(kind, layer, channel, payload)
    data = bytearray(sealed)
    for pos, mask in flips:
        data[pos % len(data)] ^= mask
    if cut:
        del data[-cut:]
    try:
        opened = relay_wire.open_datagram(RELAY_KEY, bytes(data))
    except relay_wire.RelayError:
        assert bytes(data) != sealed or kind not in relay_wire.Kind.ALL
        return
    assert bytes(data) == sealed, "a damaged datagram was accepted"
    assert (opened.kind, opened.layer, opened.channel, opened.sender) == (
        kind,
        layer,
        channel,
        42,
    )
    assert bytes(opened.payload) == payload


# =========================================================================== cluster records


NUMBER = st.one_of(st.integers(), st.floats(), HOSTILE_NUMBERS)
SPEC_CODEC = near_dict(
    {
        "payload_type": rarely(st.integers(0, 127), st.sampled_from([-1, 128]) | NUMBER),
        "name": st.sampled_from(["VP8", "opus", "H264", ""]) | text(max_size=40),
        "clock_rate": rarely(st.sampled_from([90000, 48000]), st.sampled_from([0, 10**7]) | NUMBER),
    },
    {
        "channels": rarely(st.sampled_from([None, 1, 2]), st.sampled_from([9, 0]) | NUMBER),
        "fmtp": text(max_size=20) | text(min_size=1020, max_size=1030),
    },
)
RIDS = st.lists(st.sampled_from(["f", "h", "q"]), unique=True, max_size=3).map(sorted)
NEAR_VALID_SPECS = near_dict(
    {
        "track_id": rarely(st.sampled_from(["TR_x", "TR_y"]), text(max_size=8) | text(60, 70)),
        "kind": rarely(st.sampled_from(["audio", "video"]), st.just("data")),
        "codec": SPEC_CODEC,
    },
    {
        "feedback": st.lists(maybe(st.sampled_from(["nack", "nack pli"])), max_size=3),
        "cname": text(max_size=10),
        "rids": RIDS | st.lists(maybe(st.sampled_from(["f", "h", "q", "x" * 17])), max_size=4),
        "qualities": st.dictionaries(
            st.sampled_from(["f", "h", "q"]) | text(max_size=20),
            maybe(st.sampled_from(["low", "medium", "high"])),
            max_size=3,
        ),
        "sizes": st.dictionaries(
            st.sampled_from(["f", "h", "q"]),
            maybe(st.lists(maybe(st.integers(-1, 17000)), max_size=3)),
            max_size=3,
        ),
        "extension_ids": st.dictionaries(
            st.sampled_from(_URIS) | text(max_size=5),
            maybe(st.integers(-1, 300)),
            max_size=3,
        ),
    },
)


def _check_track_spec(value: Any) -> None:
    try:
        spec = RemoteTrackSpec.from_dict(value)
    except SpecError:
        return
    assert spec.kind in ("audio", "video")
    assert 0 <= spec.codec.payload_type <= 127
    assert len(spec.rids) <= 3
    # What was accepted survives another trip through JSON unchanged.
    assert RemoteTrackSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


@fuzz(400)
@given(JSON_VALUES)
def test_track_spec_from_arbitrary_json(value: Any) -> None:
    _check_track_spec(json.loads(dumps(value)))


@fuzz(800)
@given(NEAR_VALID_SPECS)
def test_track_spec_from_near_valid_records(value: dict[str, Any]) -> None:
    _check_track_spec(json.loads(dumps(value)))


@pytest.mark.parametrize("field", ["payload_type", "clock_rate"])
def test_regression_track_spec_infinite_number(field: str) -> None:
    codec: dict[str, Any] = {"payload_type": 96, "name": "VP8", "clock_rate": 90000}
    codec[field] = float("inf")
    record = json.loads(json.dumps({"track_id": "TR_x", "kind": "video", "codec": codec}))
    with pytest.raises(SpecError):
        RemoteTrackSpec.from_dict(record)


def test_regression_track_record_infinite_layer_width() -> None:
    spec = RemoteTrackSpec("TR_x", "video", Codec(96, "VP8", 90000), frozenset(), "c")
    layer = {"rid": "q", "quality": "low", "width": float("inf"), "height": 180}
    record = json.loads(json.dumps({"id": "TR_x", "media": spec.to_dict(), "layers": [layer]}))
    with pytest.raises(RecordError):
        track_from_record(record)


# What the callers of ParticipantRecord.from_json / from_json_obj catch
# (membership.py reap / participants, rooms.py on a cluster event).
RECORD_ERRORS = (KeyError, TypeError, ValueError)

NEAR_VALID_RECORDS = near_dict(
    {
        "participant_id": st.sampled_from(["PA_x", ""]) | text(max_size=10),
        "node_id": st.just("node-1"),
        "identity": st.just("alice"),
    },
    {
        "name": text(max_size=10),
        "tracks": st.lists(NEAR_VALID_SPECS, max_size=2),
        "rev": st.integers(0, 2**40) | NUMBER | st.sampled_from(["12", "x", "9" * 5000]),
        "relay": st.sampled_from(["127.0.0.1:7000", "x", ""]),
    },
)


def _check_participant_record(raw: str | bytes) -> None:
    try:
        record = ParticipantRecord.from_json(raw)
    except RECORD_ERRORS:
        return
    assert isinstance(record.participant_id, str)
    assert isinstance(record.rev, int)
    assert isinstance(record.tracks, tuple)
    assert ParticipantRecord.from_json(record.to_json()) == record


@fuzz(300)
@given(text() | st.binary())
@example("[" * 100_000)
def test_participant_record_arbitrary_text(raw: str | bytes) -> None:
    _check_participant_record(raw)


@fuzz(300)
@given(JSON_VALUES)
def test_participant_record_arbitrary_json(value: Any) -> None:
    _check_participant_record(dumps(value))


@fuzz(500)
@given(NEAR_VALID_RECORDS)
def test_participant_record_near_valid(value: dict[str, Any]) -> None:
    _check_participant_record(dumps(value))


def test_regression_participant_record_deep_nesting() -> None:
    with pytest.raises(RECORD_ERRORS):
        ParticipantRecord.from_json("[" * 100_000)


def test_regression_participant_record_infinite_rev() -> None:
    raw = '{"participant_id":"PA_x","node_id":"n","identity":"a","rev":Infinity}'
    with pytest.raises(RECORD_ERRORS):
        ParticipantRecord.from_json(raw)


# =========================================================================== tokens

KEYS = KeyStore.dev()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _signed(header: Any, payload: Any, secret: str = DEV_SECRET) -> str:
    signing_input = _b64(dumps(header).encode()) + "." + _b64(dumps(payload).encode())
    tag = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + _b64(tag)


HEADERS = maybe(
    near_dict(
        {"alg": rarely(st.just("HS256"), st.sampled_from(["none", "RS256", "HS512", "hs256"]))},
        {"typ": st.just("JWT"), "kid": text(max_size=5)},
    )
)
NOW = 1_700_000_000
TIMES = rarely(
    st.integers(NOW + 20, NOW + 100_000),
    st.integers(-(2**40), 2**40) | st.floats() | HOSTILE_NUMBERS,
    3,
)
CLAIMS = maybe(
    near_dict(
        {
            "iss": rarely(st.just(DEV_KEY), st.sampled_from(["other", ""])),
            "sub": rarely(st.just("alice"), st.sampled_from(["", "a\nb"]) | text(max_size=140)),
            "room": rarely(st.just("room1"), st.sampled_from(["*", ""]) | text(max_size=140)),
            "exp": TIMES,
        },
        {
            "name": text(max_size=10),
            "nbf": TIMES,
            "iat": TIMES,
            "grants": st.dictionaries(
                st.sampled_from(["publish", "subscribe", "data", "admin", "x"]),
                maybe(st.booleans()),
                max_size=4,
            ),
        },
    )
)


def _check_token(token: Any) -> None:
    try:
        claims = verify_token(token, KEYS, now=NOW)
    except AuthError as exc:
        assert isinstance(exc.message, str) and len(exc.message) < 2000
        assert DEV_SECRET not in exc.message
        return
    assert isinstance(claims, TokenClaims)
    assert claims.api_key == DEV_KEY
    assert claims.identity and claims.room


@fuzz(400)
@given(text(max_size=80) | st.lists(text(max_size=30), min_size=3, max_size=3).map(".".join))
def test_verify_token_arbitrary_text(token: str) -> None:
    _check_token(token)


@fuzz(300)
@given(
    st.lists(
        st.binary(max_size=40).map(_b64) | JSON_VALUES.map(lambda v: _b64(dumps(v).encode())),
        min_size=3,
        max_size=3,
    ).map(".".join)
)
def test_verify_token_garbage_segments(token: str) -> None:
    _check_token(token)


@fuzz(800)
@given(HEADERS, CLAIMS, rarely(st.just(DEV_SECRET), st.just("wrongsecret")))
def test_verify_token_signed_claims(header: Any, claims: Any, secret: str) -> None:
    _check_token(_signed(header, claims, secret))


def test_regression_token_with_lone_surrogate() -> None:
    with pytest.raises(AuthError):
        verify_token("a.b.\udcff", KEYS)


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
def test_regression_token_huge_numeric_claim(claim: str) -> None:
    claims: dict[str, Any] = {"iss": DEV_KEY, "sub": "a", "room": "r", "exp": 1_700_000_100}
    claims[claim] = 10**400
    with pytest.raises(AuthError):
        verify_token(_signed({"alg": "HS256", "typ": "JWT"}, claims), KEYS, now=1_700_000_000)


def test_verify_token_accepts_a_good_signed_token() -> None:
    # The structured strategy signs like issue_token does: make sure a
    # well-formed token passes, so the fuzzing reaches the claim checks.
    token = _signed(
        {"alg": "HS256", "typ": "JWT"},
        {"iss": DEV_KEY, "sub": "alice", "room": "room1", "exp": 1_700_000_100},
    )
    claims = verify_token(token, KEYS, now=NOW)
    assert (claims.identity, claims.room) == ("alice", "room1")
