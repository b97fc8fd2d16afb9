"""Signaling protocol v1: parsing of client frames and builders for server frames.

This module is deliberately pure (no sockets, no aiohttp) so every rule of the
contract in docs/protocol.md can be tested from tables.  The WebSocket handler
calls :func:`parse_client_message` on each text frame and turns a
:class:`ProtocolError` into an ``error`` frame with :func:`error_from`.

Parsing is strict about what it needs and lenient about what it does not know:
unknown fields are ignored so that newer clients keep working against older
servers, but every field we do read is type- and size-checked, because the
values end up in SDP, logs and other participants' screens.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final, TypeAlias

# --------------------------------------------------------------------------
# Vocabulary
# --------------------------------------------------------------------------

ERROR_CODES: Final = frozenset(
    {
        "bad_request",
        "unauthorized",
        "forbidden",
        "not_found",
        "room_full",
        "unsupported",
        "rate_limited",
        "internal",
    }
)

TRACK_SOURCES: Final = ("camera", "microphone", "screen", "screen_audio", "unknown")
LAYER_QUALITIES: Final = ("low", "medium", "high")
# "off" is only meaningful as a subscriber preference, never as a published layer.
SUBSCRIBE_QUALITIES: Final = ("low", "medium", "high", "off")
CANDIDATE_TARGETS: Final = ("publisher", "subscriber")
TRACK_KINDS: Final = ("audio", "video")

# Limits from the contract.  They bound the work and memory one frame can cost
# the server, and keep ids short enough to be safe in logs and SDP attributes.
MAX_TRACKS: Final = 64
MAX_ID_CHARS: Final = 128
MAX_NAME_CHARS: Final = 256
DEFAULT_MAX_SDP_BYTES: Final = 256 * 1024

# Not in the contract as numbers, but needed to make "never raises anything but
# ProtocolError" and bounded cost true: a candidate line is ~100-300 bytes in
# practice, and video dimensions / m-line indexes far above 65535 are nonsense.
MAX_CANDIDATE_CHARS: Final = 2048
MAX_DIMENSION: Final = 65535
MAX_MLINE_INDEX: Final = 65535
# The frame holds the SDP plus a bounded amount of JSON around it (at most 64
# tracks with short ids), so a frame this much bigger than the SDP limit cannot
# be legitimate; refusing it early avoids parsing megabytes of JSON for nothing.
FRAME_OVERHEAD_BYTES: Final = 64 * 1024

# How much of a client-supplied value we quote back in an error message: enough
# to recognise it, not enough to turn our error frames into an amplifier.
_SHOW_CHARS: Final = 40


class ProtocolError(Exception):
    """A client frame that cannot be accepted.

    ``code`` is one of :data:`ERROR_CODES`; ``message`` names the offending
    field so a client developer can fix the request without reading our code;
    ``request_type`` is the ``type`` of the request when it was readable, so the
    client can match the error to what it sent.
    """

    def __init__(self, code: str, message: str, request_type: str | None = None) -> None:
        if code not in ERROR_CODES:
            # A typo here would put an undocumented code on the wire.
            raise ValueError(f"unknown error code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_type = request_type

    def __repr__(self) -> str:
        return (
            f"ProtocolError(code={self.code!r}, message={self.message!r}, "
            f"request_type={self.request_type!r})"
        )


# --------------------------------------------------------------------------
# Client -> server messages
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LayerSpec:
    """One simulcast encoding the client announces for a published video track."""

    rid: str
    quality: str
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class PublishTrack:
    """Metadata for one m-line of a publish offer, matched to the SDP by ``mid``."""

    mid: str
    source: str = "unknown"
    name: str = ""
    layers: tuple[LayerSpec, ...] = ()


# Each message class carries its wire name as a class attribute (not a field)
# so handlers can tag their own errors with ``msg.type`` without a lookup table.


@dataclass(frozen=True, slots=True)
class Publish:
    sdp: str
    tracks: tuple[PublishTrack, ...]
    type: ClassVar[str] = "publish"


@dataclass(frozen=True, slots=True)
class Unpublish:
    track_id: str
    type: ClassVar[str] = "unpublish"


@dataclass(frozen=True, slots=True)
class SubscriberAnswer:
    sdp: str
    type: ClassVar[str] = "subscriber_answer"


@dataclass(frozen=True, slots=True)
class Subscribe:
    track_ids: tuple[str, ...]
    type: ClassVar[str] = "subscribe"


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    track_ids: tuple[str, ...]
    type: ClassVar[str] = "unsubscribe"


@dataclass(frozen=True, slots=True)
class IceCandidate:
    """An ICE candidate in the browser's ``RTCIceCandidateInit`` shape."""

    candidate: str
    sdp_mid: str | None = None
    sdp_mline_index: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "candidate": self.candidate,
            "sdpMid": self.sdp_mid,
            "sdpMLineIndex": self.sdp_mline_index,
        }


