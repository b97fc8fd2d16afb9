"""Two headless Chromium pages call each other through `sfu serve --dev`.

Run by tests/browser/test_chromium_call.py inside a loopback-only network
namespace (``unshare -n``); it refuses to start a browser anywhere else, so
Chromium can never reach this machine's other interfaces or send mDNS.

Writes ``result.json`` (checks with clear messages, diagnostics), screenshots
of each page's grid, the server log and each page's console log to ``--out``.

Checks, in order:

* ``decode_each_other``: each page decodes the other's video (framesDecoded grows).
* ``high_initial``: selecting "high" on a tile shows the 1280-wide layer within 10 s
  (the publisher's top layer needs some bandwidth estimate first).
* ``switch_low``: selecting "low" drops the decoded width to 320 within 5 s.
* ``switch_back_high``: selecting "high" brings it back to 1280 within 5 s.
* ``mute_shown``: bob stops his camera; alice's tile shows "muted".
* ``leave_removes_tile``: bob leaves; his tile disappears from alice's grid.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import traceback
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import TimeoutError as PlaywrightTimeout

REPO = Path(__file__).resolve().parents[2]

CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
]

LOW_WIDTH = 320
HIGH_WIDTH = 1280


class Result:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.data: dict[str, Any] = {
            "out": str(out),
            "checks": {},
            "order": [],
            "screenshots": [],
            "diagnostics": {},
            "aborted": None,
        }
        self.t0 = time.monotonic()

    def check(self, name: str, ok: bool, message: str, **data: Any) -> bool:
        self.data["checks"][name] = {"ok": ok, "message": message, **data}
        self.data["order"].append(name)
        print(f"[{time.monotonic() - self.t0:5.1f}s] {name}: {'ok' if ok else 'FAIL'}: {message}")
        return ok

    def skip(self, name: str, why: str) -> None:
        self.check(name, False, f"not run: {why}", skipped=True)

    def write(self) -> None:
        self.data["runtime_s"] = round(time.monotonic() - self.t0, 2)
        (self.out / "result.json").write_text(json.dumps(self.data, indent=2))


def require_tools(chromium: str) -> None:
    """pytest side: what the isolated browser run needs, or a clear failure."""
    if not Path(chromium).is_file():
        pytest.fail(
            f"Chromium not found at {chromium}: install it with `apt-get install -y chromium` "
            "(scripts/test.sh does this), or point SFU_TEST_chromium at a Chromium binary",
            pytrace=False,
        )
    for tool, package in (("unshare", "util-linux"), ("ip", "iproute2")):
        if shutil.which(tool) is None:
            pytest.fail(
                f"`{tool}` not found: install {package} (the browser runs in a loopback-only "
                "network namespace)",
                pytrace=False,
            )


def run_isolated(
    script: list[str], out: Path, chromium: str, deadline_s: float, cwd: Path
) -> dict[str, Any]:
    """pytest side: run a scenario script (`[python args...]`) inside a new
    loopback-only network namespace and return its result.json. As root a
    network namespace is enough; otherwise a user namespace maps us to root
    inside it so `ip link set lo up` works."""
    unshare = ["unshare", "-n"] if os.geteuid() == 0 else ["unshare", "-r", "-n"]
    cmd = [*unshare, "--", sys.executable, *script]
    cmd += ["--out", str(out), "--chromium", chromium, "--deadline", str(deadline_s)]
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=deadline_s + 25)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the browser scenario hung for {exc.timeout:.0f} s (logs in {out})")
    (out / "scenario.stdout").write_text(proc.stdout)
    (out / "scenario.stderr").write_text(proc.stderr)
    print(proc.stdout)
    result_path = out / "result.json"
    if not result_path.exists():
        pytest.fail(
            f"the browser scenario wrote no result (exit status {proc.returncode}); "
            f"stderr:\n{proc.stderr[-3000:]}",
            pytrace=False,
        )
    result: dict[str, Any] = json.loads(result_path.read_text())
    return result


def assert_check(result: dict[str, Any], name: str) -> None:
    """pytest side: one named check of a scenario's result passed."""
    check = result["checks"].get(name)
    where = f"(artifacts: {result['out']})"
    if check is None:
        pytest.fail(
            f"{name}: not run; the scenario stopped early: {result.get('aborted')} {where}\n"
            f"{result.get('traceback', '')}",
            pytrace=False,
        )
    assert check["ok"], f"{name}: {check['message']} {where}"


def require_loopback_only_namespace() -> None:
    names = sorted(name for _, name in socket.if_nameindex())
    if names != ["lo"]:
        raise SystemExit(
            f"refusing to start Chromium: this network namespace has interfaces {names}; "
            "run this script under `unshare -n` (the pytest test does)"
        )
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_args(port: int) -> list[str]:
    """`sfu serve` in dev mode on 127.0.0.1 (signaling and media)."""
    return [
        "serve",
        "--dev",
        "--rtc-host",
        "127.0.0.1",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "info",
    ]


