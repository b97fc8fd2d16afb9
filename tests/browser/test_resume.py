"""A headless Chromium page on the demo page loses its WebSocket and resumes
its session (sfu-client.js, protocol section 13), against `sfu serve --dev`
and a Python bot in the same room.

* Resume: the page publishes its camera (fake device), the bot publishes
  video; the page drops its signaling connection without a `leave`
  (`client._dropSignalingForTest()`). The page is back within a few seconds as
  the same participant, the bot never sees it leave, and media keeps flowing
  both ways. Then two more drops: one loses the answer to a subscriber_offer
  (the server sends the offer again after the resume; the client answers it
  again with the same SDP), one lasts 3 s while another bot joins and
  publishes (what the page missed is replayed and handled: it decodes that
  bot's video).
* Too late: a second server keeps a dropped session only 0.05 s
  (`signaling.rooms.RESUME_WINDOW_S`, set in that server's own process). The
  page's resume attempt is joined afresh: the client says `leave` on that
  connection, ends with `closed` reason `resume_failed`, and the page joins
  again as a new participant, publishing again.

Like test_chromium_call.py, the scenario runs once per module as a subprocess
(this file, run with `python -m tests.browser.test_resume`) inside a
loopback-only network namespace (`unshare -n`); it writes result.json, the
server logs and the pages' console logs to a temporary directory, printed
below; each test asserts one of its checks.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import async_playwright

from sfu_bot.client import Bot
from signaling.auth import DEV_KEY, DEV_SECRET, issue_token
from tests.browser.scenario import (
    CHROMIUM_FLAGS,
    Result,
    assert_check,
    free_port,
    open_peer,
    require_tools,
    run_isolated,
    run_main,
    serve_args,
    stop_server,
    wait_decoding,
    wait_healthy,
)

CHROMIUM = os.environ.get("SFU_TEST_CHROMIUM", "/usr/bin/chromium")
HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DEADLINE_S = 45
#: The second server's resume window: over before the client's first attempt (0.25 s).
SHORT_WINDOW_S = 0.05


# --- pytest side ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    require_tools(CHROMIUM)
    out = tmp_path_factory.mktemp("browser-resume")
    print(f"\nbrowser resume: result.json and logs in {out}")
    return run_isolated(["-m", "tests.browser.test_resume"], out, CHROMIUM, DEADLINE_S, REPO)


def test_a_dropped_websocket_resumes_as_the_same_participant(run: dict[str, Any]) -> None:
    assert_check(run, "resumed")


def test_the_bot_never_sees_the_page_leave(run: dict[str, Any]) -> None:
    assert_check(run, "no_participant_left")


def test_the_bot_keeps_receiving_the_pages_video(run: dict[str, Any]) -> None:
    assert_check(run, "bot_receives_page_video")


def test_the_page_keeps_decoding_the_bots_video(run: dict[str, Any]) -> None:
    assert_check(run, "page_decodes_bot_video")


def test_a_subscriber_offer_re_sent_after_the_resume_is_answered_again(
    run: dict[str, Any],
) -> None:
    assert_check(run, "resent_offer_answered_again")


def test_messages_missed_while_away_are_replayed_and_handled(run: dict[str, Any]) -> None:
    assert_check(run, "missed_messages_replayed")


def test_a_resume_too_late_closes_with_resume_failed_and_says_leave(
    run: dict[str, Any],
) -> None:
    assert_check(run, "resume_failed")


def test_after_a_failed_resume_the_page_joins_again_and_media_flows(
    run: dict[str, Any],
) -> None:
    assert_check(run, "rejoined")


def test_scenario_finished(run: dict[str, Any]) -> None:
    assert run.get("aborted") is None, run.get("aborted")


# --- the scenario (run inside the network namespace) --------------------------------------


def start_server(out: Path, port: int, log_name: str, window_s: float | None) -> Any:
    """`sfu serve --dev`; with `window_s`, signaling.rooms.RESUME_WINDOW_S is
    set to it in the server's process first."""
    serve = serve_args(port)
    if window_s is None:
        cmd = [sys.executable, "-m", "signaling.cli", *serve]
    else:
        code = (
            "import sys; import signaling.rooms as rooms; "
            "rooms.RESUME_WINDOW_S = float(sys.argv[1]); "
            "from signaling.cli import main; sys.exit(main(sys.argv[2:]))"
        )
        cmd = [sys.executable, "-c", code, str(window_s), *serve]
    log = open(out / log_name, "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)


# Records the page client's connection events, and each subscriber_offer
# ('same': the SDP of the one answered last), in window.resumeTest (from now
# on); returns its participant id.
LISTEN_JS = """() => {
    const client = window.sfuDemo.client;
    const log = { events: [], offers: [], oldWs: client.ws, pid: client.self.id };
    window.resumeTest = log;
    if (!client.offersLogged) {
        client.offersLogged = true;
        const onOffer = client._onSubscriberOffer.bind(client);
        client._onSubscriberOffer = (msg) => {
            window.resumeTest.offers.push(msg.sdp === client._lastSubOffer ? 'same' : 'new');
            return onOffer(msg);
        };
    }
    for (const type of ['reconnecting', 'resumed', 'closed', 'servererror']) {
        client.addEventListener(type, (e) => log.events.push({
            type,
            t: Math.round(performance.now()),
            reason: (e.detail && (e.detail.reason || e.detail.message)) || null,
            attempts: (e.detail && e.detail.attempts) || null,
            downtimeMs: (e.detail && e.detail.downtimeMs) ?? null,
        }));
    }
    return client.self.id;
}"""

DROP_JS = "(offlineMs) => window.sfuDemo.client._dropSignalingForTest(offlineMs)"

# The next subscriber_answer is lost: the WebSocket drops just before it goes
# out. After the resume the server sends the unanswered offer again.
LOSE_ANSWER_JS = """() => {
    const client = window.sfuDemo.client;
    const log = { answers: [] };
    window.answerTest = log;
    const send = client._send.bind(client);
    client._send = (message) => {
        if (message.type === 'subscriber_answer') {
            log.answers.push(message.sdp);
            if (log.answers.length === 1) client._dropSignalingForTest(0);
        }
        return send(message);
    };
}"""

STATE_JS = """() => {
    const client = window.sfuDemo.client;
    const log = window.resumeTest;
    return {
        events: log.events,
        state: window.sfuDemo.state,
        published: document.body.dataset.published === 'true',
        status: document.querySelector('#status').textContent,
        pid: client && client.self ? client.self.id : null,
        closed: client ? client.closed : null,
        sameClient: client !== null && log.oldWs !== null && client.ws !== log.oldWs
            && client.self && client.self.id === log.pid,
        wsOpen: client !== null && client.ws !== null && client.ws.readyState === 1,
        pinging: client !== null && client._pingTimer !== null,
        answers: window.answerTest ? window.answerTest.answers : [],
        offers: log.offers,
    };
}"""


def _page_video_packets(bot: Any, pid: str | None) -> int:
    track = bot.track_of_kind("video", publisher_id=pid) if pid else None
    return track.packets if track is not None else 0


def _left(bot: Any, pid: str) -> bool:
    return any(
        m.get("type") == "participant_left" and m.get("participant_id") == pid for m in bot.messages
    )


async def _frames(peer: Any, track_id: str) -> int:
    return int((await peer.stats()).get(track_id, {}).get("framesDecoded") or 0)


async def _poll(fn: Any, timeout_s: float, interval_s: float = 0.1) -> Any:
    """Calls async `fn` until it returns something true; returns the last value."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await fn()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(interval_s)


class Phase:
    """One server, one page and one bot in one room."""

    def __init__(self, name: str, out: Path, window_s: float | None) -> None:
        self.name = name
        self.out = out
        self.port = free_port()
        self.log_path = out / f"server-{name}.log"
        self.server = start_server(out, self.port, self.log_path.name, window_s)
        self.base = f"http://127.0.0.1:{self.port}"
        self.room = f"{name}-{secrets.token_hex(3)}"
        self.peer: Any = None
        self.bot: Any = None
        self.bots: list[Bot] = []

    async def start(self, browser: Any) -> None:
        await asyncio.to_thread(wait_healthy, self.port, self.server)
        self.peer = await open_peer(browser, self.base, self.room, f"page-{self.name}", self.out)
        self.bot = await self.add_bot("bot")

    async def add_bot(self, identity: str) -> Bot:
        """A bot in the room, publishing video only."""
        token = issue_token(DEV_KEY, DEV_SECRET, self.room, identity, name=identity)
        bot = Bot(f"ws://127.0.0.1:{self.port}", token, name=identity)
        self.bots.append(bot)
        await bot.connect()
        await bot.publish(audio=False)
        return bot

    async def pid(self) -> str | None:
        return await self.peer.page.evaluate(
            "() => window.sfuDemo.client && window.sfuDemo.client.self"
            " ? window.sfuDemo.client.self.id : null"
        )

    async def wait_media(self, pid: str | None, timeout_s: float) -> tuple[str | None, str]:
        """Both ways: the page decodes the bot's video, the bot gets the page's."""
        track_id, stats = await wait_decoding(self.peer, timeout_s)
        if track_id is None:
            return None, f"the page decodes no video from the bot (stats: {stats})"
        with contextlib.suppress(Exception):
            await self.bot.wait_until(
                lambda: _page_video_packets(self.bot, pid) > 20, timeout_s, "page video"
            )
        packets = _page_video_packets(self.bot, pid)
        if packets <= 20:
            return None, f"the bot received {packets} video packets from the page ({pid})"
        return track_id, ""

    async def stop(self, result: Result) -> None:
        if self.peer is not None:
            with contextlib.suppress(Exception):
                result.data["diagnostics"][self.name] = await self.peer.diagnostics()
            with contextlib.suppress(Exception):
                await self.peer.page.evaluate("() => window.sfuDemo.leave()")
            self.peer.save_console()
        for bot in self.bots:
            with contextlib.suppress(Exception):
                result.data["diagnostics"][f"{bot.name}-{self.name}"] = bot.stats()
            await bot.leave()
        stop_server(self.server)


def _held_counts(log_path: Path) -> list[int]:
    """The `resumed (N messages held)` lines of a server log, in order."""
    text = log_path.read_text(errors="replace")
    return [int(n) for n in re.findall(r"resumed \((\d+) messages held\)", text)]


async def _decoding_from(peer: Any, participant_id: str | None, timeout_s: float) -> int:
    """framesDecoded of a video track from that participant once it grows by 5+ (else 0)."""
    deadline = time.monotonic() + timeout_s
    first: int | None = None
    while time.monotonic() < deadline:
        for s in (await peer.stats()).values():
            frames = s.get("framesDecoded") or 0
            if s.get("participantId") == participant_id and frames > 0:
                first = frames if first is None else first
                if frames >= first + 5:
                    return int(frames)
        await asyncio.sleep(0.2)
    return 0


async def _drop_and_wait(peer: Any, offline_ms: int, timeout_s: float) -> dict[str, Any]:
    """Drops the page's WebSocket; the page's state once it resumed or closed."""
    await peer.page.evaluate(LISTEN_JS)
    await peer.page.evaluate(DROP_JS, offline_ms)
    return await _wait_event(peer, ("resumed", "closed"), timeout_s)


async def _wait_event(peer: Any, types: tuple[str, ...], timeout_s: float) -> dict[str, Any]:
    """The page's state once one of these client events happened (or at the timeout)."""

    async def seen() -> dict[str, Any] | None:
        s = await peer.page.evaluate(STATE_JS)
        return s if any(e["type"] in types for e in s["events"]) else None

    return await _poll(seen, timeout_s, 0.05) or await peer.page.evaluate(STATE_JS)


def _resumed_ok(s: dict[str, Any], pid: str) -> bool:
    return (
        [e["type"] for e in s["events"]] == ["reconnecting", "resumed"]
        and s["sameClient"]
        and s["pid"] == pid
        and s["state"] == "joined"
        and s["wsOpen"]
        and s["pinging"]
        and not s["closed"]
    )


def _resumed_problem(s: dict[str, Any], pid: str) -> str:
    return (
        f"events {s['events']}, state {s['state']!r}, participant {s['pid']} (was {pid}), "
        f"new socket of the same session {s['sameClient']}, open {s['wsOpen']}, "
        f"pinging {s['pinging']}, status {s['status']!r}"
    )


async def resume_phase(phase: Phase, result: Result) -> None:
    names = (
        "resumed",
        "bot_receives_page_video",
        "page_decodes_bot_video",
        "resent_offer_answered_again",
        "missed_messages_replayed",
        "no_participant_left",
    )
    pid = await phase.pid()
    track_id, problem = await phase.wait_media(pid, 15)
    if track_id is None or pid is None:
        for name in names:
            result.skip(name, f"no media before the drop: {problem}")
        return
    bot, peer = phase.bot, phase.peer
    packets_before = _page_video_packets(bot, pid)
    frames_before = await _frames(peer, track_id)

    # 1. A plain drop: resumed at the first attempt, media never stops.
    t0 = time.monotonic()
    s = await _drop_and_wait(peer, 0, 6)
    elapsed = time.monotonic() - t0
    await asyncio.sleep(1.0)
    packets_mid = _page_video_packets(bot, pid)
    frames_mid = await _frames(peer, track_id)
    await asyncio.sleep(1.0)
    packets_after = _page_video_packets(bot, pid)
    frames_after = await _frames(peer, track_id)
    s = await peer.page.evaluate(STATE_JS)  # no error since, either
    result.check(
        "resumed",
        _resumed_ok(s, pid),
        f"resumed as {pid} on a new WebSocket after {elapsed:.2f} s (events {s['events']})"
        if _resumed_ok(s, pid)
        else f"after the drop: {_resumed_problem(s, pid)}",
        elapsed_s=round(elapsed, 2),
    )
    result.check(
        "bot_receives_page_video",
        packets_before < packets_mid < packets_after,
        f"video packets from the page at the bot: {packets_before} before the drop, "
        f"{packets_mid} and {packets_after} after the resume",
    )
    result.check(
        "page_decodes_bot_video",
        frames_before < frames_mid < frames_after,
        f"frames of the bot's video decoded by the page: {frames_before} before the drop, "
        f"{frames_mid} and {frames_after} after the resume",
    )

    # 2. The answer to a subscriber_offer is lost with the WebSocket: the server
    # sends the same offer again after the resume and gets the same answer.
    await peer.page.evaluate(LISTEN_JS)
    await peer.page.evaluate(LOSE_ANSWER_JS)
    bot2 = await phase.add_bot("bot2")
    frames2 = await _decoding_from(peer, bot2.participant_id, 10)
    s = await peer.page.evaluate(STATE_JS)
    answers = s["answers"]
    ok = (
        _resumed_ok(s, pid)
        and frames2 > 0
        and s["offers"] == ["new", "same"]
        and len(answers) == 2
        and answers[0] == answers[1]
    )
    result.check(
        "resent_offer_answered_again",
        ok,
        f"the offer for bot2's video was answered, the answer lost, the offer re-sent after "
        f"the resume and answered again with the same SDP; the page decodes bot2 ({frames2} "
        "frames)"
        if ok
        else f"page decodes bot2: {frames2} frames; offers {s['offers']}; {len(answers)} "
        f"answers sent (identical: {len(set(answers)) == 1}); {_resumed_problem(s, pid)}",
    )

    # 3. Offline for 3 s while bot3 joins and publishes: all that is held for
    # the page (participant_joined, track_published, subscriber_offer) is
    # replayed after the resume, and handled.
    held_before = len(_held_counts(phase.log_path))
    await peer.page.evaluate(LISTEN_JS)
    t0 = time.monotonic()
    await peer.page.evaluate(DROP_JS, 3000)
    await _wait_event(peer, ("reconnecting",), 2)
    # The server has seen the close by now, and holds what the page should hear
    # (what it writes to a closing socket is lost: see _syncParticipants).
    await asyncio.sleep(0.2)
    bot3 = await phase.add_bot("bot3")
    published_s = time.monotonic() - t0
    await _wait_event(peer, ("resumed", "closed"), 8)
    frames3 = await _decoding_from(peer, bot3.participant_id, 10)
    s = await peer.page.evaluate(STATE_JS)
    held = _held_counts(phase.log_path)[held_before:]
    ok = _resumed_ok(s, pid) and frames3 > 0 and bool(held) and held[-1] >= 3
    result.check(
        "missed_messages_replayed",
        ok,
        f"bot3 published {published_s:.1f} s into a 3 s outage; {held[-1]} messages held and "
        f"replayed; the page decodes bot3 ({frames3} frames); offers seen {s['offers']}"
        if ok
        else f"bot3 published {published_s:.1f} s into the outage; messages held at the "
        f"resume: {held}; the page decodes bot3: {frames3} frames; offers {s['offers']}; "
        f"{_resumed_problem(s, pid)}",
    )

    left = _left(bot, pid)
    result.check(
        "no_participant_left",
        not left and pid in bot.participants,
        f"the bot got participant_left for {pid}"
        if left
        else f"after three drops the bot still lists {pid}, and got no participant_left for it"
        if pid in bot.participants
        else f"the bot no longer lists {pid}",
    )


async def failed_resume_phase(phase: Phase, result: Result) -> None:
    pid = await phase.pid()
    track_id, problem = await phase.wait_media(pid, 15)
    if track_id is None:
        for name in ("resume_failed", "rejoined"):
            result.skip(name, f"no media before the drop: {problem}")
        return
    bot, peer = phase.bot, phase.peer
    t0 = time.monotonic()
    s = await _drop_and_wait(peer, 0, 6)
    kinds = [e["type"] for e in s["events"]]
    reasons = [e["reason"] for e in s["events"] if e["type"] == "closed"]
    # The connection the server joined afresh was a participant of its own: the
    # bot saw it join; the client's `leave` made it go at once (server log).
    others = [
        m["participant"]["id"]
        for m in bot.messages
        if m.get("type") == "participant_joined" and m["participant"]["id"] != pid
    ]
    interim = others[0] if others else None
    log = phase.log_path.read_text(errors="replace")
    said_leave = interim is not None and f"participant={interim}: left (client_left)" in log
    ok = kinds == ["reconnecting", "closed"] and reasons == ["resume_failed"] and said_leave
    result.check(
        "resume_failed",
        ok,
        f"closed with resume_failed after {time.monotonic() - t0:.2f} s; the interim "
        f"participant {interim} left with client_left"
        if ok
        else f"events {s['events']}; interim participant {interim}, its `leave` in the "
        f"server log: {said_leave}",
    )

    async def rejoined() -> dict[str, Any] | None:
        s = await peer.page.evaluate(STATE_JS)
        fresh = s["state"] == "joined" and s["published"] and s["pid"] not in (None, pid)
        return s if fresh and s["pid"] != interim else None

    s = await _poll(rejoined, 8) or await peer.page.evaluate(STATE_JS)
    new_pid = s["pid"]
    if s["state"] != "joined" or new_pid in (None, pid, interim):
        result.check(
            "rejoined",
            False,
            f"after resume_failed the page is in state {s['state']!r} as {new_pid} "
            f"(was {pid}, interim {interim}), status {s['status']!r}",
        )
        return
    new_track, problem = await phase.wait_media(new_pid, 10)
    old_left = _left(bot, pid)
    ok = new_track is not None and old_left
    result.check(
        "rejoined",
        ok,
        f"joined again as {new_pid} after {time.monotonic() - t0:.2f} s; media flows both "
        f"ways; the bot saw {pid} leave"
        if ok
        else f"joined again as {new_pid}: {problem or 'media flows'}; the bot saw the old "
        f"participant {pid} leave: {old_left}",
    )


async def run_scenario(args: argparse.Namespace, result: Result) -> None:
    out: Path = args.out
    phases = [Phase("resume", out, None), Phase("late", out, SHORT_WINDOW_S)]
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=args.chromium, headless=False, args=CHROMIUM_FLAGS, timeout=30_000
            )
            try:
                await asyncio.gather(*(phase.start(browser) for phase in phases))
                await asyncio.gather(
                    resume_phase(phases[0], result), failed_resume_phase(phases[1], result)
                )
            finally:
                for phase in phases:
                    with contextlib.suppress(Exception):
                        await phase.stop(result)
                await browser.close()
    finally:
        for phase in phases:
            stop_server(phase.server)


def main() -> int:
    return run_main(run_scenario, __doc__ or "", DEADLINE_S)


if __name__ == "__main__":
    sys.exit(main())
