"""The room service (signaling/roomapi.py) against a real node with real bots:
admin tokens and their scope, listing and describing rooms, removing a
participant, muting a track (media stops and resumes), closing a room, and
the OpenAPI document (valid, and the same paths and methods as the router).

Every answer is checked against the response the OpenAPI document declares
for that operation and status code."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any
from urllib.parse import quote

import aiohttp
import jsonschema
import pytest
import yarl

from signaling.auth import DEV_KEY, DEV_SECRET, Grants, issue_token
from signaling.roomapi import MAX_BODY_BYTES, openapi_document
from tests.integration.conftest import BotFactory, Node

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
DOC = openapi_document()

ROOMS = "/v1/rooms"
ROOM = "/v1/rooms/{room}"
PARTICIPANT = "/v1/rooms/{room}/participants/{identity}"
MUTE = "/v1/rooms/{room}/participants/{identity}/mute"


def admin_token(room: str = "*", identity: str = "ops", **kwargs: Any) -> str:
    return issue_token(DEV_KEY, DEV_SECRET, room, identity, grants=Grants(admin=True), **kwargs)


def user_token(room: str = "room1", identity: str = "someone") -> str:
    return issue_token(DEV_KEY, DEV_SECRET, room, identity, grants=Grants())


def _resolve(ref_or_obj: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in ref_or_obj:
        target: Any = DOC
        for part in ref_or_obj["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        ref_or_obj = target
    return ref_or_obj


def check_documented(template: str, method: str, status: int, body: Any) -> None:
    """`body` is what the OpenAPI document says `method template` answers with `status`."""
    operation = DOC["paths"][template][method.lower()]
    responses = operation["responses"]
    assert str(status) in responses, f"{method} {template} answered {status}, not documented"
    response = _resolve(responses[str(status)])
    schema = response["content"]["application/json"]["schema"]
    # The components ride along so that "#/components/..." references resolve.
    jsonschema.Draft4Validator({"components": DOC["components"], "allOf": [schema]}).validate(body)


async def call(
    node: Node,
    method: str,
    template: str,
    token: str | None = None,
    *,
    body: Any = None,
    data: bytes | str | None = None,
    headers: dict[str, str] | None = None,
    **params: str,
) -> tuple[int, Any]:
    """One request; path parameters are percent-encoded into `template`."""
    path = template.format(**{k: quote(v, safe="") for k, v in params.items()})
    url = yarl.URL(node.url.replace("ws://", "http://", 1) + path, encoded=True)
    all_headers = dict(headers or {})
    if token is not None:
        all_headers["Authorization"] = f"Bearer {token}"
    async with aiohttp.ClientSession() as session:
        async with session.request(
            method, url, json=body, data=data, headers=all_headers
        ) as response:
            answer = await response.json()
            if response.status == 401:
                assert response.headers.get("WWW-Authenticate", "").startswith("Bearer")
            if template.startswith("/v1/rooms"):
                assert response.headers.get("Cache-Control") == "no-store"
            check_documented(template, method, response.status, answer)
            return response.status, answer


def assert_error(answer: Any, code: str, *fragments: str) -> None:
    assert set(answer) == {"error"}
    assert answer["error"]["code"] == code, answer
    for fragment in fragments:
        assert fragment in answer["error"]["message"], answer


async def eventually(condition: Any, what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        await asyncio.sleep(0.05)


# Every room service operation, with arguments that would succeed for an admin.
def _every_operation(room: str = "room1", identity: str = "alice") -> list[tuple[Any, ...]]:
    return [
        ("GET", ROOMS, {}, None),
        ("GET", ROOM, {"room": room}, None),
        ("DELETE", ROOM, {"room": room}, None),
        ("DELETE", PARTICIPANT, {"room": room, "identity": identity}, None),
        ("POST", MUTE, {"room": room, "identity": identity}, {"track_id": "T", "muted": True}),
    ]


# --------------------------------------------------------------------------
# Authentication and scope
# --------------------------------------------------------------------------


async def test_tokens_without_admin_grant_are_forbidden_everywhere(
    node: Node, make_bot: BotFactory
) -> None:
    alice = await make_bot("alice")
    tokens = [
        user_token("room1", "someone"),  # the room's own token, no admin grant
        user_token("*", "someone"),  # "*" means nothing without the grant
        node.token("room1", "publisher", publish=True, subscribe=True),
    ]
    for token in tokens:
        for method, template, params, body in _every_operation():
            status, answer = await call(node, method, template, token, body=body, **params)
            assert status == 403, (method, template)
            assert_error(answer, "forbidden", "admin grant")
    # Nothing happened to the participant.
    await asyncio.sleep(0.1)
    assert not any(m["type"] == "leave" for m in alice.messages)


async def test_missing_invalid_or_expired_tokens_are_unauthorized(node: Node) -> None:
    expired = admin_token(now=time.time() - 3600, ttl_s=60)
    wrong_secret = issue_token(DEV_KEY, "not-the-secret", "*", "ops", grants=Grants(admin=True))
    cases: list[tuple[dict[str, str], str]] = [
        ({}, "missing access token"),
        ({"Authorization": "Basic b3BzOnNlY3JldA=="}, "Bearer"),
        ({"Authorization": "Bearer"}, "missing access token"),
        ({"Authorization": "Bearer not-a-jwt"}, "not a JWT"),
        ({"Authorization": f"Bearer {wrong_secret}"}, "signature does not match"),
        ({"Authorization": f"Bearer {expired}"}, "token expired at"),
    ]
    for headers, reason in cases:
        for method, template, params, body in _every_operation():
            status, answer = await call(
                node, method, template, body=body, headers=headers, **params
            )
            assert status == 401, (headers, method, template)
            assert_error(answer, "unauthorized", reason)
    # The bearer scheme name is case-insensitive (RFC 7235).
    status, _ = await call(node, "GET", ROOMS, headers={"Authorization": f"bearer {admin_token()}"})
    assert status == 200


async def test_an_admin_token_for_one_room_manages_only_that_room(
    node: Node, make_bot: BotFactory
) -> None:
    alice = await make_bot("alice", room="room-a")
    bob = await make_bot("bob", room="room-b")
    token = admin_token("room-a")
    for method, template, params, body in _every_operation("room-b", "bob"):
        status, answer = await call(node, method, template, token, body=body, **params)
        assert status == 403, (method, template)
        if template == ROOMS:
            assert_error(answer, "forbidden", "room '*'")
        else:
            assert_error(answer, "forbidden", "'room-a' only")
    await asyncio.sleep(0.1)
    assert not any(m["type"] == "leave" for m in bob.messages)
    # Its own room: allowed.
    status, answer = await call(node, "GET", ROOM, token, room="room-a")
    assert status == 200
    assert [p["identity"] for p in answer["participants"]] == ["alice"]
    status, answer = await call(node, "DELETE", PARTICIPANT, token, room="room-a", identity="alice")
    assert status == 200
    assert (await alice.wait_for("leave", timeout=5))["reason"] == "removed"


# --------------------------------------------------------------------------
# Listing and describing
# --------------------------------------------------------------------------


async def test_list_and_describe_rooms(node: Node, make_bot: BotFactory) -> None:
    token = admin_token()
    status, answer = await call(node, "GET", ROOMS, token)
    assert (status, answer) == (200, {"rooms": []})

    alice = await make_bot("alice")
    bob = await make_bot("bob")
    carol = await make_bot("carol", room="room2")
    tracks = await alice.publish(audio=True)

    status, answer = await call(node, "GET", ROOMS, token)
    assert status == 200
    assert answer == {
        "rooms": [{"name": "room1", "participants": 2}, {"name": "room2", "participants": 1}]
    }

    status, answer = await call(node, "GET", ROOM, token, room="room1")
    assert status == 200
    assert answer["name"] == "room1"
    by_identity = {p["identity"]: p for p in answer["participants"]}
    assert [p["identity"] for p in answer["participants"]] == ["alice", "bob"]
    assert by_identity["alice"]["id"] == alice.participant_id
    assert by_identity["bob"]["id"] == bob.participant_id
    assert by_identity["alice"]["name"] == "alice"
    assert {p["node"] for p in answer["participants"]} == {node.config.node_id}
    assert by_identity["bob"]["tracks"] == []
    published = {t["id"]: t for t in by_identity["alice"]["tracks"]}
    assert published.keys() == {tracks["mic"], tracks["cam"]}
    mic, cam = published[tracks["mic"]], published[tracks["cam"]]
    assert (mic["kind"], mic["source"], mic["codec"], mic["muted"]) == (
        "audio",
        "microphone",
        "opus",
        False,
    )
    assert (cam["kind"], cam["source"], cam["codec"], cam["simulcast"]) == (
        "video",
        "camera",
        "vp8",
        False,
    )

    status, answer = await call(node, "GET", ROOM, token, room="room2")
    assert status == 200
    assert [p["id"] for p in answer["participants"]] == [carol.participant_id]

    for method in ("GET", "DELETE"):
        status, answer = await call(node, method, ROOM, token, room="nobody-here")
        assert status == 404
        assert_error(answer, "not_found", "nobody-here")


async def test_invalid_path_parameters_and_bodies_are_bad_requests(
    node: Node, make_bot: BotFactory
) -> None:
    token = admin_token()
    alice = await make_bot("alice")
    tracks = await alice.publish(audio=True, video=None)

    for method, template, params, body in _every_operation():
        if "room" not in params:
            continue
        for room, problem in (("r" * 129, "129 characters"), ("a\x01b", "control characters")):
            status, answer = await call(
                node, method, template, token, body=body, **{**params, "room": room}
            )
            assert status == 400, (method, template, room)
            assert_error(answer, "bad_request", "room: ", problem)
        if "identity" in params:
            status, answer = await call(
                node, method, template, token, body=body, **{**params, "identity": "x\ny"}
            )
            assert status == 400
            assert_error(answer, "bad_request", "identity: ", "control characters")
    # 128 characters, slashes and braces are fine (nobody is in such a room).
    for room in ("r" * 128, "a/b", "{x}", "é *"):
        status, answer = await call(node, "GET", ROOM, token, room=room)
        assert status == 404, room
    # Path parameters are checked before the token's scope.
    status, answer = await call(node, "GET", ROOM, admin_token("room1"), room="a\x7f")
    assert status == 400

    mic = tracks["mic"]
    bodies: list[tuple[bytes | str, str]] = [
        (b"", "body: required"),
        ("not json", "not valid JSON"),
        (b"\xff\xfe", "not UTF-8"),
        ("[1, 2]", "expected a JSON object, got an array"),
        ('"muted"', "got a string"),
        ('{"muted": true}', "track_id: required"),
        (f'{{"track_id": "{mic}"}}', "muted: required"),
        (f'{{"track_id": "{mic}", "muted": "yes"}}', "muted: expected true or false, got a string"),
        (f'{{"track_id": "{mic}", "muted": 1}}', "muted: expected true or false, got a number"),
        ('{"track_id": 5, "muted": true}', "track_id: expected a string, got a number"),
        ('{"track_id": "", "muted": true}', "track_id: must not be empty"),
        ('{"track_id": "a\\u0000", "muted": true}', "track_id: must not contain control"),
        ('{"track_id": "\\ud800", "muted": true}', "track_id: contains an unpaired"),
        (f'{{"track_id": "{mic}", "muted": true, "x": 1}}', "unknown field 'x'"),
        (f'{{"track_id": "{mic}", "muted": true, "muted": false}}', "'muted' appears more"),
        ("[" * 5000 + "]" * 5000, f"larger than {MAX_BODY_BYTES} bytes"),
        ("[" * 2000 + "]" * 2000, "body: "),  # deep nesting, under the size limit
        (
            f'{{"track_id": "{mic}", "muted": true, "pad": "{"x" * MAX_BODY_BYTES}"}}',
            f"larger than {MAX_BODY_BYTES} bytes",
        ),
    ]
    for data, problem in bodies:
        status, answer = await call(
            node,
            "POST",
            MUTE,
            token,
            data=data,
            headers={"Content-Type": "application/json"},
            room="room1",
            identity="alice",
        )
        assert status == 400, data[:80]
        assert_error(answer, "bad_request", problem)
    # A body without Content-Length (chunked) is cut off at the limit as well.

    async def chunks() -> Any:
        for _ in range(10):
            yield b" " * 1024

    status, answer = await call(
        node, "POST", MUTE, token, data=chunks(), room="room1", identity="alice"
    )  # type: ignore[arg-type]
    assert status == 400
    assert_error(answer, "bad_request", "larger than")

    # Unknown participant or track: 404.
    for identity, track_id, what in (
        ("nobody", mic, "no participant 'nobody'"),
        ("alice", "TR_unknown", "no track 'TR_unknown'"),
    ):
        status, answer = await call(
            node,
            "POST",
            MUTE,
            token,
            body={"track_id": track_id, "muted": True},
            room="room1",
            identity=identity,
        )
        assert status == 404
        assert_error(answer, "not_found", what)
    status, answer = await call(node, "DELETE", PARTICIPANT, token, room="room1", identity="bob")
    assert status == 404
    assert_error(answer, "not_found", "no participant 'bob'")
    assert not any(m["type"] in ("leave", "track_muted") for m in alice.messages)


# --------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------


async def test_remove_a_participant(node: Node, make_bot: BotFactory) -> None:
    token = admin_token()
    alice = await make_bot("alice")
    bob = await make_bot("bob")
    status, answer = await call(node, "DELETE", PARTICIPANT, token, room="room1", identity="bob")
    assert (status, answer) == (200, {"room": "room1", "removed": "bob"})
    assert (await bob.wait_for("leave", timeout=5))["reason"] == "removed"
    left = await alice.wait_for(
        "participant_left", lambda m: m["participant_id"] == bob.participant_id, timeout=5
    )
    assert left["participant_id"] == bob.participant_id
    assert not any(m["type"] == "leave" for m in alice.messages)

    async def only_alice() -> bool:
        _, answer = await call(node, "GET", ROOM, token, room="room1")
        return [p["identity"] for p in answer["participants"]] == ["alice"]

    await eventually(only_alice, "bob gone from the room")
    status, answer = await call(node, "DELETE", PARTICIPANT, token, room="room1", identity="bob")
    assert status == 404


async def test_mute_stops_the_track_and_unmute_resumes_it(node: Node, make_bot: BotFactory) -> None:
    token = admin_token()
    alice = await make_bot("alice")
    bob = await make_bot("bob")
    tracks = await alice.publish(audio=True)
    mic, cam = tracks["mic"], tracks["cam"]
    await bob.wait_until(
        lambda: all(t in bob.tracks and bob.tracks[t].packets >= 20 for t in (mic, cam)),
        10,
        "bob receives alice's tracks",
    )

    def muted_message(muted: bool) -> Any:
        return lambda m: m["track_id"] == mic and m["muted"] is muted

    status, answer = await call(
        node,
        "POST",
        MUTE,
        token,
        body={"track_id": mic, "muted": True},
        room="room1",
        identity="alice",
    )
    assert (status, answer) == (
        200,
        {"room": "room1", "identity": "alice", "track_id": mic, "muted": True},
    )
    # Everyone hears of it, the publisher included (its own track).
    own = await alice.wait_for("track_muted", muted_message(True), timeout=5)
    assert own["participant_id"] == alice.participant_id
    seen = await bob.wait_for("track_muted", muted_message(True), timeout=5)
    assert seen["participant_id"] == alice.participant_id
    # The server stops forwarding it (a few packets may be in flight) ...
    await asyncio.sleep(0.05)
    before_mic, before_cam = bob.tracks[mic].packets, bob.tracks[cam].packets
    await asyncio.sleep(0.5)
    assert bob.tracks[mic].packets - before_mic <= 3
    # ... and only it.
    assert bob.tracks[cam].packets > before_cam
    _, answer = await call(node, "GET", ROOM, token, room="room1")
    (described,) = [p for p in answer["participants"] if p["identity"] == "alice"]
    assert {t["id"]: t["muted"] for t in described["tracks"]} == {mic: True, cam: False}

    # The publisher cannot undo an operator's mute.
    await alice.send({"type": "mute", "track_id": mic, "muted": False})
    refused = await alice.wait_for("error", lambda m: m["request_type"] == "mute", timeout=5)
    assert refused["code"] == "forbidden" and "operator" in refused["message"]

    status, answer = await call(
        node,
        "POST",
        MUTE,
        token,
        body={"track_id": mic, "muted": False},
        room="room1",
        identity="alice",
    )
    assert status == 200 and answer["muted"] is False
    await alice.wait_for("track_muted", muted_message(False), timeout=5)
    await bob.wait_for("track_muted", muted_message(False), timeout=5)
    resumed_from = bob.tracks[mic].packets
    await bob.wait_until(
        lambda: bob.tracks[mic].packets >= resumed_from + 20, 5, "mic packets flow again"
    )
    _, answer = await call(node, "GET", ROOM, token, room="room1")
    (described,) = [p for p in answer["participants"] if p["identity"] == "alice"]
    assert {t["id"]: t["muted"] for t in described["tracks"]} == {mic: False, cam: False}


async def test_close_a_room(node: Node, make_bot: BotFactory) -> None:
    token = admin_token()
    alice = await make_bot("alice")
    bob = await make_bot("bob")
    carol = await make_bot("carol", room="room2")
    await alice.publish(audio=True, video=None)
    status, answer = await call(node, "DELETE", ROOM, token, room="room1")
    assert (status, answer) == (200, {"closed": "room1"})
    for bot in (alice, bob):
        assert (await bot.wait_for("leave", timeout=5))["reason"] == "room_closed"

    async def room_gone() -> bool:
        status, _ = await call(node, "GET", ROOM, token, room="room1")
        return status == 404

    await eventually(room_gone, "room1 empty")
    status, answer = await call(node, "DELETE", ROOM, token, room="room1")
    assert status == 404
    status, answer = await call(node, "GET", ROOMS, token)
    assert answer == {"rooms": [{"name": "room2", "participants": 1}]}
    assert not any(m["type"] == "leave" for m in carol.messages)


# --------------------------------------------------------------------------
# The OpenAPI document
# --------------------------------------------------------------------------


def _validate_openapi(doc: dict[str, Any]) -> None:
    # schemathesis (a test dependency) bundles the OpenAPI 3.0 meta-schema, a
    # JSON Schema draft 4.
    from schemathesis.specs.openapi import definitions

    jsonschema.Draft4Validator(definitions.OPENAPI_30).validate(doc)


async def test_openapi_document_is_valid_and_matches_the_routes(node: Node) -> None:
    url = node.url.replace("ws://", "http://", 1) + "/v1/openapi.json"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        assert response.content_type == "application/json"
        doc = await response.json()
    assert doc == DOC
    assert doc["openapi"] == "3.0.3"
    _validate_openapi(doc)

    # Every reference resolves.
    def refs(value: Any) -> Any:
        if isinstance(value, dict):
            if "$ref" in value:
                yield value["$ref"]
            for item in value.values():
                yield from refs(item)
        elif isinstance(value, list):
            for item in value:
                yield from refs(item)

    for ref in refs(doc):
        _resolve({"$ref": ref})

    documented: dict[str, set[str]] = {}
    for path, item in doc["paths"].items():
        documented[path] = {method.upper() for method in item if method in HTTP_METHODS}
        # Path parameters: declared exactly for the {names} of the path.
        names = {
            _resolve(p)["name"]
            for op in [item, *(item[m] for m in item if m in HTTP_METHODS)]
            for p in op.get("parameters", [])
            if _resolve(p)["in"] == "path"
        }
        assert names == set(re.findall(r"\{(\w+)\}", path)), path
        for method in item:
            if method in HTTP_METHODS:
                operation = item[method]
                assert "200" in operation["responses"]
                if operation.get("security", doc["security"]):
                    assert "401" in operation["responses"], (method, path)

    registered: dict[str, set[str]] = {}
    for resource in node.app.router.resources():
        registered.setdefault(resource.canonical, set()).update(r.method for r in resource)
    for methods in registered.values():
        # aiohttp answers HEAD for every GET route (add_get's allow_head); it is
        # not documented as an operation of its own.
        if "GET" in methods:
            methods.discard("HEAD")

    assert {
        "/healthz",
        "/readyz",
        "/v1/node",
        "/v1/rooms/{room}/node",
        "/v1/openapi.json",
        "/v1/rooms",
        "/v1/rooms/{room}",
        "/v1/rooms/{room}/participants/{identity}",
        "/v1/rooms/{room}/participants/{identity}/mute",
    } == documented.keys()
    for path, methods in documented.items():
        assert registered.get(path) == methods, path
    # Every route of the room service is documented; the WebSocket and the
    # Prometheus text are not.
    assert {p for p in registered if p.startswith("/v1/rooms")} <= documented.keys()
    assert "/v1/rtc" in registered and "/v1/rtc" not in documented
    assert "/metrics" in registered and "/metrics" not in documented


async def test_the_wildcard_room_cannot_be_joined(node: Node) -> None:
    from sfu_bot.client import Bot

    bot = Bot(node.url, admin_token(), name="ops")
    try:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await bot.connect(timeout=3)
        assert info.value.status == 403
    finally:
        await bot.close()
