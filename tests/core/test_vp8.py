"""VP8 payload descriptor, keyframe detection, packetizer and assembler (RFC 7741)."""

from __future__ import annotations

import random

import pytest

from sfu.core.vp8 import (
    AssembledFrame,
    Vp8Descriptor,
    Vp8FrameAssembler,
    is_keyframe,
    packetize,
    parse_descriptor,
)

# (descriptor bytes, expected: size, start, partition, non_reference, picture_id,
#  picture_id_bits, tl0picidx, tid, layer_sync, keyidx)
DESCRIPTORS = [
    pytest.param(b"\x10", (1, True, 0, False, None, 0, None, None, False, None), id="minimal-S"),
    pytest.param(
        b"\x03", (1, False, 3, False, None, 0, None, None, False, None), id="minimal-pid3"
    ),
    pytest.param(b"\x80\x00", (2, False, 0, False, None, 0, None, None, False, None), id="X-empty"),
    pytest.param(b"\x90\x80\x2a", (3, True, 0, False, 42, 7, None, None, False, None), id="pid7"),
    pytest.param(
        b"\x90\x80\x81\x23", (4, True, 0, False, 0x123, 15, None, None, False, None), id="pid15"
    ),
    pytest.param(
        b"\x90\x80\xff\xff",
        (4, True, 0, False, 0x7FFF, 15, None, None, False, None),
        id="pid15-max",
    ),
    pytest.param(b"\x90\xc0\x05\x09", (4, True, 0, False, 5, 7, 9, None, False, None), id="pid7-L"),
    pytest.param(b"\x90\x20\x40", (3, True, 0, False, None, 0, None, 1, False, None), id="T-only"),
    pytest.param(
        b"\x90\x20\xa0", (3, True, 0, False, None, 0, None, 2, True, None), id="T-layer-sync"
    ),
    pytest.param(b"\x90\x10\xdf", (3, True, 0, False, None, 0, None, None, False, 31), id="K-only"),
    pytest.param(
        # N=1, PID=3, I/L/T/K all present, 15-bit picture id, TID=2 Y=1 KEYIDX=10.
        b"\xa3\xf0\xff\xff\x05\xaa",
        (6, False, 3, True, 0x7FFF, 15, 5, 2, True, 10),
        id="all-fields",
    ),
    pytest.param(b"\xb0\x70\x07\x2a", (4, True, 0, True, None, 0, 7, 0, True, 10), id="LTK-no-I"),
]


@pytest.mark.parametrize("raw, expected", DESCRIPTORS)
def test_parse_descriptor(raw: bytes, expected: tuple) -> None:
    for payload in (raw, raw + b"\x9d\x01\x2a", memoryview(raw + b"\x00")):
        d = parse_descriptor(payload)
        assert isinstance(d, Vp8Descriptor)
        got = (
            d.size,
            d.start,
            d.partition,
            d.non_reference,
            d.picture_id,
            d.picture_id_bits,
            d.tl0picidx,
            d.tid,
            d.layer_sync,
            d.keyidx,
        )
        assert got == expected
        assert d.frame_start == (d.start and d.partition == 0)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x80",  # X=1 without the extension octet
        b"\x80\x80",  # I=1 without PictureID
        b"\x80\x80\x81",  # M=1 without the second PictureID octet
        b"\x80\x40",  # L=1 without TL0PICIDX
        b"\x80\x20",  # T=1 without TID octet
        b"\x80\x10",  # K=1 without KEYIDX octet
        b"\x80\xf0\x81\x01\x02",  # everything but the TID/KEYIDX octet
    ],
)
def test_parse_descriptor_truncated(raw: bytes) -> None:
    with pytest.raises(ValueError):
        parse_descriptor(raw)


@pytest.mark.parametrize(
    "payload, expected",
    [
        (b"\x90\x80\x81\x23\x50\x00\x00\x9d\x01\x2a", True),  # P=0 after 15-bit pid
        (b"\x10\x50", True),  # minimal descriptor
        (b"\x90\xf0\x81\x23\x05\xaa\x10", True),  # all extensions
        (b"\x90\x80\x81\x23\x51", False),  # P=1: interframe
        (b"\x80\x80\x81\x23\x50", False),  # S=0
        (b"\x91\x80\x81\x23\x50", False),  # S=1 but PID=1
        (b"\x90\x80\x81\x23", False),  # descriptor only, no payload header
        (b"", False),
        (b"\x10", False),
        (b"\x90", False),
        (b"\x90\x80", False),
        (b"\x90\x80\x81", False),
        (b"\xff\xff\xff", False),
        (b"\x90\xf0\xff\xff\x05", False),  # truncated before TID octet
        (bytearray(b"\x10\x00"), True),
        (memoryview(b"\x10\x00"), True),
    ],
)
def test_is_keyframe(payload: bytes, expected: bool) -> None:
    assert is_keyframe(payload) is expected


def test_is_keyframe_never_raises_on_garbage() -> None:
    rng = random.Random(1)
    for _ in range(3000):
        payload = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 8)))
        result = is_keyframe(payload)
        assert isinstance(result, bool)
        if result:
            assert payload[0] & 0x17 == 0x10
    assert is_keyframe(None) is False  # type: ignore[arg-type]


def _frame(size: int, keyframe: bool, seed: int) -> bytes:
    rng = random.Random(seed)
    body = bytearray(rng.randrange(256) for _ in range(size))
    body[0] = (body[0] & 0xFE) | (0 if keyframe else 1)
    return bytes(body)


