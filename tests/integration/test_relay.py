"""Two relays (sfu.relay.Relay) in one event loop on 127.0.0.1, sharing a cluster
key: node A publishes a VP8 track, node B acquires it. Media reaches B byte for
byte on one stream however often B asks, B's keyframe requests and NACKs are
answered by A, strangers' and replayed datagrams are refused without costing
memory, and streams stop when their lease runs out or nobody on B watches."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field

import pytest

from sfu.core.relay_wire import Kind, Sealer
from sfu.core.rtcp import Nack, Pli, parse_compound
from sfu.core.rtp import build_packet, parse_header
from sfu.receiver import Receiver
from sfu.relay import (
    IDLE_RELEASE_MS,
    LEASE_MS,
    LEASE_REFRESH_MS,
    Relay,
    RemoteTrackSpec,
)
from sfu.sdp import Codec
from sfu.track import PublishedTrack

KEY = bytes(range(32))
OTHER_KEY = bytes(range(100, 132))
TRACK_ID = "TR_video"
SSRC = 0x1234_5678
A_RTCP_SSRC = 0xA0A0_A0A0
VP8 = Codec(96, "VP8", 90000)
FEEDBACK = frozenset({"nack", "nack pli"})


def now_ms() -> int:
    # The clock the relay reads when a datagram arrives (and the media timer ticks with).
    return int(time.monotonic() * 1000)


def vp8_packet(seq: int, keyframe: bool = False) -> bytes:
    # VP8 descriptor 0x10 (S=1, start of a frame), then the frame's first bytes:
    # bit 0 of the first is P, 0 for a keyframe (RFC 7741 §4.3).
    payload = bytes([0x10, 0x00 if keyframe else 0x01]) + bytes([seq & 0xFF]) * 20
    return build_packet(seq == 10, 96, seq, 3000 * (seq // 5), SSRC, b"", payload)


async def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 2.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


@dataclass
class Nodes:
    a: Relay
    b: Relay
    track: PublishedTrack  # published on A
    receiver: Receiver  # its only layer
    upstream: list[bytes] = field(default_factory=list)  # RTCP A sent its publisher

    def feed(self, seq: int, keyframe: bool = False) -> bytes:
        packet = vp8_packet(seq, keyframe)
        self.receiver.on_rtp(packet, parse_header(packet), time.monotonic())
        return packet

    async def acquire(self) -> tuple[PublishedTrack, Receiver, int]:
        """B acquires A's track; returns B's track, its receiver and B's now_ms."""
        assert self.a.address is not None
        t = now_ms()
        track = self.b.acquire(RemoteTrackSpec.of(self.track), self.a.address, t)
        await wait_for(lambda: self.a.stats.out_streams == 1, "A to start sending")
        return track, track.layers[0], t


@pytest.fixture
async def nodes() -> AsyncIterator[Nodes]:
    upstream: list[bytes] = []

    def send_rtcp(packet: bytes) -> bool:
        upstream.append(packet)
        return True

    receiver = Receiver(
        track_id=TRACK_ID,
        kind="video",
        codec=VP8,
        rtx_payload_type=None,
        extension_ids={},
        feedback=FEEDBACK,
        rtcp_ssrc=A_RTCP_SSRC,
        send_rtcp=send_rtcp,
        cname="cname-a",
    )
    track = PublishedTrack(TRACK_ID, "video", VP8, "cname-a", [receiver])
    a = Relay("ND_a", KEY, lambda track_id: track if track_id == TRACK_ID else None)
    b = Relay("ND_b", KEY, lambda track_id: None)
    try:
        await a.start("127.0.0.1", 0)
        await b.start("127.0.0.1", 0)
        yield Nodes(a, b, track, receiver, upstream)
    finally:
        b.close()
        a.close()


@pytest.fixture
def udp() -> Iterator[Callable[[], socket.socket]]:
    """Plain UDP sockets on 127.0.0.1, as a stranger would use."""
    sockets: list[socket.socket] = []

    def make() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sockets.append(sock)
        return sock

    yield make
    for sock in sockets:
        sock.close()


# --- media ---------------------------------------------------------------------------


