"""Microbenchmark of the per-packet forwarding path: publisher packet in, N
subscriber packets out, no sockets.

One real PublishedTrack (one VP8 Receiver) with N real DownTracks, configured
with the subscriber-leg extension ids the subscriber offer uses (mid 1,
abs-send-time 2, audio level 3, video orientation 4). Each publisher packet
takes the path `Publisher._on_rtp` takes after SRTP unprotect: parse_header,
the SSRC route lookup, Receiver.on_rtp, and from there the synchronous fan-out
to every DownTrack.write.

Modes:
  send  every DownTrack sends to a no-op sink: our Python work only.
  srtp  every DownTrack sends through a real PeerTransport.send_rtp with its
        own pylibsrtp.Session (SRTP protect per packet); only the socket's
        sendto is stubbed out: what a real send costs minus the syscall.

CPU time comes from time.process_time_ns() around the feeding loop (packets
are built beforehand) and is reported per packet and per packet x subscriber.

    .venv/bin/python bench/hotpath.py [--subscribers 1,50,200] [--packets 20000]
        [--mode send,srtp] [--distinct-mids K] [--max-temporal T] [--json]
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

try:
    import sfu  # noqa: F401
except ImportError:  # run from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pylibsrtp

from sfu.core.demux import Demuxer
from sfu.core.rtp import (
    EXT_ABS_SEND_TIME,
    EXT_MID,
    EXT_VIDEO_ORIENTATION,
    RtpError,
    abs_send_time,
    build_extension_block,
    build_packet,
)
from sfu.downtrack import DownTrack
from sfu.negotiate import SUBSCRIBE_EXTENSION_IDS
from sfu.publisher import Publisher
from sfu.receiver import Receiver
from sfu.sdp import Codec
from sfu.track import PublishedTrack
from sfu.transport import PeerTransport

PACKET_BYTES = 1100
VP8 = Codec(96, "VP8", 90000)
RTX_PAYLOAD_TYPE = 97
PUBLISHER_SSRC = 0x1234_5678
#: The ids Chrome offers on the publisher leg (the answer echoes them).
PUBLISHER_EXTENSION_IDS = {EXT_ABS_SEND_TIME: 2, EXT_MID: 4, EXT_VIDEO_ORIENTATION: 13}
PUBLISHER_MID = "1"
FRAME_RATE_HZ = 30
KEYFRAME_PACKETS = 30
DELTA_FRAME_PACKETS = 4
#: L1T3 (RFC 7741 §4.2 TID/Y): TL0, TL2, TL1, TL2; every upper-layer frame but
#: the last references only lower layers, so it has Y set.
TEMPORAL_PATTERN = ((0, False), (2, True), (1, True), (2, False))


@dataclass(slots=True)
class Result:
    mode: str
    subscribers: int
    packets: int
    distinct_mids: int
    cpu_ms: float
    us_per_packet: float
    us_per_packet_subscriber: float
    sent: int


# --- the publisher's stream ---------------------------------------------------


def vp8_payload(
    picture_id: int, tl0: int, tid: int, sync: bool, *, start: bool, key: bool, size: int
) -> bytes:
    """A `size`-byte RTP payload: RFC 7741 §4.2 descriptor (X; I with a 15-bit
    PictureID, L, T) and, on a frame's first packet, the VP8 frame header
    (RFC 6386 §9.1: P=0 and a 640x360 picture on a keyframe)."""
    descriptor = bytes(
        (
            0x80 | (0x10 if start else 0),
            0x80 | 0x40 | 0x20,
            0x80 | (picture_id >> 8) & 0x7F,
            picture_id & 0xFF,
            tl0 & 0xFF,
            (tid << 6) | (0x20 if sync else 0),
        )
    )
    head = b""
    if start:
        head = b"\x10\x02\x00\x9d\x01\x2a\x80\x02\x68\x01" if key else b"\x31\x02\x00"
    filler = random.Random(picture_id).randbytes(size - len(descriptor) - len(head))
    return descriptor + head + filler


def publisher_packets(count: int) -> list[tuple[bytes, float]]:
    """`count` (packet, arrival time) pairs of a 30 fps VP8 stream, keyframe
    first, every packet PACKET_BYTES long with abs-send-time and MID extensions
    (and video orientation on the last packet of a keyframe, as Chrome sends it)."""
    out: list[tuple[bytes, float]] = []
    seq, ts, picture_id, tl0 = 40000, 123456, 1000, 10
    arrival_s = 1000.0
    frame = 0
    while len(out) < count:
        key = frame == 0
        tid, sync = (0, False) if key else TEMPORAL_PATTERN[frame % len(TEMPORAL_PATTERN)]
        if tid == 0:
            tl0 = (tl0 + 1) & 0xFF
        packets = KEYFRAME_PACKETS if key else DELTA_FRAME_PACKETS
        for i in range(packets):
            last = i == packets - 1
            elements = [
                (PUBLISHER_EXTENSION_IDS[EXT_ABS_SEND_TIME], abs_send_time(arrival_s)),
                (PUBLISHER_EXTENSION_IDS[EXT_MID], PUBLISHER_MID.encode()),
            ]
            if key and last:
                elements.append((PUBLISHER_EXTENSION_IDS[EXT_VIDEO_ORIENTATION], b"\x00"))
            ext_block = build_extension_block(elements)
            payload = vp8_payload(
                picture_id,
                tl0,
                tid,
                sync,
                start=i == 0,
                key=key,
                size=PACKET_BYTES - 12 - len(ext_block),
            )
            packet = build_packet(
                last, VP8.payload_type, seq, ts, PUBLISHER_SSRC, ext_block, payload
            )
            assert len(packet) == PACKET_BYTES
            out.append((packet, arrival_s))
            seq = (seq + 1) & 0xFFFF
            arrival_s += 0.0005
        frame += 1
        picture_id = (picture_id + 1) & 0x7FFF
        ts = (ts + 90000 // FRAME_RATE_HZ) & 0xFFFFFFFF
        arrival_s += 1 / FRAME_RATE_HZ
    return out[:count]


# --- the SFU side -------------------------------------------------------------


def make_track() -> PublishedTrack:
    receiver = Receiver(
        track_id="TR_bench",
        kind="video",
        codec=VP8,
        rtx_payload_type=RTX_PAYLOAD_TYPE,
        extension_ids=dict(PUBLISHER_EXTENSION_IDS),
        feedback=frozenset({"nack", "nack pli", "ccm fir", "goog-remb"}),
        rtcp_ssrc=1,
        send_rtcp=lambda _packet: True,
        cname="bench",
    )
    return PublishedTrack("TR_bench", "video", VP8, "bench", [receiver])


def make_publisher(track: PublishedTrack) -> Publisher:
    """The publisher's media side without its transport: only what `_on_rtp`
    (parse, route by SSRC, hand to the Receiver) reads."""
    publisher = Publisher.__new__(Publisher)
    publisher._demux = Demuxer()
    publisher._demux.add_media(
        PUBLISHER_MID, track.layers[0], VP8.payload_type, RTX_PAYLOAD_TYPE, ssrc=PUBLISHER_SSRC
    )
    publisher._mid_ext_id = PUBLISHER_EXTENSION_IDS[EXT_MID]
    publisher._rid_ext_id = 0
    publisher._rrid_ext_id = 0
    publisher.malformed_rtp = 0
    publisher.unroutable = 0
    return publisher


class _NoSocket:
    """Stands in for the ICE link: the datagram is dropped where sendto would be."""

    def send_raw(self, datagram: bytes) -> None:
        pass


#: SRTP profiles by name: libsrtp profile, master key + salt length in bytes
#: (RFC 7714 §12 for AEAD-GCM, RFC 5764 §4.1.2 for CM-SHA1). aiortc, as DTLS
#: server, prefers them in this order.
SRTP_PROFILES = {
    "gcm256": (pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_256_GCM, 32 + 12),
    "gcm128": (pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM, 16 + 12),
    "cm80": (pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80, 16 + 14),
}


def srtp_transport(profile: str) -> PeerTransport:
    """A PeerTransport reduced to its send side: a real outbound SRTP session."""
    transport = PeerTransport.__new__(PeerTransport)
    libsrtp_profile, key_bytes = SRTP_PROFILES[profile]
    policy = pylibsrtp.Policy(
        key=random.Random(7).randbytes(key_bytes),
        ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
        srtp_profile=libsrtp_profile,
    )
    transport._tx = pylibsrtp.Session(policy)
    transport._link = _NoSocket()
    transport.tx_rtp_packets = transport.tx_rtp_bytes = transport.send_errors = 0
    return transport


class Counter:
    """The no-op sink: counts, so the run can check everything was forwarded."""

    def __init__(self) -> None:
        self.sent = 0

    def send(self, packet: bytes) -> bool:
        self.sent += 1
        return True


def make_downtracks(
    track: PublishedTrack,
    count: int,
    mode: str,
    distinct_mids: int,
    max_temporal: int,
    srtp_profile: str = "gcm256",
) -> tuple[list[DownTrack], Callable[[], int]]:
    """`count` attached, negotiated, active DownTracks; returns them and a
    function counting what they sent."""
    downtracks: list[DownTrack] = []
    counters: list[Counter] = []
    transports: list[PeerTransport] = []
    for i in range(count):
        if mode == "srtp":
            transport = srtp_transport(srtp_profile)
            transports.append(transport)
            send = transport.send_rtp
        else:
            counter = Counter()
            counters.append(counter)
            send = counter.send
        # A subscriber's mid is its m-section's slot number (one audio and one
        # video slot per publisher it follows); `distinct_mids` of them differ.
        mid = str(2 * (i % distinct_mids) + 1) if distinct_mids else str(2 * i + 1)
        downtrack = DownTrack(
            track,
            subscriber_id=f"PA_{i}",
            mid=mid,
            ssrc=0x1000_0000 + i,
            payload_type=VP8.payload_type,
            rtx_ssrc=0x2000_0000 + i,
            rtx_payload_type=RTX_PAYLOAD_TYPE,
            send_rtp=send,
            seq_start=(i * 7919) & 0x7FFF,
            ts_start=(i * 104729) & 0x7FFFFFFF,
        )
        downtrack.configure(dict(SUBSCRIBE_EXTENSION_IDS), True)
        downtrack.negotiated = downtrack.active = True
        downtrack.attach()
        downtrack._max_temporal = max_temporal  # what the layer selector would decide
        downtracks.append(downtrack)

    def sent() -> int:
        if mode == "srtp":
            return sum(t.tx_rtp_packets for t in transports)
        return sum(c.sent for c in counters)

    return downtracks, sent


# --- measuring ----------------------------------------------------------------


def feed(publisher: Publisher, packets: list[tuple[bytes, float]]) -> None:
    """What PeerTransport._on_srtp does after unprotect, for every packet."""
    on_rtp = publisher._on_rtp
    for packet, arrival_s in packets:
        on_rtp(packet, arrival_s)


def run(
    mode: str,
    subscribers: int,
    packets: list[tuple[bytes, float]],
    distinct_mids: int,
    max_temporal: int,
    srtp_profile: str = "gcm256",
) -> Result:
    track = make_track()
    publisher = make_publisher(track)
    downtracks, sent = make_downtracks(
        track, subscribers, mode, distinct_mids, max_temporal, srtp_profile
    )
    gc.collect()
    start_ns = time.process_time_ns()
    feed(publisher, packets)
    cpu_ns = time.process_time_ns() - start_ns
    if publisher.malformed_rtp or publisher.unroutable:
        raise RtpError("the benchmark's own packets did not route")
    forwarded = sent()
    expected = sum(d.packets_sent for d in downtracks)
    if forwarded != expected or (max_temporal < 0 and forwarded != len(packets) * subscribers):
        raise RuntimeError(f"{forwarded} packets sent, expected {expected}")
    n = len(packets)
    return Result(
        mode=mode,
        subscribers=subscribers,
        packets=n,
        distinct_mids=min(distinct_mids, subscribers) if distinct_mids else subscribers,
        cpu_ms=cpu_ns / 1e6,
        us_per_packet=cpu_ns / 1e3 / n,
        us_per_packet_subscriber=cpu_ns / 1e3 / (n * subscribers),
        sent=forwarded,
    )


def table(results: list[Result]) -> str:
    lines = [
        f"{'mode':<5} {'subs':>5} {'mids':>5} {'packets':>8} {'cpu ms':>9} "
        f"{'us/packet':>10} {'us/(packet x sub)':>18}"
    ]
    for r in results:
        lines.append(
            f"{r.mode:<5} {r.subscribers:>5} {r.distinct_mids:>5} {r.packets:>8} "
            f"{r.cpu_ms:>9.1f} {r.us_per_packet:>10.2f} {r.us_per_packet_subscriber:>18.3f}"
        )
    return "\n".join(lines)


def _int_list(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--subscribers", type=_int_list, default=[50], help="count, or a comma list (1,50,200)"
    )
    parser.add_argument("--packets", type=int, default=20000, help="publisher packets per run")
    parser.add_argument(
        "--mode", default="send,srtp", help="send (no-op sink), srtp (protect), or both"
    )
    parser.add_argument(
        "--distinct-mids",
        type=int,
        default=2,
        help="distinct mid values among subscribers (0: every subscriber its own); "
        "subscribers that joined in the same order share the slot of a track",
    )
    parser.add_argument(
        "--max-temporal",
        type=int,
        default=-1,
        help="VP8 temporal layer ceiling of every subscriber (-1: all layers)",
    )
    parser.add_argument(
        "--srtp-profile", choices=sorted(SRTP_PROFILES), default="gcm256", help="srtp mode's cipher"
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per case; the fastest is kept")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    modes = [m for m in args.mode.split(",") if m]
    for mode in modes:
        if mode not in ("send", "srtp"):
            parser.error(f"unknown mode {mode!r}")
    packets = publisher_packets(args.packets)
    results = []
    for mode in modes:
        for subscribers in args.subscribers:
            runs = [
                run(
                    mode,
                    subscribers,
                    packets,
                    args.distinct_mids,
                    args.max_temporal,
                    args.srtp_profile,
                )
                for _ in range(max(1, args.repeat))
            ]
            results.append(min(runs, key=lambda r: r.cpu_ms))
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))
    else:
        print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