def test_packetize_layout() -> None:
    frame = _frame(3000, True, 0)
    payloads = packetize(frame, picture_id=0x8123, max_payload=1000)
    assert len(payloads) == 4
    assert all(len(p) <= 1000 for p in payloads)
    for i, p in enumerate(payloads):
        d = parse_descriptor(p)
        assert d.size == 4
        assert d.start is (i == 0)
        assert d.partition == 0
        assert d.picture_id == 0x0123  # masked to 15 bits
        assert d.picture_id_bits == 15
        assert p[0] & 0x80 and p[1] == 0x80 and p[2] & 0x80  # X=1, I=1 only, M=1
    assert b"".join(p[4:] for p in payloads) == frame
    assert is_keyframe(payloads[0])
    assert not any(is_keyframe(p) for p in payloads[1:])
    assert not is_keyframe(packetize(_frame(10, False, 1), 1)[0])
    assert len(packetize(b"\x00" * 1176, 5)) == 1
    assert len(packetize(b"\x00" * 1177, 5)) == 2


def test_packetize_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        packetize(b"", 1)
    with pytest.raises(ValueError):
        packetize(b"\x00", 1, max_payload=4)


Packet = tuple[int, int, bool, bytes]


def _stream(
    count: int, seq0: int = 65530, ts0: int = 0xFFFFFFFF - 6000, sizes: tuple = (2500, 700, 1300)
) -> tuple[list[bytes], list[list[Packet]]]:
    """Frames and their RTP packets (seq, ts, marker, payload); wraps seq and ts."""
    frames, packets = [], []
    seq = seq0
    for i in range(count):
        frame = _frame(sizes[i % len(sizes)], i % 5 == 0, i)
        payloads = packetize(frame, picture_id=i, max_payload=600)
        ts = (ts0 + 3000 * i) & 0xFFFFFFFF
        pkts = []
        for j, p in enumerate(payloads):
            pkts.append((seq & 0xFFFF, ts, j == len(payloads) - 1, p))
            seq += 1
        frames.append(frame)
        packets.append(pkts)
    return frames, packets


def _feed_all(asm: Vp8FrameAssembler, packets: list[Packet]) -> list[AssembledFrame]:
    out: list[AssembledFrame] = []
    for pkt in packets:
        out.extend(asm.feed(*pkt))
    return out


def test_assemble_in_order_with_wraparound() -> None:
    frames, packets = _stream(12)
    asm = Vp8FrameAssembler()
    out = _feed_all(asm, [p for f in packets for p in f])
    assert [f.data for f in out] == frames
    assert [f.keyframe for f in out] == [i % 5 == 0 for i in range(12)]
    assert [f.continuous for f in out] == [False] + [True] * 11
    assert out[0].first_seq == 65530
    assert asm.frames == 12 and asm.incomplete == 0 and asm.pending == 0


def test_assemble_reordered() -> None:
    frames, packets = _stream(20)
    flat = [p for f in packets for p in f]
    rng = random.Random(7)
    # Network jitter: every packet is delayed by up to 5 packet slots, so
    # packets of neighbouring frames interleave.
    flat = [p for _, p in sorted(((i + rng.uniform(0, 5), p) for i, p in enumerate(flat)))]
    assert flat != [p for f in packets for p in f]
    asm = Vp8FrameAssembler()
    out = _feed_all(asm, flat)
    assert [f.data for f in out] == frames
    ts = [f.timestamp for f in out]
    assert ts == [p[0][1] for p in packets]  # timestamp order
    assert asm.incomplete == 0


def test_assemble_duplicates_and_late_packets() -> None:
    frames, packets = _stream(4)
    asm = Vp8FrameAssembler()
    out = []
    for f in packets:
        for p in f:
            out += asm.feed(*p)
            out += asm.feed(*p)  # duplicate
    out += asm.feed(*packets[1][0])  # retransmission of an emitted frame
    assert [f.data for f in out] == frames
    assert asm.late >= 1


@pytest.mark.parametrize("lost", ["middle", "first", "marker"])
def test_assemble_lost_packet_drops_only_that_frame(lost: str) -> None:
    frames, packets = _stream(12)
    victim = packets[3]
    index = {"middle": 1, "first": 0, "marker": len(victim) - 1}[lost]
    del victim[index]
    asm = Vp8FrameAssembler(max_pending=4)
    out = _feed_all(asm, [p for f in packets for p in f])
    out += asm.flush()
    assert [f.data for f in out] == frames[:3] + frames[4:]
    assert asm.incomplete == 1
    continuous = [f.continuous for f in out]
    assert continuous[3] is False  # the frame after the gap
    assert all(continuous[1:3]) and all(continuous[4:])
    assert asm.pending == 0


def test_assemble_is_bounded() -> None:
    frames, packets = _stream(40)
    for f in packets:
        if len(f) > 1:
            del f[0]  # every multi-packet frame loses its first packet
    asm = Vp8FrameAssembler(max_pending=3)
    out = []
    for f in packets:
        for p in f:
            out += asm.feed(*p)
            assert asm.pending <= 4  # max_pending + the frame being fed
    complete = [frames[i] for i, f in enumerate(packets) if f and f[0][3][0] & 0x10]
    out += asm.flush()
    assert [f.data for f in out] == complete
    assert asm.incomplete == 40 - len(complete)


def test_assemble_invalid_and_restart() -> None:
    asm = Vp8FrameAssembler()
    assert asm.feed(1, 1000, True, b"\x80") == []  # truncated descriptor
    assert asm.invalid == 1
    first = asm.feed(2, 1000, True, packetize(b"\x00abc", 1)[0])
    assert [f.data for f in first] == [b"\x00abc"]
    # Timestamps jump far backwards: a restarted sender, not late packets.
    again = asm.feed(3, 1000 - 90000 * 60, True, packetize(b"\x00xyz", 2)[0])
    assert [f.data for f in again] == [b"\x00xyz"]
    assert again[0].continuous is False
