"""The browser demo page, its static files, and the dev-only token endpoint.

Routes (added by :func:`add_web_routes`):

* ``GET /`` - the demo page (``index.html``).
* ``GET /static/<name>`` - a file of this directory: ``.html``, ``.js``, ``.css``,
  ``.svg``, ``.png`` or ``.ico`` only. Names are looked up in a fixed table built
  at startup, never joined to a path, so no request can reach another file.
* ``GET /v1/dev/token?room=R&identity=I[&name=N]`` - only when the server runs
  with ``--dev``: a token with publish and subscribe grants, signed with the
  server's own key, and the WebSocket URL to use it on. Without ``--dev`` the
  route does not exist (404).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final

from aiohttp import web

from signaling.auth import DEFAULT_TTL_S, Grants, KeyStore, issue_token
from signaling.messages import MAX_ID_CHARS, MAX_NAME_CHARS

WEB_DIR: Final = Path(__file__).resolve().parent

CONTENT_TYPES: Final = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}
_TEXT_SUFFIXES: Final = frozenset({".html", ".js", ".css", ".svg"})

# The page only talks to its own origin (HTTP and WebSocket) and shows local
# media streams; nothing else is allowed to load.
_PAGE_CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "media-src 'self' blob: mediastream:; connect-src 'self' ws: wss:; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'"
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def static_files(directory: Path = WEB_DIR) -> dict[str, Path]:
    """Servable files of ``directory`` by name: regular files with a known suffix."""
    return {
        p.name: p
        for p in sorted(directory.iterdir())
        if p.is_file() and not p.name.startswith(".") and p.suffix in CONTENT_TYPES
    }


def _file_response(path: Path) -> web.Response:
    body = path.read_bytes()
    suffix = path.suffix
    response = web.Response(
        body=body,
        content_type=CONTENT_TYPES[suffix],
        charset="utf-8" if suffix in _TEXT_SUFFIXES else None,
    )
    # Small files that change with the package: always revalidate.
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Content-Type-Options"] = "nosniff"
    if suffix == ".html":
        response.headers["Content-Security-Policy"] = _PAGE_CSP
        response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _not_found(what: str) -> web.Response:
    return web.json_response(
        {"error": {"code": "not_found", "message": f"no such file: {what}"}}, status=404
    )


def _bad_request(message: str) -> web.Response:
    return web.json_response(
        {"error": {"code": "bad_request", "message": message}},
        status=400,
        headers={"Cache-Control": "no-store"},
    )


def _make_static_handlers(files: dict[str, Path]) -> tuple[Handler, Handler]:
    async def index(request: web.Request) -> web.StreamResponse:
        page = files.get("index.html")
        if page is None:  # pragma: no cover - a broken install
            return _not_found("index.html")
        return _file_response(page)

    async def static(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        path = files.get(name)
        if path is None:
            return _not_found(name[:64])
        return _file_response(path)

    return index, static


def _check_ident(value: str | None, field: str) -> str:
    """Room and identity follow the rules ids have everywhere in the protocol."""
    if value is None or value == "":
        raise ValueError(f"{field}: required, must not be empty")
    if len(value) > MAX_ID_CHARS:
        raise ValueError(f"{field}: is {len(value)} characters; the limit is {MAX_ID_CHARS}")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ValueError(f"{field}: must not contain control characters")
    return value


def make_dev_token_handler(keys: KeyStore, ttl_s: int = DEFAULT_TTL_S) -> Handler:
    """``GET /v1/dev/token``: a publish+subscribe token for anyone who asks (dev mode only)."""
    api_key = keys.keys()[0]
    secret = keys.secret_for(api_key)
    assert secret is not None

    async def dev_token(request: web.Request) -> web.StreamResponse:
        query = request.query
        try:
            room = _check_ident(query.get("room"), "room")
            identity = _check_ident(query.get("identity"), "identity")
        except ValueError as exc:
            return _bad_request(str(exc))
        name = query.get("name") or None
        if name is not None and len(name) > MAX_NAME_CHARS:
            return _bad_request(f"name: is {len(name)} characters; the limit is {MAX_NAME_CHARS}")
        token = issue_token(
            api_key,
            secret,
            room,
            identity,
            name=name,
            ttl_s=ttl_s,
            grants=Grants(publish=True, subscribe=True),
        )
        scheme = "wss" if request.secure else "ws"
        return web.json_response(
            {"token": token, "url": f"{scheme}://{request.host}/v1/rtc", "expires_in": ttl_s},
            headers={"Cache-Control": "no-store"},
        )

    return dev_token


def add_web_routes(router: web.UrlDispatcher, *, keys: KeyStore, dev: bool) -> None:
    """The demo page and its files; the token endpoint only when ``dev`` is true."""
    index, static = _make_static_handlers(static_files())
    router.add_get("/", index)
    router.add_get("/static/{name}", static)
    if dev:
        router.add_get("/v1/dev/token", make_dev_token_handler(keys))
