"""The `sfu` command: serve, token, bot."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import secrets
import signal
import sys
import time
from collections.abc import Sequence

from aiohttp import web

from signaling.auth import (
    DEV_KEY,
    DEV_SECRET,
    Grants,
    KeyStore,
    KeyStoreError,
    issue_token,
    parse_duration,
)

logger = logging.getLogger("sfu")


def _install_uvloop() -> str:
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    uvloop.install()
    return "uvloop"


def _load_keys(args: argparse.Namespace) -> KeyStore:
    if args.dev:
        return KeyStore.dev()
    if args.keys:
        return KeyStore.from_file(args.keys)
    env = os.environ.get("SFU_KEYS", "")
    if env:
        return KeyStore.from_env(env)
    raise KeyStoreError("no API keys: pass --keys FILE, set SFU_KEYS=key:secret, or use --dev")


def cmd_serve(args: argparse.Namespace) -> int:
    from sfu.publisher import MediaLimits
    from signaling.accesslog import AccessLogger
    from signaling.app import ServerConfig, create_app, install_drain_on_sigterm
    from signaling.logs import configure as configure_logging

    try:
        keys = _load_keys(args)
    except (KeyStoreError, OSError) as exc:
        print(f"sfu serve: {exc}", file=sys.stderr)
        return 2
    node_id = args.node_id or "ND_" + secrets.token_hex(4)
    configure_logging(
        level=args.log_level,
        fmt=args.log_format,
        node_id=node_id,
        # The dev secret is public and logged on purpose; real ones never are.
        secrets=[] if args.dev else [keys.secret_for(k) or "" for k in keys.keys()],
    )
    # aioice logs every connectivity check at INFO: useful when debugging ICE only.
    logging.getLogger("aioice").setLevel(max(logging.WARNING, logging.getLogger().level))
    if args.workers < 1:
        print("sfu serve: --workers must be at least 1", file=sys.stderr)
        return 2
    if args.workers > 1:
        if not args.redis_url:
            print(
                "sfu serve: --workers N > 1 makes N cluster nodes, which share state in "
                "Redis: pass --redis-url",
                file=sys.stderr,
            )
            return 2
        from signaling.workers import run_workers

        return run_workers(
            list(args.serve_argv),
            workers=args.workers,
            node_id_base=node_id,
            relay_port=args.relay_port,
            metrics_port=args.metrics_port,
        )
    if args.relay_host in ("0.0.0.0", "::", ""):
        print(
            "sfu serve: --relay-host is where other nodes reach this one: name an address, "
            "not a wildcard",
            file=sys.stderr,
        )
        return 2
    loop_name = _install_uvloop()
    config = ServerConfig(
        host=args.host,
        port=args.port,
        keys=keys,
        rtc_hosts=tuple(args.rtc_host) if args.rtc_host else None,
        rtc_port_range=args.rtc_ports,
        announce_ip=args.announce_ip,
        ice_servers=tuple(args.stun),
        max_participants_per_room=args.max_participants,
        dev=args.dev,
        redis_url=args.redis_url,
        cluster=args.cluster,
        relay_host=args.relay_host,
        relay_port=args.relay_port,
        advertise_url=args.advertise_url,
        metrics_port=args.metrics_port,
        join_rate_per_s=args.join_rate,
        trusted_proxies=tuple(args.trusted_proxy),
        limits=MediaLimits(max_tracks_per_publisher=args.max_tracks),
        metrics_host=args.metrics_host,
        node_id=node_id,
    )
    if args.dev:
        logger.warning(
            "DEV MODE: API key %r, secret %r. Never use --dev on a reachable server.",
            DEV_KEY,
            DEV_SECRET,
        )
    logger.info(
        "node %s on http://%s:%d (event loop: %s; media on %s%s)",
        config.node_id,
        args.host,
        args.port,
        loop_name,
        ", ".join(config.rtc_hosts) if config.rtc_hosts else "all host addresses",
        f", announced as {args.announce_ip}" if args.announce_ip else "",
    )
    app = create_app(config)
    install_drain_on_sigterm(app)
    web.run_app(
        app,
        host=args.host,
        port=args.port,
        print=None,
        handle_signals=True,
        shutdown_timeout=5,
        reuse_port=args.reuse_port or None,
        access_log_class=AccessLogger,
    )
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    if args.dev or not (args.key or os.environ.get("SFU_KEYS") or args.keys):
        key, secret = DEV_KEY, DEV_SECRET
    else:
        store = (
            KeyStore.from_file(args.keys)
            if args.keys
            else KeyStore.from_env(os.environ["SFU_KEYS"])
        )
        key = args.key or next(iter(store.keys()))
        secret = store.secret_for(key)
        if secret is None:
            print(f"sfu token: unknown API key {key!r}", file=sys.stderr)
            return 2
    grants = Grants(
        publish=not args.no_publish, subscribe=not args.no_subscribe, data=True, admin=args.admin
    )
    print(
        issue_token(
            key,
            secret,
            args.room,
            args.identity,
            name=args.name,
            ttl_s=parse_duration(args.ttl),
            grants=grants,
        )
    )
    return 0


async def placement(url: str, room: str, token: str) -> str:
    """Where to rejoin `room`: the node GET /v1/rooms/{room}/node names, asked
    of the node at `url` (behind a load balancer that may be any node); the
    same URL if the answer does not come."""
    import aiohttp

    http_url = url.replace("ws://", "http://", 1).replace("wss://", "https://", 1).rstrip("/")
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as http:
            async with http.get(
                f"{http_url}/v1/rooms/{room}/node", headers={"Authorization": f"Bearer {token}"}
            ) as response:
                if response.status == 200:
                    return str((await response.json())["url"])
    except (aiohttp.ClientError, TimeoutError, KeyError, ValueError):
        pass
    return url


def cmd_bot(args: argparse.Namespace) -> int:
    from sfu_bot.client import Bot, BotError

    logging.basicConfig(level=getattr(logging, args.log_level.upper()))
    if args.simulcast and args.codec != "vp8":
        print("sfu bot: --simulcast publishes VP8 layers; drop --codec", file=sys.stderr)
        return 2
    token = args.token or issue_token(
        DEV_KEY, DEV_SECRET, args.room, args.identity, name=args.identity
    )
    deadline = time.monotonic() + args.duration

    async def session(url: str, stop: asyncio.Event) -> str | None:
        """One connection; returns the URL to reconnect to when the node
        drains (`leave` with reason `migrate`), None when done."""
        bot = Bot(
            url, token, rtc_hosts=tuple(args.rtc_host), name=args.identity, decode=args.decode
        )
        try:
            joined = await bot.connect()
            print(
                json.dumps(
                    {
                        "joined": joined["room"],
                        "participant": joined["participant"],
                    }
                ),
                flush=True,
            )
            if args.mode == "publish":
                tracks = await bot.publish(
                    audio=not args.no_audio,
                    video=None if args.no_video else args.codec,
                    width=args.width,
                    height=args.height,
                    fps=args.fps,
                    bitrate_bps=args.bitrate,
                    simulcast=args.simulcast,
                )
                print(json.dumps({"published": tracks}), flush=True)
            migrate = asyncio.ensure_future(
                bot.wait_for("leave", lambda m: m.get("reason") == "migrate", timeout=1e9)
            )
            stopped = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait(
                    {migrate, stopped},
                    timeout=None if args.duration <= 0 else max(0.0, deadline - time.monotonic()),
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                for waiter in (migrate, stopped):
                    waiter.cancel()
            if migrate.done() and not migrate.cancelled() and migrate.exception() is None:
                print(json.dumps({"migrating": True}), flush=True)
                # The draining node names where to go; else ask placement
                # (through a load balancer, any node answers).
                return migrate.result().get("url") or await placement(url, args.room, token)
            return None
        finally:
            print(json.dumps(bot.stats()), flush=True)
            await bot.leave()

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        url: str | None = args.url
        attempts = 0
        while url is not None and not stop.is_set():
            if args.duration > 0 and time.monotonic() >= deadline:
                break
            try:
                url = await session(url, stop)
                attempts = 0
            except (OSError, BotError) as exc:
                attempts += 1
                if attempts > 5:
                    raise
                print(json.dumps({"reconnecting": str(exc)}), flush=True)
                await asyncio.sleep(0.5 * attempts)

    asyncio.run(run())
    return 0


def network(text: str) -> str:
    import ipaddress

    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an address or CIDR") from None


def port_range(text: str) -> tuple[int, int]:
    low, sep, high = text.partition("-")
    try:
        lo, hi = int(low), int(high)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not MIN-MAX") from None
    if not sep or not 1024 <= lo <= hi <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: want MIN-MAX with 1024 <= MIN <= MAX <= 65535")
    return lo, hi


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sfu", description="A WebRTC SFU in Python.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run a node")
    serve.add_argument("--host", default="127.0.0.1", help="signaling bind address")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument(
        "--rtc-host",
        action="append",
        default=[],
        metavar="IP",
        help="address media binds and advertises (repeatable; default: every host address; "
        "loopback is only used when named here)",
    )
    serve.add_argument(
        "--announce-ip", help="advertise this address in candidates (NAT, containers)"
    )
    serve.add_argument(
        "--rtc-ports",
        type=port_range,
        metavar="MIN-MAX",
        help="UDP ports media binds (e.g. 50000-60000; two per participant); default: any",
    )
    serve.add_argument(
        "--stun",
        action="append",
        default=[],
        metavar="stun:HOST:PORT",
        help="STUN server (none by default)",
    )
    serve.add_argument(
        "--dev", action="store_true", help="dev mode: API key devkey / secret devsecret"
    )
    serve.add_argument("--keys", metavar="FILE", help="API keys file: one 'key: secret' per line")
    serve.add_argument("--node-id", help="this node's id (default: random)")
    serve.add_argument("--max-participants", type=int, default=0, help="per room; 0 = no limit")
    serve.add_argument(
        "--max-tracks", type=int, default=16, help="tracks one participant may publish"
    )
    serve.add_argument(
        "--trusted-proxy",
        action="append",
        default=[],
        type=network,
        metavar="CIDR",
        help="a reverse proxy whose X-Forwarded-For names the client (repeatable)",
    )
    serve.add_argument(
        "--join-rate",
        type=float,
        default=20.0,
        metavar="PER_S",
        help="joins a second one address may attempt (burst 50); 0 = no limit",
    )
    serve.add_argument("--log-level", default="info")
    serve.add_argument(
        "--log-format",
        choices=["text", "json"],
        default="text",
        help="text lines, or one JSON object per line (ts, level, logger, msg, node, "
        "room, participant)",
    )
    serve.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve /metrics on this port instead of the signaling port",
    )
    serve.add_argument(
        "--metrics-host", default="127.0.0.1", help="address of --metrics-port (default 127.0.0.1)"
    )
    cluster = serve.add_argument_group("cluster (docs/operations.md)")
    cluster.add_argument(
        "--redis-url",
        default=os.environ.get("SFU_REDIS_URL"),
        metavar="URL",
        help="join a cluster whose state is in this Redis (redis://host:port/db); "
        "default: one node, no Redis (env SFU_REDIS_URL)",
    )
    cluster.add_argument(
        "--cluster", default="default", help="cluster name: the Redis key prefix sfu:NAME:"
    )
    cluster.add_argument(
        "--relay-host",
        default="127.0.0.1",
        metavar="IP",
        help="address other nodes send relayed media to (bound and announced)",
    )
    cluster.add_argument(
        "--relay-port", type=int, default=0, help="UDP port of the relay (0: any free port)"
    )
    cluster.add_argument(
        "--advertise-url",
        metavar="URL",
        help="the URL clients reach this node at, given out by placement (default ws://HOST:PORT)",
    )
    cluster.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="run N node processes behind one signaling port (needs --redis-url)",
    )
    cluster.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    serve.set_defaults(func=cmd_serve)

    token = sub.add_parser("token", help="print an access token")
    token.add_argument("--room", required=True)
    token.add_argument("--identity", required=True)
    token.add_argument("--name")
    token.add_argument("--ttl", default="6h")
    token.add_argument("--no-publish", action="store_true")
    token.add_argument("--no-subscribe", action="store_true")
    token.add_argument("--admin", action="store_true")
    token.add_argument("--keys", metavar="FILE")
    token.add_argument("--key", help="which API key signs (default: the first)")
    token.add_argument("--dev", action="store_true", help="sign with the dev key")
    token.set_defaults(func=cmd_token)

    bot = sub.add_parser("bot", help="run a headless client")
    bot.add_argument("mode", choices=["publish", "subscribe"])
    bot.add_argument("--url", default="ws://127.0.0.1:8080")
    bot.add_argument("--room", default="demo")
    bot.add_argument("--identity", default="bot")
    bot.add_argument("--token", help="access token (default: a dev token)")
    bot.add_argument("--rtc-host", action="append", default=None, metavar="IP")
    bot.add_argument("--codec", default="vp8", choices=["vp8", "h264"])
    bot.add_argument("--width", type=int, default=640)
    bot.add_argument("--height", type=int, default=360)
    bot.add_argument("--fps", type=int, default=30)
    bot.add_argument("--bitrate", type=int, default=800_000)
    bot.add_argument(
        "--simulcast",
        action="store_true",
        help="publish three VP8 layers (320x180, 640x360, 1280x720) like a browser",
    )
    bot.add_argument("--no-audio", action="store_true")
    bot.add_argument("--no-video", action="store_true")
    bot.add_argument(
        "--decode", action="store_true", help="decode received video and read frame counters"
    )
    bot.add_argument("--duration", type=float, default=0, help="seconds; 0 = until Ctrl-C")
    bot.add_argument("--log-level", default="warning")
    bot.set_defaults(func=cmd_bot)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    # The supervisor of --workers re-runs `serve` with the same options.
    args.serve_argv = argv[argv.index("serve") + 1 :] if "serve" in argv else []
    if getattr(args, "rtc_host", None) is None:
        args.rtc_host = ["127.0.0.1"]
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
