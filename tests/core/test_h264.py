"""H.264 keyframe detection, packetizer and assembler (RFC 6184, packetization-mode=1)."""

from __future__ import annotations

import random

import pytest

from sfu.core.h264 import (
    AssembledFrame,
    H264FrameAssembler,
    is_keyframe,
    packetize,
    split_nal_units,
)

SPS = b"\x67\x42\xc0\x1f\xda\x05\x07\xe8"
PPS = b"\x68\xce\x3c\x80"
SEI = b"\x06\x05\x02\xaa\xbb\x80"
AUD = b"\x09\xf0"
SC4 = b"\x00\x00\x00\x01"
SC3 = b"\x00\x00\x01"


def _nal(header: int, size: int, seed: int) -> bytes:
    rng = random.Random(seed)
    # Body bytes never 0 so no accidental start codes / trailing zeros.
    return bytes([header]) + bytes(rng.randrange(1, 256) for _ in range(size - 1))


def _stap(*nals: bytes, header: int = 0x78) -> bytes:
    return bytes([header]) + b"".join(len(n).to_bytes(2, "big") + n for n in nals)


IDR = _nal(0x65, 40, 1)
SLICE = _nal(0x41, 40, 2)


@pytest.mark.parametrize(
    "payload, expected",
    [
        (IDR, True),
        (SPS, True),
        (PPS, False),
        (SEI, False),
        (SLICE, False),
        (_stap(SPS, PPS), True),
        (_stap(SPS, PPS, IDR), True),
        (_stap(PPS, SEI), False),
        (_stap(SEI, IDR), True),  # IDR is not the first aggregated NAL
        (_stap(AUD, SLICE), False),
        (b"\x7c\x85" + IDR[1:10], True),  # FU-A, S=1, IDR
        (b"\x7c\x87" + SPS[1:], True),  # FU-A, S=1, SPS
        (b"\x7c\x05" + IDR[10:20], False),  # FU-A continuation of an IDR
        (b"\x7c\x45" + IDR[20:], False),  # FU-A end fragment
        (b"\x5c\x81" + SLICE[1:10], False),  # FU-A, S=1, non-IDR slice
        (b"", False),
        (b"\x18", False),  # STAP-A header only
        (b"\x18\x00", False),
        (b"\x18\xff\xff\x67", False),  # STAP-A size beyond the packet
        (b"\x18\x00\x00\x67", False),  # zero-size aggregation unit
        (b"\x1c", False),  # FU-A without FU header
        (b"\x19\x00\x01\x00\x02\x65\x00", False),  # STAP-B: not supported
        (bytearray(IDR), True),
        (memoryview(_stap(SPS, PPS)), True),
    ],
)
def test_is_keyframe(payload: bytes, expected: bool) -> None:
    assert is_keyframe(payload) is expected


def test_is_keyframe_never_raises_on_garbage() -> None:
    rng = random.Random(3)
    for _ in range(3000):
        payload = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 10)))
        assert isinstance(is_keyframe(payload), bool)
    assert is_keyframe(None) is False  # type: ignore[arg-type]


def test_split_nal_units() -> None:
    stream = b"\x00\x00" + SC4 + SPS + SC3 + PPS + b"\x00" + SC4 + IDR + b"\x00\x00"
    assert split_nal_units(stream) == [SPS, PPS, IDR]
    assert split_nal_units(SC3 + SLICE) == [SLICE]
    assert split_nal_units(SC4 + SC4 + SLICE) == [SLICE]  # empty NAL skipped
    assert split_nal_units(SLICE) == []
    assert split_nal_units(b"") == []


def _types(payload: bytes) -> int:
    return payload[0] & 0x1F


def test_packetize_aggregates_parameter_sets() -> None:
    au = SC4 + SPS + SC4 + PPS + SC4 + IDR
    (only,) = packetize(au)
    assert only == _stap(SPS, PPS, IDR)  # F=0, NRI=3, type 24
    assert is_keyframe(only)


def test_packetize_fragments_large_nal() -> None:
    big_idr = _nal(0x65, 5000, 9)
    au = SC4 + SPS + SC4 + PPS + SC3 + big_idr
    payloads = packetize(au, max_payload=1000)
    assert all(len(p) <= 1000 for p in payloads)
    assert payloads[0] == _stap(SPS, PPS)
    fus = payloads[1:]
    assert all(_types(p) == 28 for p in fus)
    assert [bool(p[1] & 0x80) for p in fus] == [True] + [False] * (len(fus) - 1)
    assert [bool(p[1] & 0x40) for p in fus] == [False] * (len(fus) - 1) + [True]
    assert all(p[1] & 0x1F == 5 and p[0] & 0x60 == 0x60 for p in fus)
    assert b"".join(p[2:] for p in fus) == big_idr[1:]
    assert is_keyframe(payloads[0]) and is_keyframe(fus[0])
    assert not any(is_keyframe(p) for p in fus[1:])


def test_packetize_single_and_mixed() -> None:
    assert packetize(SC4 + SLICE) == [SLICE]
    # Parameter set that cannot be aggregated with the next NAL goes alone.
    payloads = packetize(SC4 + SPS + SC4 + _nal(0x65, 990, 4), max_payload=1000)
    assert payloads[0] == SPS
    assert payloads[1] == _nal(0x65, 990, 4)
    # Two slices after an SEI: SEI aggregated with the first slice only; the
    # STAP-A NRI is the maximum of the aggregated ones (SEI 0, slice 2).
    payloads = packetize(SC4 + SEI + SC4 + SLICE + SC4 + SLICE)
    assert payloads == [_stap(SEI, SLICE, header=0x58), SLICE]
    # F bit of the STAP-A is set when any aggregated F bit is.
    bad_sei = bytes([SEI[0] | 0x80]) + SEI[1:]
    assert packetize(SC4 + bad_sei + SC4 + SLICE)[0][0] == 0xD8
    with pytest.raises(ValueError):
        packetize(SLICE)  # no start code
    with pytest.raises(ValueError):
        packetize(SC4 + SLICE, max_payload=2)


