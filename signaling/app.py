"""The aiohttp application: WebSocket signaling, health, placement, and the
node's lifetime (joining the cluster when Redis is configured, draining on
shutdown)."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import secrets
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace

from aiohttp import web

from sfu.engine import MediaConfig, MediaEngine
from sfu.publisher import MediaLimits
from sfu.relay import Relay
from sfu.transport import TransportConfig
from signaling import messages as m
from signaling.auth import AuthError, KeyStore, verify_token
from signaling.cluster.membership import LocalMembership, Membership, NodeInfo, RedisMembership
from signaling.cluster.placement import DEFAULT_SOFT_LIMIT, choose_node
from signaling.metrics import (
    CONTENT_TYPE,
    NodeCollector,
    SignalingStats,
    make_registry,
    render,
    watch_event_loop,
)
from signaling.ratelimit import AddressLimiter, client_address
from signaling.roomapi import add_room_api
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
    #: Media sockets bind inside this UDP port range (inclusive); None: any port.
    rtc_port_range: tuple[int, int] | None = None
    announce_ip: str | None = None
    ice_servers: tuple[str, ...] = ()
    max_participants_per_room: int = 0
    connect_timeout_s: float = 20.0
    limits: MediaLimits = field(default_factory=MediaLimits)
    dev: bool = False
    #: Cluster: Redis URL (None: one node, in-process membership).
    redis_url: str | None = None
    cluster: str = "default"
    #: Where this node's relay listens for other nodes (bind and announce).
    relay_host: str = "127.0.0.1"
    relay_port: int = 0
    #: The URL clients should use to reach this node (placement answers it).
    advertise_url: str | None = None
    placement_soft_limit: int = DEFAULT_SOFT_LIMIT
    #: How long a draining node waits for its sessions to close.
    drain_timeout_s: float = 5.0
    #: After that, how long it keeps answering /readyz 503 before it stops
    #: listening, so load balancers notice.
    drain_grace_s: float = 2.0
    #: Joins per second (and burst) one remote address may attempt; 0: no limit.
    join_rate_per_s: float = 20.0
    join_burst: int = 50
    #: Reverse proxies whose X-Forwarded-For names the client (CIDRs); the
    #: join limit then counts the client, not the proxy.
    trusted_proxies: tuple[str, ...] = ()
    #: How long a node keeps trying to reach Redis when it starts.
    redis_start_timeout_s: float = 10.0
    #: Serve /metrics on its own port (bound to metrics_host) instead of the
    #: signaling port; None: on the signaling port.
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"

    @property
    def signaling_url(self) -> str:
        return self.advertise_url or f"ws://{self.host}:{self.port}"

    def media_config(self) -> MediaConfig:
        return MediaConfig(
            transport=TransportConfig(
                host_addresses=self.rtc_hosts,
                announce_ip=self.announce_ip,
                ice_servers=self.ice_servers,
                connect_timeout_s=self.connect_timeout_s,
                port_range=self.rtc_port_range,
            ),
            limits=self.limits,
        )


CONFIG = web.AppKey("config", ServerConfig)
ENGINE = web.AppKey("engine", MediaEngine)
ROOMS = web.AppKey("rooms", RoomManager)
SESSIONS = web.AppKey("sessions", set)
MEMBERSHIP = web.AppKey("membership", object)
DRAINING = web.AppKey("draining", dict)
STATS = web.AppKey("signaling_stats", SignalingStats)
JOIN_LIMITER = web.AppKey("join_limiter", object)
TRUSTED_PROXIES = web.AppKey("trusted_proxies", list)
REGISTRY = web.AppKey("metrics_registry", object)


def _unauthorized(message: str) -> web.Response:
    return web.json_response({"error": {"code": "unauthorized", "message": message}}, status=401)


async def rtc_handler(request: web.Request) -> web.StreamResponse:
    if request.app[DRAINING].get("since") is not None:
        return web.json_response(
            {
                "error": {
                    "code": "unavailable",
                    "message": "this node is draining; connect to another node",
                }
            },
            status=503,
        )
    config = request.app[CONFIG]
    limiter = request.app[JOIN_LIMITER]
    address = client_address(
        request.remote or "",
        ", ".join(request.headers.getall("X-Forwarded-For", [])),
        request.app[TRUSTED_PROXIES],
    )
    if isinstance(limiter, AddressLimiter) and not limiter.take(address, time.monotonic()):
        request.app[STATS].error("rate_limited")
        return web.json_response(
            {
                "error": {
                    "code": "rate_limited",
                    "message": f"more than {config.join_rate_per_s:g} joins a second "
                    "from this address",
                }
            },
            status=429,
            headers={"Retry-After": "1"},
        )
    token = request.query.get("access_token", "")
    if not token:
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            token = header[len("Bearer ") :]
    try:
        claims = verify_token(token, config.keys)
    except AuthError as exc:
        request.app[STATS].error("unauthorized")
        return _unauthorized(exc.message)
    resume = request.query.get("resume") or None
    if resume is not None and (
        len(resume) > 64 or not resume.replace("-", "").replace("_", "").isalnum()
    ):
        return web.json_response(
            {"error": {"code": "bad_request", "message": "resume: not a resume token"}},
            status=400,
        )
    if claims.room == "*":
        request.app[STATS].error("forbidden")
        return web.json_response(
            {
                "error": {
                    "code": "forbidden",
                    "message": "room '*' stands for every room (room service tokens); "
                    "it cannot be joined",
                }
            },
            status=403,
        )
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
    session = Session(
        ws,
        request.app[ROOMS],
        claims,
        auto_subscribe=auto == "1",
        stats=request.app[STATS],
        resume_token=resume,
    )
    request.app[STATS].connections_total += 1
    if request.app[DRAINING].get("since") is not None:
        # The drain began while this one was upgrading: it was not told.
        await ws.send_json({"type": "leave", "reason": "migrate"})
        await ws.close()
        return ws
    request.app[SESSIONS].add(session)
    try:
        await session.run()
    finally:
        request.app[SESSIONS].discard(session)
    return ws


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "node_id": request.app[CONFIG].node_id})


async def readyz(request: web.Request) -> web.Response:
    """Ready to accept joins: not draining, and Redis reachable when configured."""
    node_id = request.app[CONFIG].node_id
    reasons = []
    if request.app[DRAINING].get("since") is not None:
        reasons.append("draining")
    membership = request.app.get(MEMBERSHIP)
    if isinstance(membership, RedisMembership) and not membership.connected:
        reasons.append("redis unreachable")
    if reasons:
        return web.json_response(
            {"ready": False, "node_id": node_id, "reasons": reasons}, status=503
        )
    return web.json_response({"ready": True, "node_id": node_id})


async def metrics(request: web.Request) -> web.Response:
    body = render(request.app[REGISTRY])  # type: ignore[arg-type]
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


async def node_info(request: web.Request) -> web.Response:
    """This node: id, load and relay counters (no room or participant names)."""
    rooms = request.app[ROOMS]
    relay = request.app[ENGINE].relay
    participants, downtracks = rooms._load()
    return web.json_response(
        {
            "node_id": request.app[CONFIG].node_id,
            "url": request.app[CONFIG].signaling_url,
            "participants": participants,
            "downtracks": downtracks,
            "rooms": len(rooms.rooms),
            "relay": relay.stats.as_dict() if relay is not None else None,
        }
    )


async def room_node(request: web.Request) -> web.Response:
    """Placement: the node a client should join `room` on (docs/operations.md).
    Needs a token for that room (or an admin token)."""
    config = request.app[CONFIG]
    room = request.match_info["room"]
    header = request.headers.get("Authorization", "")
    token = header[len("Bearer ") :] if header.startswith("Bearer ") else ""
    token = token or request.query.get("access_token", "")
    try:
        claims = verify_token(token, config.keys)
    except AuthError as exc:
        return _unauthorized(exc.message)
    if claims.room != room and not claims.grants.admin:
        return web.json_response(
            {"error": {"code": "forbidden", "message": "the token is for another room"}},
            status=403,
        )
    membership: Membership = request.app[MEMBERSHIP]  # type: ignore[assignment]
    try:
        nodes = await asyncio.wait_for(membership.nodes(), 2.0)
        members: dict[str, int] = {}
        for record in await asyncio.wait_for(membership.participants(room), 2.0):
            members[record.node_id] = members.get(record.node_id, 0) + 1
    except Exception:  # noqa: BLE001 - Redis away: this node is the answer
        nodes, members = [], {}
    chosen = choose_node(nodes, members, config.placement_soft_limit)
    if chosen is None or not chosen.signaling_url:
        return web.json_response(
            {"node_id": config.node_id, "url": config.signaling_url, "participants_in_room": 0}
        )
    return web.json_response(
        {
            "node_id": chosen.node_id,
            "url": chosen.signaling_url,
            "participants_in_room": members.get(chosen.node_id, 0),
        }
    )


async def _connect_membership(config: ServerConfig, membership: RedisMembership) -> bytes:
    """The cluster secret, retrying while Redis comes up (a node may start first)."""
    deadline = time.monotonic() + config.redis_start_timeout_s
    while True:
        try:
            return await membership.cluster_secret()
        except Exception as exc:  # noqa: BLE001 - retried until the deadline
            if time.monotonic() > deadline:
                raise RuntimeError(f"Redis at {config.redis_url} is unreachable: {exc}") from None
            await asyncio.sleep(0.5)


async def _media_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    engine = MediaEngine(config.media_config())
    await engine.start()
    app[ENGINE] = engine
    node = NodeInfo(config.node_id, signaling_url=config.signaling_url)
    membership: Membership
    if config.redis_url:
        redis_membership = RedisMembership(node, config.redis_url, config.cluster)
        membership = redis_membership
        secret = await _connect_membership(config, redis_membership)
        rooms = RoomManager(engine, config.node_id, config.max_participants_per_room, membership)
        relay = Relay(config.node_id, secret, rooms.find_local_media, engine.totals)
        host, port = await relay.start(config.relay_host, config.relay_port)
        engine.relay = relay
        redis_membership.on_secret_change(relay.set_key)
        redis_membership.node = replace(node, relay_host=host, relay_port=port)
        await redis_membership.start()
        logger.info(
            "node %s joined cluster %r (relay on %s:%d)", config.node_id, config.cluster, host, port
        )
    else:
        membership = LocalMembership(node)
        rooms = RoomManager(engine, config.node_id, config.max_participants_per_room, membership)
    await rooms.start()
    app[ROOMS] = rooms
    app[MEMBERSHIP] = membership
    app[REGISTRY] = make_registry(
        NodeCollector(config.node_id, engine, rooms, membership, app[STATS], app[SESSIONS])
    )
    loop_watch = asyncio.get_running_loop().create_task(
        watch_event_loop(app[STATS]), name="loop-lag"
    )
    metrics_runner = None
    if config.metrics_port is not None:
        metrics_app = web.Application()
        metrics_app[REGISTRY] = app[REGISTRY]
        metrics_app.router.add_get("/metrics", metrics)
        metrics_runner = web.AppRunner(metrics_app, access_log=None)
        await metrics_runner.setup()
        await web.TCPSite(metrics_runner, config.metrics_host, config.metrics_port).start()
    yield
    if metrics_runner is not None:
        await metrics_runner.cleanup()
    loop_watch.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await loop_watch
    await rooms.close()
    await membership.close()
    await engine.stop()


async def drain_then_exit(app: web.Application) -> None:
    """SIGTERM: drain while still listening, so /readyz answers 503 and load
    balancers take the node out; after `drain_grace_s`, stop the server
    (aiohttp's shutdown then runs `_drain` again, which finds nothing left)."""
    await _drain(app)
    await asyncio.sleep(app[CONFIG].drain_grace_s)
    logger.info("drained; stopping")

    def stop() -> None:
        raise web.GracefulExit  # a SystemExit: it leaves the event loop

    asyncio.get_running_loop().call_soon(stop)


def install_drain_on_sigterm(app: web.Application) -> None:
    """Replace aiohttp's SIGTERM handler (stop at once) with a drain; a second
    SIGTERM, or SIGINT, still stops at once."""

    async def on_startup(app: web.Application) -> None:
        loop = asyncio.get_running_loop()
        tasks: list[asyncio.Task[None]] = []

        def on_sigterm() -> None:
            if tasks:
                raise web.GracefulExit
            logger.info("SIGTERM: draining")
            tasks.append(loop.create_task(drain_then_exit(app), name="drain"))

        loop.add_signal_handler(signal.SIGTERM, on_sigterm)

    app.on_startup.append(on_startup)


async def _drain(app: web.Application) -> None:
    """Tell every client to reconnect elsewhere (`leave` with reason
    `migrate`) and wait for the sessions to end (their leaving is announced to
    the cluster). Runs once; the cleanup then removes the node."""
    if app[DRAINING].get("since") is not None:
        return
    app[DRAINING]["since"] = time.monotonic()
    sessions = list(app[SESSIONS])
    if sessions:
        logger.info("draining: asking %d clients to migrate", len(sessions))
    config = app[CONFIG]
    # Tell each client where to go: this node stops listening now, so it
    # cannot be asked afterwards. Placement over the other nodes, using what
    # this node knows of each room (which node has how many of its members).
    try:
        others = [
            n
            for n in await asyncio.wait_for(app[MEMBERSHIP].nodes(), 1.0)  # type: ignore[attr-defined]
            if n.node_id != config.node_id
        ]
    except Exception:  # noqa: BLE001 - no advice then: clients retry the same URL
        others = []
    for session in sessions:
        url = None
        participant = session.participant
        if others and participant is not None:
            members: dict[str, int] = {}
            for remote in participant.room.remote.values():
                members[remote.node_id] = members.get(remote.node_id, 0) + 1
            chosen = choose_node(others, members, config.placement_soft_limit)
            url = chosen.signaling_url if chosen is not None else None
        session.send(m.leave("migrate", url))
        session.close("migrate")
    deadline = time.monotonic() + app[CONFIG].drain_timeout_s
    while app[SESSIONS] and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    with contextlib.suppress(Exception):
        for session in list(app[SESSIONS]):
            session.close("migrate")
            if session.participant is not None:
                await app[ROOMS].leave(session.participant, "migrate")
        # Sessions that were waiting to be resumed will not be: this node stops.
        for participant in app[ROOMS].detached():
            await app[ROOMS].leave(participant, "migrate")


def create_app(config: ServerConfig) -> web.Application:
    app = web.Application(client_max_size=64 * 1024)
    app[CONFIG] = config
    app[SESSIONS] = set()
    app[DRAINING] = {}
    app[STATS] = SignalingStats()
    app[TRUSTED_PROXIES] = [ipaddress.ip_network(n, strict=False) for n in config.trusted_proxies]
    app[JOIN_LIMITER] = (
        AddressLimiter(config.join_rate_per_s, config.join_burst) if config.join_rate_per_s else 0
    )
    app.cleanup_ctx.append(_media_ctx)
    app.on_shutdown.append(_drain)
    app.router.add_get("/v1/rtc", rtc_handler)
    app.router.add_get("/v1/node", node_info)
    app.router.add_get("/v1/rooms/{room}/node", room_node)
    if config.metrics_port is None:
        app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    add_web_routes(app.router, keys=config.keys, dev=config.dev)
    add_room_api(app)
    return app