def start_server(out: Path, port: int) -> subprocess.Popen[bytes]:
    log = open(out / "server.log", "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [sys.executable, "-m", "signaling.cli", *serve_args(port)],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def wait_healthy(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sfu serve exited with status {proc.returncode} (see server.log)")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"sfu serve did not answer /healthz within {timeout_s:.0f} s")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(8)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class Peer:
    """One browser context with the demo page."""

    def __init__(self, name: str, page: Any, out: Path) -> None:
        self.name = name
        self.page = page
        self.out = out
        self.console: list[str] = []
        self.log_path = out / f"console-{name}.log"
        page.on("console", lambda msg: self.console.append(f"{msg.type}: {msg.text}"))
        page.on("pageerror", lambda err: self.console.append(f"pageerror: {err}"))

    async def stats(self) -> dict[str, dict[str, Any]]:
        return await self.page.evaluate("() => window.sfuDemo.stats()")

    async def diagnostics(self) -> dict[str, Any]:
        return await self.page.evaluate(
            """async () => ({
                state: window.sfuDemo.state,
                error: window.sfuDemo.error,
                status: document.querySelector('#status').textContent,
                tracks: window.sfuDemo.tracks(),
                remote: await window.sfuDemo.stats(),
                local: await window.sfuDemo.localStats(),
                connections: await window.sfuDemo.connectionStats(),
                events: window.sfuDemo.events.slice(-40),
            })"""
        )

    def save_console(self) -> None:
        self.log_path.write_text("\n".join(self.console) + "\n")


async def open_peer(browser: Any, base: str, room: str, name: str, out: Path) -> Peer:
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    page = await context.new_page()
    peer = Peer(name, page, out)
    await page.goto(f"{base}/?room={room}&name={name}")
    await page.click("#join")
    await page.wait_for_selector("body[data-state=joined][data-published=true]", timeout=15_000)
    return peer


async def wait_decoding(peer: Peer, timeout_s: float) -> tuple[str | None, dict[str, Any]]:
    """The remote video track this page decodes: framesDecoded grows by 5+."""
    deadline = time.monotonic() + timeout_s
    first: dict[str, int] = {}
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        last = await peer.stats()
        for track_id, s in last.items():
            frames = s.get("framesDecoded") or 0
            if frames <= 0:
                continue
            first.setdefault(track_id, frames)
            if frames >= first[track_id] + 5:
                return track_id, s
        await asyncio.sleep(0.2)
    return None, last


async def switch(
    peer: Peer, track_id: str, quality: str, want_width: int, timeout_s: float
) -> tuple[bool, str, dict[str, Any]]:
    """Select `quality` on the tile; wait until decoded frames are `want_width` wide."""
    selector = f'section.tile[data-track-id="{track_id}"] select[data-role=quality]'
    t0 = time.monotonic()
    await peer.page.select_option(selector, quality)
    timeline: list[list[Any]] = []  # [seconds, frameWidth, layer] at each change
    reached_at: float | None = None
    frames_at_reach = 0
    s: dict[str, Any] = {}
    while True:
        elapsed = time.monotonic() - t0
        s = (await peer.stats()).get(track_id, {})
        width, layer, frames = s.get("frameWidth"), s.get("layer"), s.get("framesDecoded") or 0
        if not timeline or timeline[-1][1:] != [width, layer]:
            timeline.append([round(elapsed, 2), width, layer])
        if reached_at is None and width == want_width:
            reached_at, frames_at_reach = elapsed, frames
        if reached_at is not None and frames >= frames_at_reach + 3:
            return (
                True,
                f"decoded width {want_width} after {reached_at:.2f} s (layer_changed: {layer})",
                {"elapsed_s": round(reached_at, 2), "timeline": timeline},
            )
        if reached_at is None and elapsed > timeout_s:
            return (
                False,
                f'after selecting "{quality}", decoded frameWidth is {width} (want {want_width}) '
                f"after {timeout_s:.0f} s; layer_changed says {layer!r}; widths seen: "
                f"{[w for _, w, _ in timeline]}",
                {"timeline": timeline},
            )
        if reached_at is not None and elapsed > reached_at + 3:
            return (
                False,
                f"width {want_width} reached after {reached_at:.2f} s but decoding then stalled "
                f"(framesDecoded {frames_at_reach} -> {frames})",
                {"timeline": timeline},
            )
        await asyncio.sleep(0.1)


async def run(args: argparse.Namespace, result: Result) -> None:
    from playwright.async_api import async_playwright

    out: Path = args.out
    port = free_port()
    server = start_server(out, port)
    peers: list[Peer] = []
    try:
        await asyncio.to_thread(wait_healthy, port, server)
        base = f"http://127.0.0.1:{port}"
        room = "demo-" + secrets.token_hex(3)
        async with async_playwright() as pw:
            # headless=False: the exact flags above, `--headless=new` included, decide.
            browser = await pw.chromium.launch(
                executable_path=args.chromium,
                headless=False,
                args=CHROMIUM_FLAGS,
                timeout=30_000,
            )
            try:
                peers = list(
                    await asyncio.gather(
                        open_peer(browser, base, room, "alice", out),
                        open_peer(browser, base, room, "bob", out),
                    )
                )
                await scenario(peers, result)
            finally:
                if not result.data["screenshots"]:
                    with contextlib.suppress(Exception):
                        await screenshots(peers, result)
                for peer in peers:
                    with contextlib.suppress(Exception):
                        result.data["diagnostics"][peer.name] = await peer.diagnostics()
                    with contextlib.suppress(Exception):
                        await peer.page.evaluate("() => window.sfuDemo.leave()")
                    peer.save_console()
                await browser.close()
    finally:
        stop_server(server)