def _canonical(au: bytes) -> bytes:
    return b"".join(SC4 + n for n in split_nal_units(au))


Packet = tuple[int, int, bool, bytes]


def _access_units(count: int) -> list[bytes]:
    aus = []
    for i in range(count):
        if i % 4 == 0:
            aus.append(SC4 + SPS + SC4 + PPS + SC4 + _nal(0x65, 2600, i))
        else:
            aus.append(SC3 + _nal(0x41, 300 + 400 * (i % 3), i) + SC3 + _nal(0x41, 200, -i))
    return aus


def _packets(aus: list[bytes], seq0: int = 65531, ts0: int = 0xFFFFF000) -> list[list[Packet]]:
    out, seq = [], seq0
    for i, au in enumerate(aus):
        payloads = packetize(au, max_payload=800)
        ts = (ts0 + 3000 * i) & 0xFFFFFFFF
        pkts = []
        for j, p in enumerate(payloads):
            pkts.append((seq & 0xFFFF, ts, j == len(payloads) - 1, p))
            seq += 1
        out.append(pkts)
    return out


def _feed(asm: H264FrameAssembler, packets: list[Packet]) -> list[AssembledFrame]:
    out: list[AssembledFrame] = []
    for p in packets:
        out.extend(asm.feed(*p))
    return out


def test_round_trip_in_order() -> None:
    aus = _access_units(12)
    packets = _packets(aus)
    assert any(_types(p[3]) == 24 for f in packets for p in f)
    assert any(_types(p[3]) == 28 for f in packets for p in f)
    asm = H264FrameAssembler()
    out = _feed(asm, [p for f in packets for p in f])
    assert [f.data for f in out] == [_canonical(a) for a in aus]
    assert [f.keyframe for f in out] == [i % 4 == 0 for i in range(12)]
    assert all(f.continuous for f in out[1:])


def test_round_trip_reordered() -> None:
    aus = _access_units(16)
    packets = _packets(aus)
    flat = [p for f in packets for p in f]
    rng = random.Random(5)
    flat = [p for _, p in sorted(((i + rng.uniform(0, 5), p) for i, p in enumerate(flat)))]
    asm = H264FrameAssembler()
    out = _feed(asm, flat) + asm.flush()
    assert [f.data for f in out] == [_canonical(a) for a in aus]
    assert asm.incomplete == 0


def test_lost_fragment_drops_access_unit() -> None:
    aus = _access_units(12)
    packets = _packets(aus)
    assert len(packets[4]) > 3
    del packets[4][2]  # a middle FU-A fragment of the second IDR
    asm = H264FrameAssembler()
    out = _feed(asm, [p for f in packets for p in f]) + asm.flush()
    assert [f.data for f in out] == [_canonical(a) for i, a in enumerate(aus) if i != 4]
    assert asm.incomplete == 1
    assert out[4].continuous is False


def test_lost_marker_packet() -> None:
    """Losing the last packet of AU 2 loses AU 2, and AU 3 whose start can't be
    proven; the IDR in AU 4 starts with an SPS and completes anyway."""
    aus = _access_units(10)
    packets = _packets(aus)
    del packets[2][-1]
    del packets[3][-1]  # also lose the end of AU 3: AU 4's predecessor is unknown
    asm = H264FrameAssembler()
    out = _feed(asm, [p for f in packets for p in f]) + asm.flush()
    expect = [_canonical(a) for i, a in enumerate(aus) if i not in (2, 3)]
    assert [f.data for f in out] == expect
    assert asm.incomplete == 2


def test_stream_joined_mid_frame() -> None:
    aus = _access_units(6)
    packets = _packets(aus)
    assert len(packets[0]) > 1
    flat = [p for f in packets for p in f]
    asm = H264FrameAssembler()
    # Join after the first packet: the rest of the IDR can't be a frame; the
    # next AUs complete since their predecessor packets are seen.
    out = _feed(asm, flat[1:]) + asm.flush()
    assert [f.data for f in out] == [_canonical(a) for a in aus[1:]]
    assert asm.incomplete == 1
    assert out[0].continuous is False


def test_malformed_packets() -> None:
    asm = H264FrameAssembler()
    assert asm.feed(1, 100, True, b"") == []
    assert asm.feed(2, 100, True, b"\x19\x00") == []  # STAP-B
    assert asm.invalid == 2
    # An FU-A end fragment alone after an SPS packet: complete but malformed.
    assert asm.feed(10, 200, False, SPS) == []
    assert asm.feed(11, 200, True, b"\x7c\x45\x01\x02") == []
    assert asm.incomplete == 1
    ok = asm.feed(12, 300, True, IDR)
    assert [f.data for f in ok] == [SC4 + IDR]


def test_access_unit_delimiter_stays_with_its_access_unit() -> None:
    """An SPS packet preceded by an AUD of the same timestamp is not a start."""
    asm = H264FrameAssembler()
    assert asm.feed(20, 400, False, AUD) == []
    assert asm.feed(22, 400, True, IDR) == []
    out = asm.feed(21, 400, False, _stap(SPS, PPS))
    assert [f.data for f in out] == [SC4 + AUD + SC4 + SPS + SC4 + PPS + SC4 + IDR]
    assert out[0].first_seq == 20 and out[0].keyframe
