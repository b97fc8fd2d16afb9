"""Simulcast forwarding decisions of Receiver -> DownTrack, driven with synthetic
RTP packets (no sockets: the send callback collects what the subscriber would get).
"""

from __future__ import annotations

from dataclasses import dataclass

from sfu.core.rtp import build_packet, parse_header
from sfu.core.vp8 import parse_descriptor
from sfu.downtrack import DownTrack
from sfu.receiver import Receiver
from sfu.sdp import Codec
from sfu.track import PublishedTrack

VP8 = Codec(96, "VP8", 90000)
H264 = Codec(102, "H264", 90000, fmtp="packetization-mode=1")


def vp8_payload(
    picture_id: int,
    *,
    start: bool = True,
    key: bool = False,
    tl0: int = 0,
    tid: int = 0,
    sync: bool = False,
    size: tuple[int, int] = (320, 180),
) -> bytes:
    """RFC 7741 §4.2 descriptor (X, I with 15-bit PictureID, L, T) + a VP8 header."""
    descriptor = bytes(
        [
            0x80 | (0x10 if start else 0),
            0x80 | 0x40 | 0x20,
            0x80 | (picture_id >> 8) & 0x7F,
            picture_id & 0xFF,
            tl0 & 0xFF,
            (tid << 6) | (0x20 if sync else 0),
        ]
    )
    if not start:
        return descriptor + b"\x11" * 20
    if key:
        width, height = size
        # RFC 6386 §9.1: frame tag with P=0, start code, 14-bit sizes.
        header = b"\x10\x02\x00\x9d\x01\x2a" + bytes(
            [width & 0xFF, width >> 8, height & 0xFF, height >> 8]
        )
        return descriptor + header + b"\x00" * 20
    return descriptor + b"\x31\x02\x00" + b"\x00" * 20


@dataclass
class Publisher:
    """One synthetic layer: numbers its packets like an encoder would."""

    receiver: Receiver
    ssrc: int
    seq: int = 1000
    ts: int = 5000
    picture_id: int = 100
    tl0: int = 7
    now_s: float = 100.0

    def frame(self, *, key: bool = False, tid: int = 0, sync: bool = False, packets: int = 1):
        self.picture_id = (self.picture_id + 1) & 0x7FFF
        if tid == 0:
            self.tl0 = (self.tl0 + 1) & 0xFF
        self.ts += 3000
        self.now_s += 0.033
        for i in range(packets):
            payload = vp8_payload(
                self.picture_id, start=i == 0, key=key, tl0=self.tl0, tid=tid, sync=sync
            )
            self.send(
                build_packet(i == packets - 1, 96, self.seq, self.ts, self.ssrc, b"", payload)
            )

    def send(self, packet: bytes) -> None:
        self.seq = (self.seq + 1) & 0xFFFF
        self.receiver.on_rtp(packet, parse_header(packet), self.now_s)


def make_track(codec: Codec = VP8, rids: tuple[str | None, ...] = ("q", "h")) -> PublishedTrack:
    layers = [
        Receiver(
            track_id="TR_x",
            kind="video",
            codec=codec,
            rtx_payload_type=None,
            extension_ids={},
            feedback=frozenset({"nack", "nack pli"}),
            rtcp_ssrc=1,
            send_rtcp=lambda _packet: True,
            cname="c",
            rid=rid,
        )
        for rid in rids
    ]
    return PublishedTrack("TR_x", "video", codec, "c", layers)


def make_downtrack(track: PublishedTrack, sent: list[bytes]) -> DownTrack:
    downtrack = DownTrack(
        track,
        subscriber_id="PA_s",
        mid="0",
        ssrc=0xABCD,
        payload_type=96,
        rtx_ssrc=None,
        rtx_payload_type=None,
        send_rtp=lambda packet: sent.append(packet) is None,
        seq_start=10,
        ts_start=20,
    )
    downtrack.attach()
    downtrack.negotiated = downtrack.active = True
    return downtrack


def forwarded(sent: list[bytes]) -> list[tuple[int, int | None, int | None]]:
    """(seq, picture id, tid) of each packet sent to the subscriber."""
    out = []
    for packet in sent:
        header = parse_header(packet)
        descriptor = parse_descriptor(packet[header.payload_start : header.payload_end])
        out.append((header.seq, descriptor.picture_id, descriptor.tid))
    return out


def test_temporal_ceiling_rises_only_at_a_sync_frame_of_the_next_layer() -> None:
    track = make_track(rids=(None,))
    sent: list[bytes] = []
    downtrack = make_downtrack(track, sent)
    layer = Publisher(track.layers[0], ssrc=1)
    downtrack._max_temporal = 0  # what the selector decided
    layer.frame(key=True)
    layer.frame(tid=1, sync=True)  # dropped: above the ceiling
    assert [tid for _s, _p, tid in forwarded(sent)] == [0]
    downtrack._max_temporal = 1  # the estimate grew
    layer.frame(tid=0)
    layer.frame(tid=1, sync=False)  # not decodable for this subscriber: still dropped
    layer.frame(tid=0)
    layer.frame(tid=1, sync=True)  # the switch-up point
    layer.frame(tid=1, sync=False)
    tids = [tid for _s, _p, tid in forwarded(sent)]
    assert tids == [0, 0, 0, 1, 1]
    seqs = [seq for seq, _p, _t in forwarded(sent)]
    pids = [pid for _s, pid, _t in forwarded(sent)]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert pids == list(range(pids[0], pids[0] + len(pids)))