async def test_packets_reach_b_byte_for_byte(nodes: Nodes) -> None:
    track_b, rx_b, _ = await nodes.acquire()
    assert track_b.track_id == TRACK_ID and track_b.kind == "video"
    assert nodes.b.inbound(TRACK_ID) is track_b
    assert nodes.b.stats.in_streams == 1
    assert len(nodes.receiver.relays) == 1

    sent = {seq: nodes.feed(seq, keyframe=seq == 1) for seq in range(1, 11)}
    await wait_for(lambda: rx_b.packets == 10, "B to receive 10 packets")

    for seq, packet in sent.items():
        assert rx_b.cached(seq) == packet
    assert rx_b.ssrc == SSRC
    assert rx_b.duplicates == 0
    assert rx_b.keyframes_seen == 1
    assert nodes.a.stats.rejected == nodes.b.stats.rejected == 0
    assert nodes.b.stats.replayed == nodes.b.stats.malformed == 0
    # A sent each packet once, and nothing else (no sender report yet).
    assert nodes.a.stats.packets_sent == 10


async def test_sender_report_reaches_b(nodes: Nodes) -> None:
    _, rx_b, _ = await nodes.acquire()
    nodes.feed(1, keyframe=True)
    await wait_for(lambda: rx_b.packets == 1, "B to receive a packet")
    nodes.receiver.on_sender_report(0xE8A1_0000_8000_0000, 123456, time.monotonic())
    await wait_for(lambda: rx_b.last_sr is not None, "B to receive the sender report")
    assert rx_b.last_sr == (0xE8A1_0000_8000_0000, 123456)


async def test_last_sender_report_sent_at_subscribe_survives_first_packet(nodes: Nodes) -> None:
    nodes.feed(1, keyframe=True)
    nodes.receiver.on_sender_report(0xE8A1_0000_8000_0000, 3000, time.monotonic())
    _, rx_b, _ = await nodes.acquire()
    await wait_for(lambda: rx_b.last_sr is not None, "B to receive the last sender report")
    nodes.feed(2)
    await wait_for(lambda: rx_b.packets == 1, "B to receive a packet")
    assert rx_b.last_sr == (0xE8A1_0000_8000_0000, 3000)


async def test_one_out_stream_however_often_b_acquires(nodes: Nodes) -> None:
    track_b, _, t = await nodes.acquire()
    assert nodes.b.acquire(RemoteTrackSpec.of(nodes.track), nodes.a.address, t + 10) is track_b
    assert nodes.a.stats.subscribes_received == 1
    # B's lease refresh repeats SUBSCRIBE: A refreshes the stream it has.
    nodes.b.tick(t + LEASE_REFRESH_MS)
    await wait_for(lambda: nodes.a.stats.subscribes_received == 2, "B's refresh to arrive")
    assert nodes.b.acquire(RemoteTrackSpec.of(nodes.track), nodes.a.address, t + 20) is track_b
    assert nodes.a.stats.out_streams == 1
    assert nodes.b.stats.in_streams == 1
    assert len(nodes.receiver.relays) == 1
    before = nodes.a.stats.packets_sent
    nodes.feed(1)  # sent synchronously from Receiver.on_rtp: once, to B
    assert nodes.a.stats.packets_sent == before + 1


# --- feedback --------------------------------------------------------------------------


async def test_a_new_stream_asks_the_publisher_for_a_keyframe(nodes: Nodes) -> None:
    nodes.feed(1)  # A knows the publisher's SSRC before B subscribes
    await nodes.acquire()
    assert [parse_compound(p) for p in nodes.upstream] == [[Pli(A_RTCP_SSRC, SSRC)]]


async def test_pli_from_b_reaches_the_publisher(nodes: Nodes) -> None:
    _, rx_b, _ = await nodes.acquire()
    assert nodes.upstream == []  # A had no packet yet when B subscribed
    nodes.feed(1)
    await wait_for(lambda: rx_b.packets == 1, "B to receive a packet")

    assert rx_b.request_keyframe(now_ms())
    await wait_for(lambda: nodes.upstream, "A to send a PLI upstream")
    assert nodes.a.stats.keyframe_requests_received == 1
    assert [parse_compound(p) for p in nodes.upstream] == [[Pli(A_RTCP_SSRC, SSRC)]]
    assert nodes.receiver.keyframe_requests == 1