async def scenario(peers: list[Peer], result: Result) -> None:
    alice, bob = peers
    decoded = await asyncio.gather(wait_decoding(alice, 15), wait_decoding(bob, 15))
    problems = [
        f"{peer.name} decodes no remote video (stats: {stats})"
        for peer, (track_id, stats) in zip(peers, decoded, strict=True)
        if track_id is None
    ]
    summary = ", ".join(
        f"{p.name}: {s.get('frameWidth')}x{s.get('frameHeight')}, {s.get('framesDecoded')} frames"
        for p, (_, s) in zip(peers, decoded, strict=True)
    )
    ok = result.check(
        "decode_each_other",
        not problems,
        "; ".join(problems) or f"both pages decode each other's video ({summary})",
    )
    if not ok:
        for name in (
            "high_initial",
            "switch_low",
            "switch_back_high",
            "mute_shown",
            "leave_removes_tile",
        ):
            result.skip(name, "the pages do not decode each other's video")
        return
    track_id = decoded[0][0]
    assert track_id is not None
    result.data["switch_track"] = {"page": alice.name, "track_id": track_id}

    ok, message, data = await switch(alice, track_id, "high", HIGH_WIDTH, 10)
    result.check("high_initial", ok, message, **data)
    ok, message, data = await switch(alice, track_id, "low", LOW_WIDTH, 5)
    result.check("switch_low", ok, message, **data)
    ok, message, data = await switch(alice, track_id, "high", HIGH_WIDTH, 5)
    result.check("switch_back_high", ok, message, **data)
    await asyncio.sleep(1.2)  # one more stats refresh, so the screenshot shows bitrates
    await screenshots(peers, result)

    tile = f'section.tile[data-track-id="{track_id}"]'
    t0 = time.monotonic()
    await bob.page.click("#mute-cam")
    try:
        await alice.page.wait_for_selector(f"{tile} [data-role=muted]:not([hidden])", timeout=3000)
        result.check("mute_shown", True, f"muted badge after {time.monotonic() - t0:.2f} s")
    except PlaywrightTimeout:
        result.check(
            "mute_shown", False, "bob stopped his camera; alice's tile shows no muted badge"
        )

    t0 = time.monotonic()
    await bob.page.click("#leave")
    try:
        await bob.page.wait_for_selector("body[data-state=left]", timeout=3000)
        await alice.page.wait_for_selector(tile, state="detached", timeout=3000)
        result.check("leave_removes_tile", True, f"tile gone after {time.monotonic() - t0:.2f} s")
    except PlaywrightTimeout:
        result.check(
            "leave_removes_tile",
            False,
            "bob left; within 3 s bob's page is not in state 'left' or alice still shows his tile",
        )


async def screenshots(peers: list[Peer], result: Result) -> None:
    for peer in peers:
        path = peer.out / f"grid-{peer.name}.png"
        await peer.page.screenshot(path=str(path), full_page=True)
        if str(path) not in result.data["screenshots"]:
            result.data["screenshots"].append(str(path))


def main() -> int:
    return run_main(run, __doc__ or "", 80.0)


def run_main(
    scenario_run: Callable[[argparse.Namespace, Result], Awaitable[None]],
    description: str,
    deadline_s: float,
) -> int:
    """The scenario process's main (inside the namespace): options, a fresh
    browser profile under --out, `scenario_run` within the deadline, and
    result.json written whatever happens."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--deadline", type=float, default=deadline_s, help="seconds for all")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    require_loopback_only_namespace()
    # A fresh profile and caches under --out: Playwright makes its profile in TMPDIR.
    for var, sub in (("TMPDIR", "tmp"), ("XDG_CONFIG_HOME", "config"), ("XDG_CACHE_HOME", "cache")):
        path = args.out / sub
        path.mkdir(exist_ok=True)
        os.environ[var] = str(path)
    result = Result(args.out)
    try:
        asyncio.run(asyncio.wait_for(scenario_run(args, result), args.deadline))
    except TimeoutError:
        result.data["aborted"] = f"the scenario did not finish within {args.deadline:.0f} s"
    except Exception as exc:  # noqa: BLE001 - reported in result.json
        result.data["aborted"] = f"{type(exc).__name__}: {exc}"
        result.data["traceback"] = traceback.format_exc()
    finally:
        result.write()
    if result.data["aborted"]:
        print(f"aborted: {result.data['aborted']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