def test_pending_switch_keeps_the_current_layers_temporal_ceiling() -> None:
    track = make_track()
    sent: list[bytes] = []
    downtrack = make_downtrack(track, sent)
    low, high = Publisher(track.layers[0], ssrc=1), Publisher(track.layers[1], ssrc=2)
    downtrack._max_temporal = 0
    high.frame(key=True)
    low.frame(key=False)
    # The selector picks the low layer, all its temporal layers: until low's
    # keyframe, high keeps flowing at its current ceiling.
    downtrack._target = track.layers[0]
    downtrack._target_temporal = 1
    track.layers[0].add_downtrack(downtrack)
    high.frame(tid=1, sync=True)
    assert [tid for _s, _p, tid in forwarded(sent)] == [0]
    low.frame(key=True)
    low.frame(tid=1)
    assert [tid for _s, _p, tid in forwarded(sent)] == [0, 0, 1]
    assert downtrack.receiver is track.layers[0]
    assert downtrack not in track.layers[1].downtracks


def test_a_new_publisher_ssrc_is_awaited_with_keyframe_requests() -> None:
    track = make_track(rids=(None,))
    sent: list[bytes] = []
    downtrack = make_downtrack(track, sent)
    Publisher(track.layers[0], ssrc=1).frame(key=True)
    assert downtrack.awaited_layer is None
    restarted = Publisher(track.layers[0], ssrc=99, seq=5)
    restarted.frame()
    assert downtrack.awaited_layer is track.layers[0]
    restarted.frame(key=True)
    assert downtrack.awaited_layer is None
    seqs = [seq for seq, _p, _t in forwarded(sent)]
    assert seqs == [10, 11]


def test_nack_for_an_earlier_period_of_the_same_layer_is_not_answered() -> None:
    track = make_track(rids=(None,))
    sent: list[bytes] = []
    downtrack = make_downtrack(track, sent)
    layer = Publisher(track.layers[0], ssrc=1)
    layer.frame(key=True)
    layer.frame()
    before_pause = forwarded(sent)[-1][0]
    downtrack.pause()
    layer.frame()
    downtrack.resume(0)
    layer.frame(key=True)
    sent.clear()
    downtrack.on_nack([before_pause], 200.0)
    assert sent == [] and downtrack.nack_misses == 1
    # A packet of the current period is resent with the ids it had.
    current = downtrack._period_start
    assert current is not None
    downtrack.on_nack([current], 200.0)
    assert len(sent) == 1 and downtrack.retransmitted == 1


def h264_packet(nal: bytes, *, seq: int, ts: int) -> bytes:
    return build_packet(False, 102, seq, ts, 7, b"", nal)


def test_h264_switch_point_is_the_first_key_packet_of_a_frame() -> None:
    track = make_track(H264, rids=(None,))
    receiver = track.layers[0]
    sent: list[bytes] = []
    make_downtrack(track, sent)
    fu_idr_start = bytes([0x7C, 0x85]) + b"\x00" * 10  # FU-A, S=1, type 5
    single_idr = bytes([0x65]) + b"\x00" * 10  # a second IDR slice of the same picture
    for seq, ts, payload in [(1, 900, single_idr), (2, 1800, fu_idr_start), (3, 1800, single_idr)]:
        packet = h264_packet(payload, seq=seq, ts=ts)
        receiver.on_rtp(packet, parse_header(packet), 1.0 + seq / 100)
    # The slice at seq 1 starts its picture; at ts 1800 only the first IDR
    # packet is a place to start, the second slice is not.
    assert receiver.keyframes_seen == 2
    assert len(sent) == 3


def test_a_layer_that_stops_is_noticed_at_a_measuring_tick() -> None:
    track = make_track()
    sent: list[bytes] = []
    downtrack = make_downtrack(track, sent)
    low, high = Publisher(track.layers[0], ssrc=1), Publisher(track.layers[1], ssrc=2)
    low.frame(key=True)
    high.frame(key=True)
    now_ms = int(high.now_s * 1000)
    track.tick(now_ms)
    assert [r.arriving for r in track.rates()] == [True, True]
    calls = []
    downtrack.update_layer = lambda now, budget: calls.append(now)  # type: ignore[method-assign]
    # 600 ms later (past the 500 ms timeout and on a 250 ms measuring tick).
    track.tick(now_ms + 600)
    assert [r.arriving for r in track.rates()] == [False, False]
    assert calls == [now_ms + 600]