@dataclass(frozen=True, slots=True)
class Candidate:
    target: str
    candidate: IceCandidate | None
    type: ClassVar[str] = "candidate"

    @property
    def is_end_of_candidates(self) -> bool:
        # Browsers signal the end of gathering either with a null candidate or
        # with an empty candidate string (per m-line); both mean the same here.
        return self.candidate is None or self.candidate.candidate == ""


@dataclass(frozen=True, slots=True)
class SetQuality:
    track_id: str
    quality: str
    type: ClassVar[str] = "set_quality"


@dataclass(frozen=True, slots=True)
class SetVideoSize:
    track_id: str
    width: int
    height: int
    type: ClassVar[str] = "set_video_size"


@dataclass(frozen=True, slots=True)
class Mute:
    track_id: str
    muted: bool
    type: ClassVar[str] = "mute"


@dataclass(frozen=True, slots=True)
class Ping:
    ts: float | int
    type: ClassVar[str] = "ping"


@dataclass(frozen=True, slots=True)
class Leave:
    type: ClassVar[str] = "leave"


ClientMessage: TypeAlias = (
    Publish
    | Unpublish
    | SubscriberAnswer
    | Subscribe
    | Unsubscribe
    | Candidate
    | SetQuality
    | SetVideoSize
    | Mute
    | Ping
    | Leave
)


# --------------------------------------------------------------------------
# Field readers.  Each takes the path of the value ("publish.tracks[0].mid")
# so the error can name exactly what is wrong.
# --------------------------------------------------------------------------


def _show(value: Any) -> str:
    """Short, JSON-ish rendering of a client value for an error message."""
    if isinstance(value, str):
        if len(value) > _SHOW_CHARS:
            value = value[:_SHOW_CHARS] + "..."
        return json.dumps(value)
    return json_kind(value)


def json_kind(value: Any) -> str:
    # Describe values in JSON terms: the client author wrote JSON, not Python.
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