async def test_nack_from_b_is_answered_from_a_cache(nodes: Nodes) -> None:
    _, rx_b, _ = await nodes.acquire()
    sent = {seq: nodes.feed(seq, keyframe=seq == 1) for seq in range(1, 5)}
    # Packet 5 reaches A's cache but not B: A's tap is off for that one packet
    # (a loss on the relay leg, without a lossy network).
    (tap,) = nodes.receiver.relays
    nodes.receiver.remove_relay(tap)
    sent[5] = nodes.feed(5)
    nodes.receiver.add_relay(tap)
    assert nodes.receiver.cached(5) == sent[5]
    sent.update({seq: nodes.feed(seq) for seq in range(6, 11)})

    # B sees the gap at 6 and NACKs 5 at once; A retransmits it from its cache.
    await wait_for(lambda: rx_b.cached(5) is not None, "B to get packet 5 again")
    assert nodes.a.stats.nacks_received == 1
    assert nodes.a.stats.retransmitted == 1
    await wait_for(lambda: rx_b.packets == 10, "B to have all 10 packets")
    for seq, packet in sent.items():
        assert rx_b.cached(seq) == packet
    assert rx_b.nacks_sent == 1
    assert rx_b.nack.recovered == 1
    assert nodes.upstream == []  # answered by A, not forwarded to the publisher


async def test_nack_for_a_packet_a_does_not_have_is_not_answered(nodes: Nodes) -> None:
    _, rx_b, _ = await nodes.acquire()
    nodes.feed(1, keyframe=True)
    nodes.feed(3)  # 2 was lost on the publisher's leg: neither node has it
    await wait_for(lambda: nodes.a.stats.nacks_received == 1, "A to receive B's NACK")
    assert nodes.a.stats.retransmitted == 0
    assert rx_b.cached(2) is None
    assert rx_b.packets == 2
    # A asked its publisher for 2 itself, as for any local loss.
    (nack,) = parse_compound(nodes.upstream[0])
    assert isinstance(nack, Nack) and nack.lost == [2] and nack.media_ssrc == SSRC


# --- strangers -------------------------------------------------------------------------


async def test_garbage_is_refused_and_allocates_nothing(
    nodes: Nodes, udp: Callable[[], socket.socket]
) -> None:
    assert nodes.a.address is not None
    stranger, member = udp(), udp()
    forged = Sealer(OTHER_KEY, 0).seal(Kind.SUBSCRIBE, 0, 7, f"{TRACK_ID}\nND_evil".encode())
    garbage = [
        bytes(range(7, 107)),  # arbitrary bytes
        b"\x01",  # too short
        forged,  # sealed with another key
        b"\x02" + forged[1:],  # another version
    ]
    for data in garbage:
        stranger.sendto(data, nodes.a.address)
    await wait_for(lambda: nodes.a.stats.rejected == len(garbage), "A to refuse the garbage")
    assert nodes.a._windows == {}  # a stranger allocates no replay window
    assert nodes.a.stats.out_streams == 0
    assert nodes.a.stats.subscribes_received == 0
    assert nodes.a.stats.packets_received == 0

    # A valid datagram (sealed with the cluster key), then the same bytes again.
    captured = Sealer(KEY, 0).seal(Kind.SUBSCRIBE, 0, 7, b"TR_unknown\nND_member")
    member.sendto(captured, nodes.a.address)
    member.sendto(captured, nodes.a.address)
    await wait_for(lambda: nodes.a.stats.replayed == 1, "A to refuse the replay")
    assert nodes.a.stats.packets_received == 1
    assert nodes.a.stats.subscribes_received == 1
    assert nodes.a.stats.unknown_tracks == 1
    assert len(nodes.a._windows) == 1  # the one authenticated sender
    assert nodes.a.stats.rejected == len(garbage)
    assert nodes.a.stats.out_streams == 0


async def test_replay_from_another_address_is_refused(
    nodes: Nodes, udp: Callable[[], socket.socket]
) -> None:
    assert nodes.a.address is not None
    member, eavesdropper = udp(), udp()
    captured = Sealer(KEY, 0).seal(Kind.SUBSCRIBE, 0, 7, f"{TRACK_ID}\nND_member".encode())
    member.sendto(captured, nodes.a.address)
    await wait_for(lambda: nodes.a.stats.out_streams == 1, "A to send to the member")
    eavesdropper.sendto(captured, nodes.a.address)
    await wait_for(
        lambda: nodes.a.stats.replayed + nodes.a.stats.subscribes_received == 2,
        "A to handle the replay",
    )
    assert nodes.a.stats.replayed == 1
    assert nodes.a.stats.out_streams == 1  # not also streaming the track to the eavesdropper


