"""The aiohttp application: WebSocket signaling, health, and the app's lifetime."""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiohttp import web

from sfu.engine import MediaConfig, MediaEngine
from sfu.publisher import MediaLimits
from sfu.transport import TransportConfig
from signaling.auth import AuthError, KeyStore, verify_token
from signaling.rooms import RoomManager
from signaling.session import MAX_FRAME_BYTES, Session
from signaling.web import add_web_routes

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    keys: KeyStore = field(default_factory=KeyStore.dev)
    node_id: str = field(default_factory=lambda: "ND_" + secrets.token_hex(4))
    rtc_hosts: tuple[str, ...] | None = None
    announce_ip: str | None = None
    ice_servers: tuple[str, ...] = ()
    max_participants_per_room: int = 0
    connect_timeout_s: float = 20.0
    limits: MediaLimits = field(default_factory=MediaLimits)
    dev: bool = False

    def media_config(self) -> MediaConfig:
        return MediaConfig(
            transport=TransportConfig(
                host_addresses=self.rtc_hosts,
                announce_ip=self.announce_ip,
                ice_servers=self.ice_servers,
                connect_timeout_s=self.connect_timeout_s,
            ),
            limits=self.limits,
        )


CONFIG = web.AppKey("config", ServerConfig)
ENGINE = web.AppKey("engine", MediaEngine)
ROOMS = web.AppKey("rooms", RoomManager)
SESSIONS = web.AppKey("sessions", set)


def _unauthorized(message: str) -> web.Response:
    return web.json_response({"error": {"code": "unauthorized", "message": message}}, status=401)


async def rtc_handler(request: web.Request) -> web.StreamResponse:
    config = request.app[CONFIG]
    token = request.query.get("access_token", "")
    if not token:
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            token = header[len("Bearer ") :]
    try:
        claims = verify_token(token, config.keys)
    except AuthError as exc:
        return _unauthorized(exc.message)
    auto = request.query.get("auto_subscribe", "1")
    if auto not in ("0", "1"):
        return web.json_response(
            {"error": {"code": "bad_request", "message": "auto_subscribe must be 0 or 1"}},
            status=400,
        )
    ws = web.WebSocketResponse(max_msg_size=MAX_FRAME_BYTES, heartbeat=20.0)
    if not ws.can_prepare(request).ok:
        return web.json_response(
            {
                "error": {
                    "code": "bad_request",
                    "message": "this endpoint needs a WebSocket upgrade",
                }
            },
            status=400,
        )
    await ws.prepare(request)
    session = Session(ws, request.app[ROOMS], claims, auto_subscribe=auto == "1")
    request.app[SESSIONS].add(session)
    try:
        await session.run()
    finally:
        request.app[SESSIONS].discard(session)
    return ws


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "node_id": request.app[CONFIG].node_id})


async def readyz(request: web.Request) -> web.Response:
    return web.json_response({"ready": True, "node_id": request.app[CONFIG].node_id})


async def _media_ctx(app: web.Application) -> AsyncIterator[None]:
    engine = MediaEngine(app[CONFIG].media_config())
    await engine.start()
    app[ENGINE] = engine
    app[ROOMS] = RoomManager(engine, app[CONFIG].node_id, app[CONFIG].max_participants_per_room)
    yield
    for session in list(app[SESSIONS]):
        session.send({"type": "leave", "reason": "server_shutdown"})
        session.close("server_shutdown")
    await engine.stop()


def create_app(config: ServerConfig) -> web.Application:
    app = web.Application(client_max_size=64 * 1024)
    app[CONFIG] = config
    app[SESSIONS] = set()
    app.cleanup_ctx.append(_media_ctx)
    app.router.add_get("/v1/rtc", rtc_handler)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    add_web_routes(app.router, keys=config.keys, dev=config.dev)
    return app