class _Reader:
    """Reads fields of one message, raising ProtocolError tagged with its type."""

    __slots__ = ("request_type", "max_sdp_bytes")

    def __init__(self, request_type: str, max_sdp_bytes: int) -> None:
        self.request_type = request_type
        self.max_sdp_bytes = max_sdp_bytes

    def fail(self, path: str, problem: str) -> ProtocolError:
        # Every field-level problem is the client's to fix, hence bad_request.
        return ProtocolError("bad_request", f"{path}: {problem}", self.request_type)

    def get(self, obj: Mapping[str, Any], key: str, path: str) -> Any:
        if key not in obj:
            raise self.fail(path, "required field is missing")
        return obj[key]

    def obj(self, value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path, f"expected an object, got {json_kind(value)}")
        return value

    def string(self, value: Any, path: str) -> str:
        if not isinstance(value, str):
            raise self.fail(path, f"expected a string, got {json_kind(value)}")
        if not _is_encodable(value):
            # JSON "\ud800" escapes decode to lone surrogates, which cannot be
            # encoded as UTF-8; they would blow up later in SDP or log code.
            raise self.fail(path, "contains an unpaired UTF-16 surrogate")
        return value

    def ident(self, value: Any, path: str) -> str:
        s = self.string(value, path)
        if not s:
            raise self.fail(path, "must not be empty")
        if len(s) > MAX_ID_CHARS:
            raise self.fail(path, f"is {len(s)} characters; the limit is {MAX_ID_CHARS}")
        if _has_control_char(s):
            # Ids are copied into SDP attributes and log lines, where a CR/LF
            # would let a client forge lines.
            raise self.fail(path, "must not contain control characters")
        return s

    def name(self, value: Any, path: str) -> str:
        s = self.string(value, path)
        if len(s) > MAX_NAME_CHARS:
            raise self.fail(path, f"is {len(s)} characters; the limit is {MAX_NAME_CHARS}")
        return s

    def enum(self, value: Any, allowed: tuple[str, ...], path: str) -> str:
        if not isinstance(value, str) or value not in allowed:
            raise self.fail(path, f"expected one of {', '.join(allowed)}; got {_show(value)}")
        return value

    def boolean(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(path, f"expected true or false, got {json_kind(value)}")
        return value

    def uint(self, value: Any, path: str, maximum: int) -> int:
        # bool is an int subclass in Python; JSON true is not a number.
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(path, f"expected a non-negative integer, got {json_kind(value)}")
        if value < 0 or value > maximum:
            raise self.fail(path, f"expected an integer from 0 to {maximum}")
        return value

    def number(self, value: Any, path: str) -> float | int:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(path, f"expected a number, got {json_kind(value)}")
        if isinstance(value, float) and not math.isfinite(value):
            raise self.fail(path, "expected a finite number")
        return value

    def array(self, value: Any, path: str, limit: int) -> list[Any]:
        if not isinstance(value, list):
            raise self.fail(path, f"expected an array, got {json_kind(value)}")
        if len(value) > limit:
            raise self.fail(path, f"has {len(value)} entries; the limit is {limit}")
        return value

    def sdp(self, value: Any, path: str) -> str:
        s = self.string(value, path)
        size = len(s.encode("utf-8"))
        if size > self.max_sdp_bytes:
            raise self.fail(path, f"SDP is {size} bytes; the limit is {self.max_sdp_bytes} bytes")
        if not s.startswith("v=0"):
            raise self.fail(path, 'expected an SDP session description starting with "v=0"')
        return s


def _is_encodable(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _has_control_char(s: str) -> bool:
    return any(ord(c) < 0x20 or ord(c) == 0x7F for c in s)


# --------------------------------------------------------------------------
# Per-type parsers
# --------------------------------------------------------------------------


def _parse_layer(r: _Reader, raw: Any, path: str) -> LayerSpec:
    obj = r.obj(raw, path)
    return LayerSpec(
        rid=r.ident(r.get(obj, "rid", f"{path}.rid"), f"{path}.rid"),
        quality=r.enum(
            r.get(obj, "quality", f"{path}.quality"), LAYER_QUALITIES, f"{path}.quality"
        ),
        width=r.uint(r.get(obj, "width", f"{path}.width"), f"{path}.width", MAX_DIMENSION),
        height=r.uint(r.get(obj, "height", f"{path}.height"), f"{path}.height", MAX_DIMENSION),
    )


def _parse_publish_track(r: _Reader, raw: Any, path: str) -> PublishTrack:
    obj = r.obj(raw, path)
    mid = r.ident(r.get(obj, "mid", f"{path}.mid"), f"{path}.mid")
    # Optional fields: absent and null both mean "not given", because JS
    # clients commonly serialise unset properties as null.
    source_raw = obj.get("source")
    source = (
        "unknown" if source_raw is None else r.enum(source_raw, TRACK_SOURCES, f"{path}.source")
    )
    name_raw = obj.get("name")
    name = "" if name_raw is None else r.name(name_raw, f"{path}.name")
    layers: list[LayerSpec] = []
    layers_raw = obj.get("layers")
    if layers_raw is not None:
        # Each quality names one layer for set_quality, so there can be at most
        # one layer per quality; that also bounds the list without a new limit.
        items = r.array(layers_raw, f"{path}.layers", len(LAYER_QUALITIES))
        seen_rids: set[str] = set()
        seen_qualities: set[str] = set()
        for i, item in enumerate(items):
            layer = _parse_layer(r, item, f"{path}.layers[{i}]")
            if layer.rid in seen_rids:
                raise r.fail(f"{path}.layers[{i}].rid", f"duplicate rid {_show(layer.rid)}")
            if layer.quality in seen_qualities:
                raise r.fail(
                    f"{path}.layers[{i}].quality", f"duplicate quality {_show(layer.quality)}"
                )
            seen_rids.add(layer.rid)
            seen_qualities.add(layer.quality)
            layers.append(layer)
    return PublishTrack(mid=mid, source=source, name=name, layers=tuple(layers))


def _parse_publish(r: _Reader, obj: dict[str, Any]) -> Publish:
    sdp = r.sdp(r.get(obj, "sdp", "publish.sdp"), "publish.sdp")
    items = r.array(r.get(obj, "tracks", "publish.tracks"), "publish.tracks", MAX_TRACKS)
    tracks: list[PublishTrack] = []
    seen_mids: set[str] = set()
    for i, item in enumerate(items):
        track = _parse_publish_track(r, item, f"publish.tracks[{i}]")
        if track.mid in seen_mids:
            # Two metadata entries for one m-line would be ambiguous.
            raise r.fail(f"publish.tracks[{i}].mid", f"duplicate mid {_show(track.mid)}")
        seen_mids.add(track.mid)
        tracks.append(track)
    return Publish(sdp=sdp, tracks=tuple(tracks))


def _parse_unpublish(r: _Reader, obj: dict[str, Any]) -> Unpublish:
    return Unpublish(
        track_id=r.ident(r.get(obj, "track_id", "unpublish.track_id"), "unpublish.track_id")
    )


def _parse_subscriber_answer(r: _Reader, obj: dict[str, Any]) -> SubscriberAnswer:
    path = "subscriber_answer.sdp"
    return SubscriberAnswer(sdp=r.sdp(r.get(obj, "sdp", path), path))


def _parse_track_ids(r: _Reader, obj: dict[str, Any], kind: str) -> tuple[str, ...]:
    path = f"{kind}.track_ids"
    items = r.array(r.get(obj, "track_ids", path), path, MAX_TRACKS)
    ids = [r.ident(item, f"{path}[{i}]") for i, item in enumerate(items)]
    # Repeating an id asks for the same thing twice; drop the repeats rather
    # than fail, keeping the client's order.
    return tuple(dict.fromkeys(ids))


def _parse_subscribe(r: _Reader, obj: dict[str, Any]) -> Subscribe:
    return Subscribe(track_ids=_parse_track_ids(r, obj, "subscribe"))


def _parse_unsubscribe(r: _Reader, obj: dict[str, Any]) -> Unsubscribe:
    return Unsubscribe(track_ids=_parse_track_ids(r, obj, "unsubscribe"))


def _parse_candidate(r: _Reader, obj: dict[str, Any]) -> Candidate:
    target = r.enum(r.get(obj, "target", "candidate.target"), CANDIDATE_TARGETS, "candidate.target")
    # The key must be present: null is a meaningful value (end of candidates),
    # so a missing key is more likely a client bug than a deliberate signal.
    raw = r.get(obj, "candidate", "candidate.candidate")
    if raw is None:
        return Candidate(target=target, candidate=None)
    inner = r.obj(raw, "candidate.candidate")
    path = "candidate.candidate.candidate"
    line = r.string(r.get(inner, "candidate", path), path)
    if len(line) > MAX_CANDIDATE_CHARS:
        raise r.fail(path, f"is {len(line)} characters; the limit is {MAX_CANDIDATE_CHARS}")
    if _has_control_char(line):
        # The line is fed to the ICE agent as an SDP attribute; CR/LF would
        # smuggle extra attributes in.
        raise r.fail(path, "must not contain control characters")
    mid_raw = inner.get("sdpMid")
    sdp_mid = None if mid_raw is None else r.ident(mid_raw, "candidate.candidate.sdpMid")
    index_raw = inner.get("sdpMLineIndex")
    sdp_mline_index = (
        None
        if index_raw is None
        else r.uint(index_raw, "candidate.candidate.sdpMLineIndex", MAX_MLINE_INDEX)
    )
    return Candidate(
        target=target,
        candidate=IceCandidate(candidate=line, sdp_mid=sdp_mid, sdp_mline_index=sdp_mline_index),
    )


def _parse_set_quality(r: _Reader, obj: dict[str, Any]) -> SetQuality:
    return SetQuality(
        track_id=r.ident(r.get(obj, "track_id", "set_quality.track_id"), "set_quality.track_id"),
        quality=r.enum(
            r.get(obj, "quality", "set_quality.quality"), SUBSCRIBE_QUALITIES, "set_quality.quality"
        ),
    )


def _parse_set_video_size(r: _Reader, obj: dict[str, Any]) -> SetVideoSize:
    p = "set_video_size"
    return SetVideoSize(
        track_id=r.ident(r.get(obj, "track_id", f"{p}.track_id"), f"{p}.track_id"),
        width=r.uint(r.get(obj, "width", f"{p}.width"), f"{p}.width", MAX_DIMENSION),
        height=r.uint(r.get(obj, "height", f"{p}.height"), f"{p}.height", MAX_DIMENSION),
    )


def _parse_mute(r: _Reader, obj: dict[str, Any]) -> Mute:
    return Mute(
        track_id=r.ident(r.get(obj, "track_id", "mute.track_id"), "mute.track_id"),
        muted=r.boolean(r.get(obj, "muted", "mute.muted"), "mute.muted"),
    )


def _parse_ping(r: _Reader, obj: dict[str, Any]) -> Ping:
    return Ping(ts=r.number(r.get(obj, "ts", "ping.ts"), "ping.ts"))


def _parse_leave(r: _Reader, obj: dict[str, Any]) -> Leave:
    return Leave()


_PARSERS: Final[dict[str, Callable[[_Reader, dict[str, Any]], ClientMessage]]] = {
    "publish": _parse_publish,
    "unpublish": _parse_unpublish,
    "subscriber_answer": _parse_subscriber_answer,
    "subscribe": _parse_subscribe,
    "unsubscribe": _parse_unsubscribe,
    "candidate": _parse_candidate,
    "set_quality": _parse_set_quality,
    "set_video_size": _parse_set_video_size,
    "mute": _parse_mute,
    "ping": _parse_ping,
    "leave": _parse_leave,
}

CLIENT_MESSAGE_TYPES: Final = tuple(sorted(_PARSERS))


def _reject_constant(name: str) -> Any:
    # Python's json accepts NaN/Infinity, but they are not JSON and would make
    # our own replies (pong echoes ts) unparseable by browsers.
    raise ProtocolError("bad_request", f"malformed JSON: {name} is not a valid JSON value")


def parse_client_message(
    text: str | bytes, max_bytes: int = DEFAULT_MAX_SDP_BYTES
) -> ClientMessage:
    """Parse and validate one client frame.

    ``max_bytes`` is the largest SDP accepted (UTF-8 bytes); the frame as a
    whole may be at most ``max_bytes + FRAME_OVERHEAD_BYTES``.  Raises
    :class:`ProtocolError` and nothing else, whatever the input.
    """
    max_frame = max_bytes + FRAME_OVERHEAD_BYTES
    if isinstance(text, bytes | bytearray | memoryview):
        raw = bytes(text)
        if len(raw) > max_frame:
            raise ProtocolError(
                "bad_request", f"frame is {len(raw)} bytes; the limit is {max_frame} bytes"
            )
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ProtocolError(
                "bad_request", f"frame is not valid UTF-8 (byte offset {e.start})"
            ) from None
    elif not isinstance(text, str):
        raise ProtocolError("bad_request", f"frame must be text, got {type(text).__name__}")
    elif len(text) > max_frame:
        # Character count is a lower bound on the UTF-8 size, so this is cheap
        # and never rejects a frame that would fit.
        raise ProtocolError(
            "bad_request", f"frame is {len(text)} characters; the limit is {max_frame} bytes"
        )

    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except ProtocolError:
        raise
    except json.JSONDecodeError as e:
        raise ProtocolError(
            "bad_request", f"malformed JSON at line {e.lineno} column {e.colno}: {e.msg}"
        ) from None
    except RecursionError:
        raise ProtocolError("bad_request", "malformed JSON: nested too deeply") from None
    except ValueError as e:
        # e.g. integers longer than Python's int-conversion digit limit.
        raise ProtocolError("bad_request", f"malformed JSON: {e}") from None

    if not isinstance(data, dict):
        raise ProtocolError("bad_request", f"frame: expected a JSON object, got {json_kind(data)}")
    if "type" not in data:
        raise ProtocolError("bad_request", "type: required field is missing")
    msg_type = data["type"]
    if not isinstance(msg_type, str):
        raise ProtocolError("bad_request", f"type: expected a string, got {json_kind(msg_type)}")
    parser = _PARSERS.get(msg_type)
    if parser is None:
        raise ProtocolError(
            "unsupported",
            f"type: unknown message type {_show(msg_type)}; "
            f"known types are {', '.join(CLIENT_MESSAGE_TYPES)}",
            # Echo only a bounded prefix so a huge bogus type is not reflected.
            msg_type[:MAX_ID_CHARS],
        )
    return parser(_Reader(msg_type, max_bytes), data)


# --------------------------------------------------------------------------
# Server -> client messages
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LayerInfo:
    rid: str
    quality: str
    width: int
    height: int

    def to_json(self) -> dict[str, Any]:
        return {
            "rid": self.rid,
            "quality": self.quality,
            "width": self.width,
            "height": self.height,
        }


@dataclass(frozen=True, slots=True)
class TrackInfo:
    id: str
    kind: str
    source: str
    name: str = ""
    muted: bool = False
    codec: str = ""
    simulcast: bool = False
    layers: tuple[LayerInfo, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "source": self.source,
            "name": self.name,
            "muted": self.muted,
            "codec": self.codec,
            "simulcast": self.simulcast,
            "layers": [layer.to_json() for layer in self.layers],
        }


@dataclass(frozen=True, slots=True)
class ParticipantInfo:
    id: str
    identity: str
    name: str = ""
    tracks: tuple[TrackInfo, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "identity": self.identity,
            "name": self.name,
            "tracks": [t.to_json() for t in self.tracks],
        }

    def to_self_json(self) -> dict[str, Any]:
        # In `joined` the client's own entry carries no tracks: it has not
        # published anything yet on this connection.
        return {"id": self.id, "identity": self.identity, "name": self.name}


def _check(value: str, allowed: Iterable[str], what: str) -> None:
    # Builders are called by our own code; a bad value is a server bug, and
    # failing loudly beats sending clients an undocumented value.
    if value not in allowed:
        raise ValueError(f"invalid {what} {value!r}")


def joined(
    participant: ParticipantInfo,
    room_name: str,
    node_id: str,
    participants: Iterable[ParticipantInfo],
    ice_servers: Iterable[Mapping[str, Any]] = (),
    resume_token: str | None = None,
    resumed: bool = False,
) -> dict[str, Any]:
    """First frame on a new connection: who you are, where, and who is there.
    `resume_token` lets the client resume this session if its WebSocket drops;
    `resumed` says this connection continues an earlier one."""
    message: dict[str, Any] = {
        "type": "joined",
        "participant": participant.to_self_json(),
        "room": {"name": room_name, "node_id": node_id},
        "participants": [p.to_json() for p in participants],
        "ice_servers": [dict(s) for s in ice_servers],
        "resumed": resumed,
    }
    if resume_token is not None:
        message["resume_token"] = resume_token
    return message


def publish_answer(sdp: str, tracks: Mapping[str, str]) -> dict[str, Any]:
    """Answer to a publish offer; ``tracks`` maps each offered mid to its new track id."""
    return {
        "type": "publish_answer",
        "sdp": sdp,
        "tracks": [{"mid": mid, "track_id": tid} for mid, tid in tracks.items()],
    }


def subscriber_offer(sdp: str, tracks: Mapping[str, str]) -> dict[str, Any]:
    """Offer on the subscriber connection; ``tracks`` maps each mid to the track it carries."""
    return {"type": "subscriber_offer", "sdp": sdp, "tracks": dict(tracks)}


def participant_joined(p: ParticipantInfo) -> dict[str, Any]:
    return {"type": "participant_joined", "participant": p.to_json()}


def participant_left(pid: str) -> dict[str, Any]:
    return {"type": "participant_left", "participant_id": pid}


def track_published(pid: str, track: TrackInfo) -> dict[str, Any]:
    return {"type": "track_published", "participant_id": pid, "track": track.to_json()}


def track_unpublished(pid: str, track_id: str) -> dict[str, Any]:
    return {"type": "track_unpublished", "participant_id": pid, "track_id": track_id}


def track_muted(pid: str, track_id: str, muted: bool) -> dict[str, Any]:
    return {"type": "track_muted", "participant_id": pid, "track_id": track_id, "muted": muted}


def layer_changed(track_id: str, quality: str) -> dict[str, Any]:
    _check(quality, SUBSCRIBE_QUALITIES, "quality")
    return {"type": "layer_changed", "track_id": track_id, "quality": quality}


def candidate(target: str, cand: IceCandidate | None) -> dict[str, Any]:
    """Server ICE candidate; same shape as the client's, ``None`` = end of candidates."""
    _check(target, CANDIDATE_TARGETS, "candidate target")
    return {
        "type": "candidate",
        "target": target,
        "candidate": None if cand is None else cand.to_json(),
    }


def pong(ts: float | int) -> dict[str, Any]:
    return {"type": "pong", "ts": ts}


def leave(reason: str, url: str | None = None) -> dict[str, Any]:
    """`url`: with reason `migrate`, the node to reconnect to (placement's answer)."""
    message = {"type": "leave", "reason": reason}
    if url:
        message["url"] = url
    return message


def error(code: str, message: str, request_type: str | None = None) -> dict[str, Any]:
    _check(code, ERROR_CODES, "error code")
    return {"type": "error", "code": code, "message": message, "request_type": request_type}


def error_from(exc: ProtocolError) -> dict[str, Any]:
    """The ``error`` frame for a ProtocolError raised while handling a request."""
    return error(exc.code, exc.message, exc.request_type)
