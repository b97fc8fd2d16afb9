"""The room service: an HTTP API for operators (admin tokens).

Routes (added by :func:`add_room_api`, documented in docs/protocol.md §14 and,
machine-readably, by ``GET /v1/openapi.json``, which :func:`openapi_document`
builds):

* ``GET /v1/rooms`` - every room with someone in it, on any node.
* ``GET /v1/rooms/{room}`` - who is in a room and what they publish.
* ``DELETE /v1/rooms/{room}`` - end the call for everyone (``leave`` reason
  ``room_closed``).
* ``DELETE /v1/rooms/{room}/participants/{identity}`` - remove one participant
  (``leave`` reason ``removed``).
* ``POST /v1/rooms/{room}/participants/{identity}/mute`` - mute or unmute one
  of its tracks: the server stops forwarding it whatever the client sends.
* ``GET /v1/openapi.json`` - the OpenAPI document of the node's HTTP API.

Authentication: ``Authorization: Bearer <token>`` with the ``admin`` grant.
Scope: an admin token whose ``room`` claim is ``*`` manages every room; an
admin token for room R manages only R (403 otherwise), and only a ``*`` token
may list rooms. Tokens without the admin grant get 403, missing or invalid
ones 401.

Commands (close, remove, mute) are carried out by the node each participant is
connected to, through the membership (this node or another one of the
cluster): they are answered 200 once sent, and take effect a few milliseconds
later. Removing someone does not revoke their token; the client is told not
to reconnect.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, TypeVar

from aiohttp import web

from signaling.auth import AuthError, TokenClaims, verify_token
from signaling.messages import MAX_ID_CHARS, json_kind

if TYPE_CHECKING:
    from signaling.cluster.membership import ParticipantRecord
    from signaling.rooms import RoomManager

logger = logging.getLogger(__name__)

#: The room claim of an admin token that manages every room.
ALL_ROOMS: Final = "*"
#: The largest request body accepted (the mute command).
MAX_BODY_BYTES: Final = 4096
#: How long a read of the cluster's membership (Redis) may take.
MEMBERSHIP_TIMEOUT_S: Final = 2.0

ROOMS_PATH: Final = "/v1/rooms"
# `[^/]+` rather than aiohttp's default `[^{}/]+`: a room or identity may
# contain braces (percent-encoded slashes arrive decoded as "/").
ROOM_PATH: Final = "/v1/rooms/{room:[^/]+}"
PARTICIPANT_PATH: Final = "/v1/rooms/{room:[^/]+}/participants/{identity:[^/]+}"
MUTE_PATH: Final = "/v1/rooms/{room:[^/]+}/participants/{identity:[^/]+}/mute"
OPENAPI_PATH: Final = "/v1/openapi.json"

#: Room names, identities and track ids follow the protocol's rules for ids
#: (signaling.messages `ident`, the dev token endpoint): 1-128 characters,
#: no control characters.
ID_PATTERN: Final = r"^[^\x00-\x1f\x7f]+$"

_NO_STORE: Final = {"Cache-Control": "no-store"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
T = TypeVar("T")


class ApiError(Exception):
    """An error answer: ``{"error": {"code", "message"}}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def response(self) -> web.Response:
        headers = dict(_NO_STORE)
        if self.status == 401:
            # RFC 6750 §3: say which scheme is expected.
            headers["WWW-Authenticate"] = 'Bearer realm="sfu"'
        return web.json_response(
            {"error": {"code": self.code, "message": self.message}},
            status=self.status,
            headers=headers,
        )


def _bad_request(message: str) -> ApiError:
    return ApiError(400, "bad_request", message)


def _ok(body: dict[str, Any]) -> web.Response:
    return web.json_response(body, headers=_NO_STORE)


def _api(handler: Handler) -> Handler:
    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as exc:
            return exc.response()

    return wrapped


# --------------------------------------------------------------------------
# Authentication, scope, input
# --------------------------------------------------------------------------


def _rooms(request: web.Request) -> RoomManager:
    # Imported here: signaling.app imports this module while it is loading.
    from signaling.app import ROOMS

    return request.app[ROOMS]