async def test_media_on_an_unknown_channel_is_counted(
    nodes: Nodes, udp: Callable[[], socket.socket]
) -> None:
    assert nodes.b.address is not None
    member = udp()
    sealer = Sealer(KEY, 0)
    member.sendto(sealer.seal(Kind.RTP, 0, 99, vp8_packet(1)), nodes.b.address)
    member.sendto(
        sealer.seal(Kind.FEEDBACK, 0, 99, b"\x81\xce\x00\x02" + bytes(8)), nodes.b.address
    )
    await wait_for(lambda: nodes.b.stats.unknown_channel == 2, "B to drop both")
    assert nodes.b.stats.in_streams == 0


# --- lifetime --------------------------------------------------------------------------


async def test_a_drops_the_stream_when_the_lease_runs_out(nodes: Nodes) -> None:
    _, rx_b, before = await nodes.acquire()  # `before` SUBSCRIBE arrived at A
    nodes.a.tick(before + LEASE_MS)  # B never refreshes: still within the lease
    assert nodes.a.stats.out_streams == 1

    nodes.a.tick(now_ms() + LEASE_MS + 1)  # after SUBSCRIBE arrived, plus the lease
    assert nodes.a.stats.out_streams == 0
    assert nodes.receiver.relays == []
    sent = nodes.a.stats.packets_sent
    nodes.feed(1)
    assert nodes.a.stats.packets_sent == sent  # nothing goes to B any more
    assert rx_b.packets == 0


async def test_a_drops_the_stream_when_the_track_is_unpublished(nodes: Nodes) -> None:
    await nodes.acquire()
    nodes.track.close()
    nodes.a.tick(now_ms())
    assert nodes.a.stats.out_streams == 0


async def test_b_close_unsubscribes(nodes: Nodes) -> None:
    track_b, _, _ = await nodes.acquire()
    nodes.b.close()
    await wait_for(lambda: nodes.a.stats.out_streams == 0, "A to receive UNSUBSCRIBE")
    assert nodes.receiver.relays == []
    assert track_b.closed


class FakeDownTrack:
    """Stands in for a subscriber on B: the relay only checks the track has one."""

    def __init__(self) -> None:
        self.detached = False

    def detach(self) -> None:
        self.detached = True


async def test_b_releases_a_track_nobody_watches(nodes: Nodes) -> None:
    track_b, _, t = await nodes.acquire()
    subscriber = FakeDownTrack()
    track_b.add_downtrack(subscriber)  # type: ignore[arg-type]
    nodes.b.tick(t)
    nodes.b.tick(t + IDLE_RELEASE_MS)
    assert nodes.b.stats.in_streams == 1  # watched: kept

    track_b.remove_downtrack(subscriber)  # type: ignore[arg-type]
    idle = t + IDLE_RELEASE_MS + 1
    nodes.b.tick(idle)  # idle from here
    nodes.b.tick(idle + IDLE_RELEASE_MS - 1)
    assert nodes.b.stats.in_streams == 1
    assert not track_b.closed

    nodes.b.tick(idle + IDLE_RELEASE_MS)
    assert nodes.b.stats.in_streams == 0
    assert nodes.b.inbound(TRACK_ID) is None
    assert track_b.closed
    await wait_for(lambda: nodes.a.stats.out_streams == 0, "A to receive UNSUBSCRIBE")
    assert nodes.receiver.relays == []


async def test_acquire_again_after_release_gets_a_new_stream(nodes: Nodes) -> None:
    track_b, _, t = await nodes.acquire()
    nodes.b.release_track(TRACK_ID)
    await wait_for(lambda: nodes.a.stats.out_streams == 0, "A to receive UNSUBSCRIBE")
    again, rx_b, _ = await nodes.acquire()
    assert again is not track_b and track_b.closed
    nodes.feed(1)
    await wait_for(lambda: rx_b.packets == 1, "B to receive on the new stream")
