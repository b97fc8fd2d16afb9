"""The demo page's HTTP side without a browser: static files, content types,
no way out of the web directory, and the dev-only token endpoint."""

from __future__ import annotations

import fnmatch
import tomllib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from signaling.app import ServerConfig, create_app
from signaling.auth import KeyStore, verify_token
from signaling.web import WEB_DIR, static_files

REPO = Path(__file__).resolve().parents[2]


@asynccontextmanager
async def serve(dev: bool) -> AsyncIterator[TestClient]:
    config = ServerConfig(keys=KeyStore.dev(), rtc_hosts=("127.0.0.1",), dev=dev)
    async with TestClient(TestServer(create_app(config))) as client:
        yield client


async def test_page_and_static_files_are_served_with_their_content_types() -> None:
    async with serve(dev=False) as client:
        r = await client.get("/")
        assert r.status == 200
        assert r.content_type == "text/html" and r.charset == "utf-8"
        page = await r.text()
        assert '<script type="module" src="/static/app.js">' in page
        assert "Content-Security-Policy" in r.headers
        for name, ctype in (
            ("app.js", "text/javascript"),
            ("sfu-client.js", "text/javascript"),
            ("style.css", "text/css"),
            ("index.html", "text/html"),
        ):
            r = await client.get(f"/static/{name}")
            assert r.status == 200, name
            assert r.content_type == ctype, name
            assert r.headers["X-Content-Type-Options"] == "nosniff"
            assert await r.read() == (WEB_DIR / name).read_bytes()
        client_js = await (await client.get("/static/sfu-client.js")).text()
        assert "export class SfuClient" in client_js


@pytest.mark.parametrize(
    "path",
    [
        "/static/__init__.py",
        "/static/..%2F__init__.py",
        "/static/..%2F..%2Fpyproject.toml",
        "/static/%2e%2e%2fapp.py",
        "/static/../app.py",
        "/static/../../pyproject.toml",
        "/static/",
        "/static/.",
        "/static/nope.js",
        "/static/app.js%00.css",
        "/static/APP.JS",
    ],
)
async def test_nothing_outside_the_page_files_is_served(path: str) -> None:
    async with serve(dev=False) as client:
        r = await client.get(URL(path, encoded=True), allow_redirects=False)
        body = await r.read()
        assert r.status == 404, (path, r.status)
        assert b"import " not in body and b"[project]" not in body


async def test_dev_token_endpoint_does_not_exist_without_dev() -> None:
    async with serve(dev=False) as client:
        r = await client.get("/v1/dev/token", params={"room": "r", "identity": "a"})
        assert r.status == 404


async def test_dev_token_endpoint_issues_a_publish_subscribe_token_for_the_room() -> None:
    async with serve(dev=True) as client:
        r = await client.get(
            "/v1/dev/token", params={"room": "standup", "identity": "ann-1", "name": "Ann"}
        )
        assert r.status == 200
        assert r.headers["Cache-Control"] == "no-store"
        body = await r.json()
        claims = verify_token(body["token"], KeyStore.dev())
        assert (claims.room, claims.identity, claims.name) == ("standup", "ann-1", "Ann")
        assert claims.grants.publish and claims.grants.subscribe and not claims.grants.admin
        assert body["url"] == f"ws://{client.host}:{client.port}/v1/rtc"
        # The token opens the signaling socket of the same server.
        ws = await client.ws_connect(URL(body["url"]).path, params={"access_token": body["token"]})
        joined = await ws.receive_json(timeout=5)
        assert joined["type"] == "joined" and joined["room"]["name"] == "standup"
        await ws.close()


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"identity": "a"}, "room: required"),
        ({"room": "", "identity": "a"}, "room: required"),
        ({"room": "r"}, "identity: required"),
        ({"room": "r", "identity": "a\nb"}, "identity: must not contain control characters"),
        ({"room": "r" * 129, "identity": "a"}, "room: is 129 characters; the limit is 128"),
        ({"room": "r", "identity": "a", "name": "n" * 257}, "name: is 257 characters"),
    ],
)
async def test_dev_token_endpoint_refuses_bad_room_or_identity(
    query: dict[str, str], message: str
) -> None:
    async with serve(dev=True) as client:
        r = await client.get("/v1/dev/token", params=query)
        assert r.status == 400
        body = await r.json()
        assert body["error"]["code"] == "bad_request"
        assert body["error"]["message"].startswith(message), body


def test_page_files_are_package_data() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["signaling.web"]
    files = static_files()
    assert {"index.html", "app.js", "sfu-client.js", "style.css"} <= set(files)
    for name in files:
        assert any(fnmatch.fnmatch(name, p) for p in patterns), f"{name} is not package data"
