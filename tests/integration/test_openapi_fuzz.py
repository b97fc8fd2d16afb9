"""Schemathesis against a live node: every operation of `GET /v1/openapi.json`,
called with generated (valid and invalid) parameters and bodies, must never
answer 5xx, and the node must still be healthy afterwards.

The node runs in a background thread with its own event loop on a free port of
127.0.0.1: schemathesis' calls are synchronous (requests), so they cannot
share the test's event loop. The room `room1` holds a participant record
(identity `alice`, track `TR_x`: the OpenAPI examples), so that the examples
reach the handlers' success paths, not only their 404s."""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from signaling.app import ROOMS, ServerConfig, create_app
from signaling.auth import DEV_KEY, DEV_SECRET, Grants, KeyStore, issue_token
from signaling.cluster.membership import ParticipantRecord
from signaling.roomapi import openapi_document
from tests.integration.conftest import free_port

FUZZ_SETTINGS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
ADMIN_HEADERS = {
    "Authorization": "Bearer "
    + issue_token(DEV_KEY, DEV_SECRET, "*", "fuzzer", grants=Grants(admin=True))
}
LOGGERS = ("aiohttp", "signaling", "sfu")
SEEDED_TRACK = {
    "id": "TR_x",
    "kind": "audio",
    "source": "microphone",
    "name": "",
    "muted": False,
    "codec": "opus",
    "simulcast": False,
    "layers": [],
}


@dataclass
class LiveNode:
    url: str
    app: web.Application
    loop: asyncio.AbstractEventLoop
    errors: list[str]


class _ErrorLog(logging.Handler):
    """Collects what the server logs at ERROR (aiohttp logs a handler's exception)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record.getMessage())


@pytest.fixture(scope="module")
def live_node() -> Iterator[LiveNode]:
    port = free_port()
    config = ServerConfig(
        host="127.0.0.1", port=port, keys=KeyStore.dev(), rtc_hosts=("127.0.0.1",)
    )
    app = create_app(config)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    failure: list[BaseException] = []
    runner: list[web.AppRunner] = []
    errors = _ErrorLog()
    for name in LOGGERS:
        logging.getLogger(name).addHandler(errors)

    async def start() -> None:
        app_runner = web.AppRunner(app, handle_signals=False, access_log=None)
        runner.append(app_runner)
        await app_runner.setup()
        await web.TCPSite(app_runner, "127.0.0.1", port).start()
        record = ParticipantRecord(
            participant_id="PA_seeded",
            node_id=config.node_id,
            identity="alice",
            name="Alice",
            tracks=(SEEDED_TRACK,),
        )
        await app[ROOMS].membership.put_participant("room1", record)

    def serve() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(start())
        except BaseException as exc:  # noqa: BLE001 - reported to the test thread
            failure.append(exc)
            started.set()
            return
        started.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(runner[0].cleanup())
            loop.close()

    thread = threading.Thread(target=serve, name="fuzz-node", daemon=True)
    thread.start()
    assert started.wait(30), "the node did not start within 30 s"
    if failure:
        raise failure[0]
    try:
        yield LiveNode(f"http://127.0.0.1:{port}", app, loop, errors.records)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        for name in LOGGERS:
            logging.getLogger(name).removeHandler(errors)


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    """Straight to 127.0.0.1: no proxy from the environment."""
    with requests.Session() as session:
        session.trust_env = False
        yield session


@pytest.fixture(scope="module")
def api_schema(live_node: LiveNode, http: requests.Session) -> Any:
    response = http.get(f"{live_node.url}/v1/openapi.json", timeout=10)
    assert response.status_code == 200
    schema = schemathesis.openapi.from_dict(response.json())
    # The admin token (room "*") in every generated case; the examples are also
    # sent with the random bearer tokens schemathesis makes up.
    schema.config.update(base_url=live_node.url, headers=ADMIN_HEADERS)
    return schema


def _operations() -> list[str]:
    """ "METHOD /path" of every operation the node documents (the document
    served is the same dict: checked in test_roomapi)."""
    return [
        f"{method.upper()} {path}"
        for path, item in openapi_document()["paths"].items()
        for method in item
        if method in ("get", "put", "post", "delete", "patch", "head", "options", "trace")
    ]


# schemathesis' own pytest integration (`schemathesis.pytest.from_fixture`,
# needed for a schema served by a fixture) fails on pytest 9 (it sets
# `request.node._nodeid`), so the operations are driven here with hypothesis:
# - the documented examples, as generated (random bearer tokens: 401s) and
#   with the admin token (the seeded room: the handlers' success paths);
# - generated valid cases, then invalid ones (path parameters, bodies), with
#   the admin token (set in the schema's config, which as_strategy applies).
@pytest.mark.parametrize("label", _operations())
def test_no_operation_answers_a_server_error(
    label: str, api_schema: Any, http: requests.Session
) -> None:
    method, path = label.split(" ", 1)
    operation = api_schema[path][method]
    statuses: collections.Counter[int] = collections.Counter()

    def run(strategy: Any, headers: dict[str, str] | None) -> None:
        @FUZZ_SETTINGS
        @given(case=strategy)
        def one(case: Any) -> None:
            response = case.call(session=http, headers=headers, timeout=10)
            statuses[response.status_code] += 1
            case.validate_response(response, checks=[not_a_server_error])

        one()

    examples = api_schema.get_strategies_from_examples(operation)
    for strategy in examples:
        run(strategy, None)
        run(strategy, ADMIN_HEADERS)
    run(operation.as_strategy(generation_mode=GenerationMode.POSITIVE), None)
    try:
        run(operation.as_strategy(generation_mode=GenerationMode.NEGATIVE), None)
    except Unsatisfiable:
        # Nothing to make invalid: the operation takes no parameter and no
        # body, and the Authorization header is fixed.
        assert not operation.body and not operation.path_parameters
    assert statuses[200] > 0, f"{label}: never succeeded ({dict(statuses)})"


def test_node_is_healthy_after_fuzzing(live_node: LiveNode, http: requests.Session) -> None:
    response = http.get(f"{live_node.url}/healthz", timeout=5)
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    # No handler raised (aiohttp would have logged "Error handling request").
    assert [e for e in live_node.errors if "Error handling request" in e] == []