def _admin(request: web.Request) -> TokenClaims:
    """The claims of a valid admin token, or 401/403."""
    from signaling.app import CONFIG

    header = request.headers.get("Authorization")
    if header is None:
        raise ApiError(401, "unauthorized", "missing access token (Authorization: Bearer <token>)")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise ApiError(401, "unauthorized", "the Authorization header must be 'Bearer <token>'")
    try:
        claims = verify_token(token.strip(), request.app[CONFIG].keys)
    except AuthError as exc:
        raise ApiError(401, "unauthorized", exc.message) from None
    if not claims.grants.admin:
        raise ApiError(403, "forbidden", "the room service needs a token with the admin grant")
    return claims


def _check_scope(claims: TokenClaims, room: str) -> None:
    if claims.room != ALL_ROOMS and claims.room != room:
        raise ApiError(
            403,
            "forbidden",
            f"the token manages room {claims.room!r} only (a token for room '*' manages all)",
        )


def check_id(value: Any, field: str) -> str:
    """A room name, identity or track id: the protocol's rules for ids."""
    if not isinstance(value, str):
        raise _bad_request(f"{field}: expected a string, got {json_kind(value)}")
    if not value:
        raise _bad_request(f"{field}: must not be empty")
    if len(value) > MAX_ID_CHARS:
        raise _bad_request(f"{field}: is {len(value)} characters; the limit is {MAX_ID_CHARS}")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise _bad_request(f"{field}: must not contain control characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _bad_request(f"{field}: contains an unpaired UTF-16 surrogate") from None
    return value


def _path_id(request: web.Request, field: str) -> str:
    return check_id(request.match_info[field], field)


class _DuplicateField(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for key, value in pairs:
        if key in data:
            raise _DuplicateField(key)
        data[key] = value
    return data


async def _read_body(request: web.Request) -> bytes:
    """The request body, refusing more than MAX_BODY_BYTES without reading it all."""
    too_big = f"body: larger than {MAX_BODY_BYTES} bytes"
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise _bad_request(too_big)
    chunks: list[bytes] = []
    size = 0
    while size <= MAX_BODY_BYTES:
        chunk = await request.content.read(MAX_BODY_BYTES + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > MAX_BODY_BYTES:
        raise _bad_request(too_big)
    return b"".join(chunks)


MUTE_FIELDS: Final = ("track_id", "muted")


async def _mute_body(request: web.Request) -> tuple[str, bool]:
    body = await _read_body(request)
    if not body.strip():
        raise _bad_request('body: required, a JSON object {"track_id": "...", "muted": true}')
    try:
        data = json.loads(body.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except UnicodeDecodeError:
        raise _bad_request("body: is not UTF-8") from None
    except _DuplicateField as exc:
        raise _bad_request(f"body: field {str(exc)!r} appears more than once") from None
    except RecursionError:
        raise _bad_request("body: nested too deeply") from None
    except ValueError as exc:
        raise _bad_request(f"body: is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise _bad_request(f"body: expected a JSON object, got {json_kind(data)}")
    unknown = sorted(k for k in data if k not in MUTE_FIELDS)
    if unknown:
        names = ", ".join(repr(k[:MAX_ID_CHARS]) for k in unknown[:5])
        raise _bad_request(f"body: unknown field {names} (expected track_id and muted)")
    for name in MUTE_FIELDS:
        if name not in data:
            raise _bad_request(f"{name}: required field is missing")
    track_id = check_id(data["track_id"], "track_id")
    muted = data["muted"]
    if not isinstance(muted, bool):
        raise _bad_request(f"muted: expected true or false, got {json_kind(muted)}")
    return track_id, muted


# --------------------------------------------------------------------------
# The cluster's view
# --------------------------------------------------------------------------


async def _membership_read(what: str, read: Awaitable[T]) -> T:
    try:
        return await asyncio.wait_for(read, MEMBERSHIP_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - Redis away or slow: the caller may retry
        logger.warning("room service: reading %s failed: %s", what, exc)
        raise ApiError(
            503, "unavailable", f"the cluster state (Redis) did not answer; {what} is unknown"
        ) from None


async def _members(request: web.Request, room: str) -> list[ParticipantRecord]:
    records = await _membership_read("the room", _rooms(request).room_members(room))
    if not records:
        raise ApiError(404, "not_found", f"nobody is in room {room!r}")
    return records


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _track_json(raw: Any) -> dict[str, Any] | None:
    """A track of a participant record (written by any node: checked)."""
    if not isinstance(raw, dict) or not isinstance(raw.get("id"), str) or not raw["id"]:
        return None
    return {
        "id": raw["id"],
        "kind": _text(raw.get("kind")),
        "source": _text(raw.get("source")),
        "name": _text(raw.get("name")),
        "muted": raw.get("muted") is True,
        "codec": _text(raw.get("codec")),
        "simulcast": raw.get("simulcast") is True,
    }


def _participant_json(record: ParticipantRecord) -> dict[str, Any]:
    tracks = (_track_json(raw) for raw in record.tracks)
    return {
        "id": record.participant_id,
        "identity": record.identity,
        "name": record.name,
        "node": record.node_id,
        "tracks": [t for t in tracks if t is not None],
    }


# --------------------------------------------------------------------------
# Handlers
# --------------------------------------------------------------------------


@_api
async def list_rooms(request: web.Request) -> web.StreamResponse:
    """GET /v1/rooms: every room with someone in it (needs a '*' admin token)."""
    claims = _admin(request)
    if claims.room != ALL_ROOMS:
        raise ApiError(
            403,
            "forbidden",
            f"listing rooms needs an admin token for room '*'; this one is for {claims.room!r}",
        )
    counts = await _membership_read("the room list", _rooms(request).list_rooms())
    rooms = [{"name": name, "participants": n} for name, n in sorted(counts.items())]
    return _ok({"rooms": rooms})


@_api
async def get_room(request: web.Request) -> web.StreamResponse:
    """GET /v1/rooms/{room}: the participants of a room and their tracks."""
    claims = _admin(request)
    room = _path_id(request, "room")
    _check_scope(claims, room)
    records = await _members(request, room)
    records.sort(key=lambda r: (r.identity, r.participant_id))
    return _ok({"name": room, "participants": [_participant_json(r) for r in records]})


@_api
async def delete_room(request: web.Request) -> web.StreamResponse:
    """DELETE /v1/rooms/{room}: end the call for everyone."""
    claims = _admin(request)
    room = _path_id(request, "room")
    _check_scope(claims, room)
    records = await _members(request, room)
    _rooms(request).close_room(room)
    logger.info(
        "room service: closing room %r (%d participants) for %r",
        room,
        len(records),
        claims.identity,
    )
    return _ok({"closed": room})


@_api
async def remove_participant(request: web.Request) -> web.StreamResponse:
    """DELETE /v1/rooms/{room}/participants/{identity}: remove one participant."""
    claims = _admin(request)
    room = _path_id(request, "room")
    identity = _path_id(request, "identity")
    _check_scope(claims, room)
    records = await _members(request, room)
    if not any(r.identity == identity for r in records):
        raise ApiError(404, "not_found", f"no participant {identity!r} in room {room!r}")
    _rooms(request).remove_identity(room, identity)
    logger.info("room service: removing %r from room %r for %r", identity, room, claims.identity)
    return _ok({"room": room, "removed": identity})


@_api
async def mute_track(request: web.Request) -> web.StreamResponse:
    """POST /v1/rooms/{room}/participants/{identity}/mute: mute or unmute a track."""
    claims = _admin(request)
    room = _path_id(request, "room")
    identity = _path_id(request, "identity")
    _check_scope(claims, room)
    track_id, muted = await _mute_body(request)
    records = [r for r in await _members(request, room) if r.identity == identity]
    if not records:
        raise ApiError(404, "not_found", f"no participant {identity!r} in room {room!r}")
    if not any(
        isinstance(raw, dict) and raw.get("id") == track_id for r in records for raw in r.tracks
    ):
        raise ApiError(404, "not_found", f"{identity!r} publishes no track {track_id!r}")
    _rooms(request).mute_track(room, identity, track_id, muted)
    logger.info(
        "room service: %s track %s of %r in room %r for %r",
        "muting" if muted else "unmuting",
        track_id,
        identity,
        room,
        claims.identity,
    )
    return _ok({"room": room, "identity": identity, "track_id": track_id, "muted": muted})


async def openapi_json(request: web.Request) -> web.StreamResponse:
    """GET /v1/openapi.json: this document (no token needed)."""
    return web.json_response(openapi_document())


def add_room_api(app: web.Application) -> None:
    """Register the room service routes on `app`."""
    router = app.router
    router.add_get(OPENAPI_PATH, openapi_json)
    router.add_get(ROOMS_PATH, list_rooms)
    router.add_get(ROOM_PATH, get_room)
    router.add_delete(ROOM_PATH, delete_room)
    router.add_delete(PARTICIPANT_PATH, remove_participant)
    router.add_post(MUTE_PATH, mute_track)


# --------------------------------------------------------------------------
# The OpenAPI document
# --------------------------------------------------------------------------


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _answer(description: str, schema_name: str) -> dict[str, Any]:
    return {"description": description, "content": _json_content(_ref("schemas", schema_name))}


def _obj(properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "required": list(properties),
        "properties": properties,
        "additionalProperties": False,
        **extra,
    }


_STR: Final = {"type": "string"}
_INT: Final = {"type": "integer", "minimum": 0}
_BOOL: Final = {"type": "boolean"}


def _id_schema(what: str, example: str) -> dict[str, Any]:
    return {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_ID_CHARS,
        "pattern": ID_PATTERN,
        "description": f"{what}: 1-{MAX_ID_CHARS} characters, no control characters.",
        "example": example,
    }


def _errors(*statuses: int) -> dict[str, Any]:
    names = {
        400: "BadRequest",
        401: "Unauthorized",
        403: "Forbidden",
        404: "NotFound",
        503: "Unavailable",
    }
    return {str(status): _ref("responses", names[status]) for status in statuses}


def _room_api_op(
    summary: str,
    description: str,
    operation_id: str,
    ok: dict[str, Any],
    errors: tuple[int, ...],
    **extra: Any,
) -> dict[str, Any]:
    return {
        "tags": ["room service"],
        "summary": summary,
        "description": description,
        "operationId": operation_id,
        "security": [{"bearerAuth": []}],
        **extra,
        "responses": {"200": ok, **_errors(*errors)},
    }


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.0.3 description of this node's HTTP API (all but the
    WebSocket `/v1/rtc`, `/metrics` and the demo page's routes)."""
    room_param = _ref("parameters", "Room")
    identity_param = _ref("parameters", "Identity")
    scope = (
        "Needs an admin token for this room or for room `*` (403 otherwise; "
        "401 without a valid token)."
    )
    public: list[dict[str, Any]] = []
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "pysfu HTTP API",
            "version": "1",
            "description": (
                "A node's HTTP endpoints beside the signaling WebSocket (docs/protocol.md "
                "§14), among them the room service for operators. Room service calls need "
                "`Authorization: Bearer <token>` with a token that has the `admin` grant; "
                "a token whose `room` claim is `*` manages every room, one for room R "
                "manages only R. Commands are carried out by the node each participant is "
                "connected to, a few milliseconds after the answer."
            ),
        },
        "tags": [
            {"name": "room service", "description": "Operator API (admin tokens)."},
            {"name": "node", "description": "Health, readiness, load and placement."},
        ],
        "security": [{"bearerAuth": []}],
        "paths": {
            "/healthz": {
                "get": {
                    "tags": ["node"],
                    "summary": "Liveness",
                    "operationId": "healthz",
                    "security": public,
                    "responses": {"200": _answer("The process answers.", "Health")},
                }
            },
            "/readyz": {
                "get": {
                    "tags": ["node"],
                    "summary": "Readiness",
                    "description": (
                        "503 while the node drains or cannot reach its Redis: load "
                        "balancers should send no new clients."
                    ),
                    "operationId": "readyz",
                    "security": public,
                    "responses": {
                        "200": _answer("Ready to accept joins.", "Ready"),
                        "503": _answer("Not ready, with the reasons.", "NotReady"),
                    },
                }
            },
            "/v1/node": {
                "get": {
                    "tags": ["node"],
                    "summary": "This node's load and relay counters",
                    "description": "Counts only, no room or participant names.",
                    "operationId": "nodeInfo",
                    "security": public,
                    "responses": {"200": _answer("This node.", "Node")},
                }
            },
            "/v1/rooms/{room}/node": {
                "get": {
                    "tags": ["node"],
                    "summary": "Placement: the node to join a room on",
                    "description": (
                        "Needs a token for that room, or one with the admin grant, as "
                        "`Authorization: Bearer` or `?access_token=`."
                    ),
                    "operationId": "roomNode",
                    "security": [{"bearerAuth": []}, {"accessTokenQuery": []}],
                    "parameters": [
                        {
                            "name": "room",
                            "in": "path",
                            "required": True,
                            "description": (
                                "The room (any token room name; the route takes no "
                                "braces: a room with `{` or `}` gets a plain 404)."
                            ),
                            "schema": {
                                "type": "string",
                                "minLength": 1,
                                "pattern": "^[^{}]+$",
                                "example": "room1",
                            },
                        }
                    ],
                    "responses": {
                        "200": _answer("The node to open the WebSocket on.", "Placement"),
                        **_errors(401, 403),
                    },
                }
            },
            "/v1/openapi.json": {
                "get": {
                    "tags": ["node"],
                    "summary": "This document",
                    "operationId": "openapi",
                    "security": public,
                    "responses": {
                        "200": {
                            "description": "The OpenAPI document.",
                            "content": _json_content({"type": "object"}),
                        }
                    },
                }
            },
            "/v1/rooms": {
                "get": _room_api_op(
                    "List rooms",
                    "Every room with someone in it, on any node of the cluster, sorted by "
                    "name. Needs an admin token for room `*`.",
                    "listRooms",
                    _answer("The rooms.", "RoomList"),
                    (401, 403, 503),
                )
            },
            "/v1/rooms/{room}": {
                "parameters": [room_param],
                "get": _room_api_op(
                    "Describe a room",
                    f"Its participants (on any node) and their tracks. {scope}",
                    "getRoom",
                    _answer("The room.", "Room"),
                    (400, 401, 403, 404, 503),
                ),
                "delete": _room_api_op(
                    "Close a room",
                    "Ends the call for everyone: each client gets `leave` with reason "
                    f"`room_closed` and is disconnected, within milliseconds. {scope}",
                    "closeRoom",
                    _answer("The room is being closed.", "Closed"),
                    (400, 401, 403, 404, 503),
                ),
            },
            "/v1/rooms/{room}/participants/{identity}": {
                "parameters": [room_param, identity_param],
                "delete": _room_api_op(
                    "Remove a participant",
                    "The client gets `leave` with reason `removed` and is disconnected; "
                    "the others see `participant_left`. The token is not revoked. "
                    f"{scope}",
                    "removeParticipant",
                    _answer("The participant is being removed.", "Removed"),
                    (400, 401, 403, 404, 503),
                ),
            },
            "/v1/rooms/{room}/participants/{identity}/mute": {
                "parameters": [room_param, identity_param],
                "post": _room_api_op(
                    "Mute or unmute a track",
                    "The server stops (or resumes) forwarding the track whatever the "
                    "client sends; everyone, the publisher included, gets `track_muted`. "
                    f"404 when the participant or the track is unknown. {scope}",
                    "muteTrack",
                    _answer("The command is sent.", "MuteResult"),
                    (400, 401, 403, 404, 503),
                    requestBody={
                        "required": True,
                        "description": f"At most {MAX_BODY_BYTES} bytes.",
                        "content": _json_content(_ref("schemas", "MuteRequest")),
                    },
                ),
            },
        },
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "An access token (docs/protocol.md §2).",
                },
                "accessTokenQuery": {
                    "type": "apiKey",
                    "in": "query",
                    "name": "access_token",
                    "description": "The access token as a query parameter (placement only).",
                },
            },
            "parameters": {
                "Room": {
                    "name": "room",
                    "in": "path",
                    "required": True,
                    "description": "The room name.",
                    "schema": _id_schema("A room name", "room1"),
                },
                "Identity": {
                    "name": "identity",
                    "in": "path",
                    "required": True,
                    "description": "The participant's identity (its token's `sub`).",
                    "schema": _id_schema("An identity", "alice"),
                },
            },
            "responses": {
                "BadRequest": _answer("A path parameter or the body is invalid.", "Error"),
                "Unauthorized": {
                    **_answer("No token, or the token was refused (the reason).", "Error"),
                    "headers": {"WWW-Authenticate": {"schema": _STR, "description": "`Bearer`."}},
                },
                "Forbidden": _answer(
                    "The token has no admin grant, or is for another room.", "Error"
                ),
                "NotFound": _answer(
                    "Nobody is in the room, or no such participant or track.", "Error"
                ),
                "Unavailable": _answer("The cluster state (Redis) did not answer.", "Error"),
            },
            "schemas": {
                "Error": _obj(
                    {
                        "error": _obj(
                            {
                                "code": {
                                    "type": "string",
                                    "enum": [
                                        "bad_request",
                                        "unauthorized",
                                        "forbidden",
                                        "not_found",
                                        "unavailable",
                                    ],
                                },
                                "message": _STR,
                            }
                        )
                    }
                ),
                "RoomList": _obj(
                    {
                        "rooms": {
                            "type": "array",
                            "items": _obj({"name": _STR, "participants": _INT}),
                        }
                    }
                ),
                "Room": _obj(
                    {
                        "name": _STR,
                        "participants": {"type": "array", "items": _ref("schemas", "Participant")},
                    }
                ),
                "Participant": _obj(
                    {
                        "id": _STR,
                        "identity": _STR,
                        "name": _STR,
                        "node": {"type": "string", "description": "The node it is connected to."},
                        "tracks": {"type": "array", "items": _ref("schemas", "Track")},
                    }
                ),
                "Track": _obj(
                    {
                        "id": _STR,
                        "kind": {"type": "string", "example": "audio"},
                        "source": {"type": "string", "example": "microphone"},
                        "name": _STR,
                        "muted": _BOOL,
                        "codec": {"type": "string", "example": "opus"},
                        "simulcast": _BOOL,
                    }
                ),
                "MuteRequest": _obj(
                    {
                        "track_id": _id_schema("A track id (from GET /v1/rooms/{room})", "TR_x"),
                        "muted": _BOOL,
                    },
                    example={"track_id": "TR_x", "muted": True},
                ),
                "MuteResult": _obj(
                    {"room": _STR, "identity": _STR, "track_id": _STR, "muted": _BOOL}
                ),
                "Closed": _obj({"closed": _STR}),
                "Removed": _obj({"room": _STR, "removed": _STR}),
                "Health": _obj({"status": {"type": "string", "enum": ["ok"]}, "node_id": _STR}),
                "Ready": _obj({"ready": {"type": "boolean", "enum": [True]}, "node_id": _STR}),
                "NotReady": _obj(
                    {
                        "ready": {"type": "boolean", "enum": [False]},
                        "node_id": _STR,
                        "reasons": {"type": "array", "items": _STR},
                    }
                ),
                "Node": _obj(
                    {
                        "node_id": _STR,
                        "url": _STR,
                        "participants": _INT,
                        "downtracks": _INT,
                        "rooms": _INT,
                        "relay": {
                            "type": "object",
                            "nullable": True,
                            "additionalProperties": {"type": "integer"},
                            "description": "The relay's counters; null without a cluster.",
                        },
                    }
                ),
                "Placement": _obj({"node_id": _STR, "url": _STR, "participants_in_room": _INT}),
            },
        },
    }
