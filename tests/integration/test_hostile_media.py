"""Hostile datagrams at the media ports of a live call, with real bots on
127.0.0.1 (ICE, DTLS, SRTP): floods of garbage, replayed SRTP, a flood on one
participant while another call goes on. The call in progress must not notice:
video keeps flowing, transports stay connected, the server keeps answering,
the garbage is counted as dropped, and no state is allocated per datagram.

Only 127.0.0.1 is ever addressed.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from sfu import aiortc_adapter
from sfu.publisher import Publisher
from sfu.receiver import Receiver
from sfu.transport import PeerTransport
from sfu_bot.client import Bot, RecvTrack
from signaling.app import ENGINE
from tests.integration.conftest import BotFactory, Node

Address = tuple[str, int]
STUN_COOKIE = 0x2112A442


# --------------------------------------------------------------------------- helpers


def video_track(bot: Bot) -> RecvTrack | None:
    return next((t for t in bot.tracks.values() if t.kind == "video"), None)


def video_packets(bot: Bot) -> int:
    track = video_track(bot)
    return track.packets if track is not None else 0


def publisher_of(node: Node, bot: Bot) -> Publisher:
    peer = node.app[ENGINE].peers[bot.participant_id]
    assert peer.publisher is not None
    return peer.publisher


def server_transports(node: Node) -> list[PeerTransport]:
    out = []
    for peer in node.app[ENGINE].peers.values():
        for side in (peer.publisher, peer.subscriber):
            if side is not None:
                out.append(side.transport)
    return out


def sent_packets(bot: Bot) -> int:
    """RTP packets the bot has published (every stream and layer, retransmissions too)."""
    return sum(
        s.packets + s.retransmitted for stream in bot.streams.values() for s in stream.senders
    )


def receivers(publisher: Publisher) -> list[Receiver]:
    return [layer for track in publisher.tracks.values() for layer in track.layers]


async def start_call(
    make_bot: BotFactory, room: str, tag: str, record: bool = False, **publish: Any
) -> tuple[Bot, Bot]:
    """A publisher (audio + video) and a subscriber, video flowing."""
    pub = await make_bot(f"pub-{tag}", room=room)
    sub = await make_bot(f"sub-{tag}", room=room, record=record)
    await pub.publish(**publish)
    await sub.wait_until(lambda: video_packets(sub) >= 60, 15, f"{tag}: video flows")
    return pub, sub


async def rate(bot: Bot, seconds: float) -> float:
    """Video packets per second the bot receives over the next `seconds`."""
    before, start = video_packets(bot), time.monotonic()
    await asyncio.sleep(seconds)
    return (video_packets(bot) - before) / (time.monotonic() - start)


async def healthz(node: Node) -> None:
    url = node.url.replace("ws://", "http://") + "/healthz"
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as http, http.get(url) as response:
        assert response.status == 200
        assert (await response.json())["status"] == "ok"


async def dropped_metrics(node: Node) -> dict[str, float]:
    """sfu_packets_dropped_total by reason, from /metrics."""
    url = node.url.replace("ws://", "http://") + "/metrics"
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert response.status == 200
        text = await response.text()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "sfu_packets_dropped_total":
                out[sample.labels["reason"]] = sample.value
    return out


@contextmanager
def loop_errors() -> Iterator[list[dict[str, Any]]]:
    """What reaches the event loop's exception handler meanwhile (an exception
    escaping a protocol callback lands there: logged, per datagram)."""
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    seen: list[dict[str, Any]] = []

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        seen.append(context)
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
    try:
        yield seen
    finally:
        loop.set_exception_handler(previous)


def describe(errors: list[dict[str, Any]]) -> str:
    return "; ".join(f"{c.get('message')}: {c.get('exception')!r}" for c in errors[:3]) + (
        f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
    )


# --------------------------------------------------------------------------- garbage


def _stun(rng: random.Random, message_type: int, attributes: bytes) -> bytes:
    header = struct.pack("!HHI", message_type, len(attributes), STUN_COOKIE)
    return header + rng.randbytes(12) + attributes


def _stun_attribute(kind: int, value: bytes) -> bytes:
    return struct.pack("!HH", kind, len(value)) + value + bytes(-len(value) % 4)


def garbage(rng: random.Random) -> dict[str, list[bytes]]:
    """~5000 hostile datagrams by kind (RFC 7983 §7 demultiplexes on the first byte)."""
    out: dict[str, list[bytes]] = {}
    out["random"] = [rng.randbytes(rng.randint(1, 1500)) for _ in range(800)]
    out["rtp"] = [  # V=2, any PT, then nothing our keys ever authenticated
        bytes(
            [0x80 | rng.randrange(0x40), rng.choice([rng.randrange(192), rng.randrange(224, 256)])]
        )
        + rng.randbytes(rng.randint(0, 1200))
        for _ in range(1000)
    ]
    out["rtcp"] = [
        bytes([0x80 | rng.randrange(32), rng.randint(200, 206)])
        + rng.randbytes(rng.randint(0, 300))
        for _ in range(800)
    ]
    out["dtls"] = [
        bytes([rng.randint(20, 63)]) + rng.randbytes(rng.randint(0, 300)) for _ in range(800)
    ]
    stun = [bytes([rng.randint(0, 1)]) + rng.randbytes(rng.randint(0, 200)) for _ in range(600)]
    # Well-formed STUN binding requests from a stranger: a USERNAME and a
    # MESSAGE-INTEGRITY nobody can compute (aioice answers 401 and forgets).
    stun += [
        _stun(
            rng,
            0x0001,
            _stun_attribute(0x0006, rng.randbytes(8).hex().encode())
            + _stun_attribute(0x0024, rng.randbytes(4))
            + _stun_attribute(0x0008, rng.randbytes(20)),
        )
        for _ in range(200)
    ]
    out["stun"] = stun
    out["empty"] = [b""] * 300
    out["1500"] = [rng.randbytes(1500) for _ in range(500)]
    return out


def first_byte_counts(datagrams: list[bytes]) -> tuple[int, int]:
    """(SRTP-looking: first byte 128..191, neither SRTP, DTLS nor STUN-able: dropped)."""
    srtp = sum(1 for d in datagrams if d and 127 < d[0] < 192)
    other = sum(1 for d in datagrams if not d or 63 < d[0] < 128 or d[0] > 191)
    return srtp, other


@dataclass
class Flood:
    """Sends datagrams from a plain UDP socket in a thread, paced over `seconds`
    (or as fast as it can, over and over, until stopped, when `seconds` is 0)."""

    target: Address
    datagrams: list[bytes]
    seconds: float = 1.0
    sent: int = 0
    errors: int = 0

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="udp-flood", daemon=True)

    def _send(self, sock: socket.socket, datagram: bytes) -> None:
        try:
            sock.sendto(datagram, self.target)
            self.sent += 1
        except OSError:
            self.errors += 1  # ENOBUFS and friends: the kernel refused, fine

    def _run(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            if self.seconds:
                batches = max(1, int(self.seconds / 0.005))
                per_batch = -(-len(self.datagrams) // batches)
                start = time.monotonic()
                for i in range(batches):
                    for datagram in self.datagrams[i * per_batch : (i + 1) * per_batch]:
                        self._send(sock, datagram)
                    delay = start + (i + 1) * 0.005 - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    if self._stop.is_set():
                        return
            else:
                while not self._stop.is_set():
                    for datagram in self.datagrams:
                        self._send(sock, datagram)
                    time.sleep(0)  # let the event loop thread have the GIL

    def start(self) -> Flood:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        assert not self._thread.is_alive()


# --------------------------------------------------------------------------- tests


async def test_garbage_flood_on_the_publisher_port_does_not_disturb_the_call(
    node: Node, make_bot: BotFactory
) -> None:
    pub, sub = await start_call(make_bot, "room1", "a")
    publisher = publisher_of(node, pub)
    transport = publisher.transport
    target = transport.local_address
    assert target is not None and target[0] == "127.0.0.1"
    connection = transport._link.connection
    before = {
        "srtp": transport.srtp_errors,
        "dropped": transport.dropped_datagrams,
        "handler": transport.handler_errors,
        "malformed": publisher.malformed_rtp,
        "unroutable": publisher.unroutable,
        "rx_rtp": transport.rx_rtp_packets,
        "sent": sent_packets(pub),
    }
    routes = dict(publisher._demux.routes)
    remote_candidates = len(connection._remote_candidates)
    check_list = len(connection._check_list)
    metrics_before = await dropped_metrics(node)

    baseline = await rate(sub, 1.0)
    assert baseline > 20, f"only {baseline:.0f} video packets/s before the flood"

    kinds = garbage(random.Random(1))
    datagrams = [d for batch in kinds.values() for d in batch]
    random.Random(2).shuffle(datagrams)
    with loop_errors() as errors:
        flood = Flood(target, datagrams, seconds=1.0).start()
        during = await rate(sub, 1.0)
        await healthz(node)  # answered while the flood runs
        flood.stop()
        await asyncio.sleep(0.3)  # let the socket drain
    assert flood.sent + flood.errors == len(datagrams)

    # The call did not notice.
    assert during >= 0.5 * baseline, (
        f"{during:.0f} packets/s during the flood, {baseline:.0f} before"
    )
    assert errors == [], describe(errors)
    await healthz(node)
    for t in (*server_transports(node), pub.pub, sub.sub):
        assert t is not None and t.state == "connected", (t and t.name, t and t.state)
    after = video_packets(sub)
    await sub.wait_until(lambda: video_packets(sub) >= after + 20, 5, "video after the flood")

    # Counted as dropped, never handed past SRTP.
    srtp_like, other = first_byte_counts(datagrams)
    srtp = transport.srtp_errors - before["srtp"]
    dropped = transport.dropped_datagrams - before["dropped"]
    assert srtp >= 0.8 * srtp_like, f"srtp_errors +{srtp} for {srtp_like} SRTP-looking datagrams"
    assert dropped >= 0.8 * other, f"dropped_datagrams +{dropped} for {other} non-media datagrams"
    accepted = (transport.rx_rtp_packets - before["rx_rtp"]) - (sent_packets(pub) - before["sent"])
    # (a few may have been in flight when the counts were taken)
    assert accepted <= 10, f"{accepted} more SRTP packets accepted than the publisher sent"
    assert transport.handler_errors == before["handler"]
    assert publisher.malformed_rtp == before["malformed"]
    assert publisher.unroutable == before["unroutable"]
    metrics_after = await dropped_metrics(node)
    assert metrics_after["srtp"] - metrics_before.get("srtp", 0) >= srtp
    assert metrics_after["transport"] - metrics_before.get("transport", 0) >= dropped

    # Nothing was allocated per datagram: no SSRC learned, no candidate or
    # pair from a stranger, no SRTP kept for later, DTLS queue still bounded.
    assert publisher._demux.routes == routes
    assert len(connection._remote_candidates) == remote_candidates
    assert len(connection._check_list) == check_list
    assert connection._early_srtp == []
    assert connection._queue.qsize() <= aiortc_adapter.DTLS_QUEUE_LIMIT


async def test_replayed_srtp_is_refused(node: Node, make_bot: BotFactory) -> None:
    pub, sub = await start_call(make_bot, "room1", "a", bitrate_bps=1_000_000)
    assert pub.pub is not None and sub.sub is not None
    publisher = publisher_of(node, pub)
    transport = publisher.transport
    server_address = transport.local_address
    assert server_address is not None

    # What the publisher bot puts on the wire, after SRTP protection: the
    # nominated pair's sendto (sfu.aiortc_adapter.IceDtls.send_raw).
    link = pub.pub._link
    sendto: Callable[[bytes, Any], None] = link._sendto  # type: ignore[assignment]
    assert sendto is not None
    captured: list[bytes] = []

    def recording(datagram: bytes, addr: Any) -> None:
        if len(captured) < 300 and not 191 < datagram[1] < 224:  # SRTP, not SRTCP
            captured.append(bytes(datagram))
        sendto(datagram, addr)

    link._sendto = recording
    try:
        await pub.wait_until(lambda: len(captured) >= 300, 10, "300 SRTP datagrams captured")
    finally:
        link._sendto = sendto
    await asyncio.sleep(0.2)  # the originals have arrived

    before_srtp = transport.srtp_errors
    before_rx = transport.rx_rtp_packets
    before_sent = sent_packets(pub)
    before_dups = sum(r.duplicates for r in receivers(publisher))
    before_sub_rx = sub.sub.rx_rtp_packets
    before_sub_unique = sum(t.packets for t in sub.tracks.values())

    # (a) A true replay: the same bytes, from the publisher's own address, on
    # the nominated pair. (b) The same bytes from a stranger's socket.
    for i in range(0, len(captured), 30):
        for datagram in captured[i : i + 30]:
            link._sendto(datagram, link._remote_addr)  # type: ignore[misc]
        await asyncio.sleep(0.005)
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stranger.bind(("127.0.0.1", 0))
    try:
        for i in range(0, len(captured), 30):
            for datagram in captured[i : i + 30]:
                stranger.sendto(datagram, server_address)
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.3)
    finally:
        stranger.close()

    replays = 2 * len(captured)
    refused = transport.srtp_errors - before_srtp
    accepted = (transport.rx_rtp_packets - before_rx) - (sent_packets(pub) - before_sent)
    assert refused >= 0.95 * replays, f"SRTP refused {refused} of {replays} replays"
    assert accepted <= 10, f"{accepted} more SRTP packets accepted than the publisher sent"
    assert sum(r.duplicates for r in receivers(publisher)) - before_dups <= 5
    # The subscriber got no burst of copies: its SRTP packet count grew like
    # what was sent meanwhile, not by the replays.
    sub_rx = sub.sub.rx_rtp_packets - before_sub_rx
    sent = sent_packets(pub) - before_sent
    assert sub_rx <= sent + 20, f"subscriber received {sub_rx} packets, {sent} were sent"
    assert sum(t.packets for t in sub.tracks.values()) - before_sub_unique <= sent + 20

    # The call goes on.
    after = video_packets(sub)
    await sub.wait_until(lambda: video_packets(sub) >= after + 30, 5, "video after the replays")
    for t in (*server_transports(node), pub.pub, sub.sub):
        assert t.state == "connected", (t.name, t.state)
    await healthz(node)


async def test_flood_on_one_participant_does_not_starve_another_call(
    node: Node, make_bot: BotFactory
) -> None:
    pub_a, sub_a = await start_call(make_bot, "room-a", "a")
    pub_b, sub_b = await start_call(make_bot, "room-b", "b")
    target = publisher_of(node, pub_a).transport.local_address
    assert target is not None
    transport_a = publisher_of(node, pub_a).transport
    before_srtp = transport_a.srtp_errors
    before_dropped = transport_a.dropped_datagrams

    baseline = await rate(sub_b, 1.5)
    assert baseline > 20, f"only {baseline:.0f} video packets/s before the flood"

    rng = random.Random(3)
    datagrams = [
        bytes([rng.choice([0x80, 0x90, 0, 1, 23, 64, 255])]) + rng.randbytes(rng.randint(11, 300))
        for _ in range(500)
    ]
    with loop_errors() as errors:
        flood = Flood(target, datagrams, seconds=0).start()  # as fast as it can
        try:
            during = await rate(sub_b, 2.0)
            during_a = await rate(sub_a, 0.5)
        finally:
            flood.stop()
        await asyncio.sleep(0.3)

    assert flood.sent > 5000, f"the flood sent only {flood.sent} datagrams"
    assert during >= 0.5 * baseline, (
        f"call b: {during:.0f} packets/s during the flood of call a, {baseline:.0f} before "
        f"({flood.sent} datagrams sent)"
    )
    assert errors == [], describe(errors)
    # Call a itself kept going, and counted what it was sent.
    assert during_a > 0
    counted = (transport_a.srtp_errors - before_srtp) + (
        transport_a.dropped_datagrams - before_dropped
    )
    assert counted > 0.3 * flood.sent, f"{counted} counted of {flood.sent} sent"
    for t in (*server_transports(node), pub_a.pub, sub_a.sub, pub_b.pub, sub_b.sub):
        assert t is not None and t.state == "connected", (t and t.name, t and t.state)
    await healthz(node)


# --------------------------------------------------------------------------- known bugs


async def test_malformed_stun_attribute_is_dropped_quietly(
    node: Node, make_bot: BotFactory
) -> None:
    pub, sub = await start_call(make_bot, "room1", "a")
    target = publisher_of(node, pub).transport.local_address
    assert target is not None
    rng = random.Random(4)
    datagrams = [_stun(rng, 0x0001, struct.pack("!HH", 0x0024, 3) + b"abc\x00") for _ in range(50)]
    with loop_errors() as errors:
        flood = Flood(target, datagrams, seconds=0.1).start()
        await asyncio.sleep(0.3)
        flood.stop()
        await asyncio.sleep(0.2)
    after = video_packets(sub)
    await sub.wait_until(lambda: video_packets(sub) >= after + 10, 5, "video goes on")
    assert errors == [], f"{len(errors)} loop errors: {describe(errors)}"


async def test_oversized_srtp_looking_datagram_is_counted_as_dropped(
    node: Node, make_bot: BotFactory
) -> None:
    pub, sub = await start_call(make_bot, "room1", "a")
    transport = publisher_of(node, pub).transport
    target = transport.local_address
    assert target is not None
    before = (transport.srtp_errors, transport.dropped_datagrams, transport.handler_errors)
    datagrams = [b"\x80" + os.urandom(size - 1) for size in (1501, 2000, 9000, 60000)]
    flood = Flood(target, datagrams, seconds=0.05).start()
    await asyncio.sleep(0.3)
    flood.stop()
    counted = (transport.srtp_errors - before[0]) + (transport.dropped_datagrams - before[1])
    assert transport.handler_errors == before[2], "oversized datagrams raised in the handler"
    assert counted == len(datagrams)


async def test_large_rtp_packets_are_forwarded(node: Node, make_bot: BotFactory) -> None:
    pub, sub = await start_call(make_bot, "room1", "a", record=True)
    assert pub.pub is not None and pub.pub._tx is not None
    # The bot's own SRTP session has the same 1500-byte buffer: give it room
    # to protect a 1400-byte packet (1410 bytes on the wire, under 1500).
    from pylibsrtp._binding import ffi

    tx = pub.pub._tx
    tx._cdata = ffi.new("char[]", 4096)
    tx._buffer = ffi.buffer(tx._cdata)
    publisher = publisher_of(node, pub)
    before = publisher.transport.handler_errors
    audio = next(s for s in pub.streams.values() if s.info.kind == "audio")
    for _ in range(5):
        pub._send_media(audio, [bytes(1380)], audio.seq * 960)
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.3)
    assert publisher.transport.handler_errors == before
    track = next(t for t in sub.tracks.values() if t.kind == "audio")
    assert track.payloads is not None
    assert any(len(p) == 1380 for p in track.payloads.values())
