"""Vp8Munger and rewrite_descriptor: table-driven replays and byte-exact rewrites (RFC 7741)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from sfu.core.vp8 import parse_descriptor
from sfu.core.vp8_munger import Vp8Munger, rewrite_descriptor


# Row builders. Each row is replayed in order against one munger.
def T(
    pid: int | None, tl0: int | None, expected: tuple[int | None, int | None], bits: int = 15
) -> tuple[Any, ...]:
    """translate(pid, tl0, picture_id_bits=bits) == expected"""
    return ("translate", pid, tl0, bits, expected)


def SW(pid: int | None, tl0: int | None, bits: int = 15) -> tuple[Any, ...]:
    """switch(pid, tl0, picture_id_bits=bits)"""
    return ("switch", pid, tl0, bits)


def D(pid: int | None, bits: int = 15) -> tuple[Any, ...]:
    """drop_frame(pid, picture_id_bits=bits)"""
    return ("drop", pid, bits)


def C(expected: bool) -> tuple[Any, ...]:
    """changed == expected"""
    return ("changed", expected)


SCENARIOS: dict[str, list[tuple[Any, ...]]] = {
    "pass_through": [
        C(False),
        T(100, 5, (100, 5)),
        T(100, 5, (100, 5)),  # second packet of the frame
        T(101, 5, (101, 5)),
        T(102, 6, (102, 6)),
        T(101, 5, (101, 5)),  # retransmission
        C(False),
    ],
    "switch_before_anything_sent_passes_through": [
        SW(7000, 40),
        C(False),
        T(7000, 40, (7000, 40)),
        T(7001, 40, (7001, 40)),
    ],
    "switch_continues_from_last_sent": [
        T(100, 5, (100, 5)),
        T(101, 5, (101, 5)),
        T(102, 6, (102, 6)),
        SW(5000, 200),
        C(True),
        T(5000, 200, (103, 7)),  # the keyframe
        T(5000, 200, (103, 7)),
        T(5001, 200, (104, 7)),
        T(5002, 201, (105, 8)),
        T(5001, 200, (104, 7)),  # retransmission of the new source
    ],
    "switch_back_to_aligned_ids_is_pass_through_again": [
        T(100, 5, (100, 5)),
        SW(5000, 200),
        T(5000, 200, (101, 6)),
        C(True),
        SW(102, 7),
        C(False),
        T(102, 7, (102, 7)),
    ],
    "switch_follows_highest_sent_not_latest": [
        T(100, 5, (100, 5)),
        T(102, 6, (102, 6)),
        T(101, 5, (101, 5)),  # late packet, translated last
        SW(900, 50),
        T(900, 50, (103, 7)),
    ],
    "second_switch_before_any_packet_wins": [
        T(100, 5, (100, 5)),
        SW(5000, 200),
        SW(9000, 10),
        T(9000, 10, (101, 6)),
    ],
    "drop_temporal_frames_closes_gaps": [
        # Frames 10..18 with TIDs 0,2,1,2,0,2,1,2,0; only TID 0 is forwarded.
        T(10, 1, (10, 1)),
        D(11),
        D(11),  # another packet of the same frame counts once
        D(12),
        D(13),
        C(True),
        T(14, 2, (11, 2)),
        T(14, 2, (11, 2)),
        D(15),
        D(16),
        D(17),
        T(18, 3, (12, 3)),
        T(10, 1, (10, 1)),  # retransmissions keep their places
        T(14, 2, (11, 2)),
    ],
    "drop_one_of_two_layers": [
        # TIDs 0,1,0,1,...: TID 1 dropped every other frame.
        T(50, 9, (50, 9)),
        D(51),
        T(52, 10, (51, 10)),
        D(53),
        T(54, 11, (52, 11)),
        D(55),
        T(56, 12, (53, 12)),
        T(52, 10, (51, 10)),
    ],
    "drop_after_newer_frame_keeps_its_gap": [
        T(10, 1, (10, 1)),
        T(12, 1, (12, 1)),  # 11 not seen yet
        D(11),  # too late: 12 already went out as 12
        T(13, 1, (13, 1)),
        C(False),
    ],
    "drop_across_upstream_loss_keeps_lost_slot": [
        T(10, 1, (10, 1)),
        D(12),  # 11 not seen (lost so far)
        T(13, 2, (12, 2)),
        T(11, 1, (11, 1)),  # 11 arrives late: its own slot, no collision
        T(14, 2, (13, 2)),
    ],
    "drop_before_first_frame_of_source": [
        D(500),
        T(501, None, (500, None)),
    ],
    "drop_without_picture_id_is_ignored": [
        T(10, 1, (10, 1)),
        D(None),
        T(11, 1, (11, 1)),
        C(False),
    ],
    "drops_then_switch_continue_from_shifted_ids": [
        T(10, 1, (10, 1)),
        D(11),
        T(12, 2, (11, 2)),
        SW(3000, 77),
        T(3000, 77, (12, 3)),
        D(3001),
        T(3002, 78, (13, 4)),
    ],
    "picture_id_wraps_in_pass_through": [
        T(32766, 254, (32766, 254)),
        T(32767, 255, (32767, 255)),
        T(0, 0, (0, 0)),
        T(1, 0, (1, 0)),
        T(32767, 255, (32767, 255)),  # retransmission from before the wrap
        C(False),
    ],
    "output_wraps_after_switch": [
        T(32767, 255, (32767, 255)),
        SW(100, 10),
        T(100, 10, (0, 0)),
        T(101, 11, (1, 1)),
    ],
    "input_wraps_during_drops": [
        T(32766, 1, (32766, 1)),
        D(32767),
        T(0, 1, (32767, 1)),
        D(1),
        T(2, 2, (0, 2)),
        T(32766, 1, (32766, 1)),
        T(0, 1, (32767, 1)),
    ],
    "tl0picidx_wraps_across_switch": [
        T(5, 255, (5, 255)),
        SW(900, 17),
        T(900, 17, (6, 0)),
        T(901, 18, (7, 1)),
    ],
    "input_tl0picidx_wraps_after_switch": [
        T(5, 100, (5, 100)),
        SW(900, 254),
        T(900, 254, (6, 101)),
        T(901, 255, (7, 102)),
        T(902, 0, (8, 103)),
        T(900, 254, (6, 101)),
    ],
    "seven_bit_picture_ids": [
        T(126, 3, (126, 3), bits=7),
        T(127, 3, (127, 3), bits=7),
        T(0, 4, (0, 4), bits=7),  # wraps at 128
        T(1, 4, (1, 4), bits=7),
        C(False),
        SW(50, 9, bits=7),
        T(50, 9, (2, 5), bits=7),
        D(51, bits=7),
        T(52, 9, (3, 5), bits=7),
        T(50, 9, (2, 5), bits=7),
    ],
    "seven_bit_source_then_fifteen_bit_source": [
        T(127, 3, (127, 3), bits=7),
        T(0, 3, (0, 3), bits=7),  # 128 in the unwrapped output space
        SW(20000, 60),
        T(20000, 60, (129, 4)),
    ],
    "absent_fields": [
        T(None, None, (None, None)),
        T(100, None, (100, None)),
        SW(None, 7),  # new source without PictureID
        T(None, 7, (None, 7)),  # no TL0PICIDX was sent yet: pass-through
        T(200, 8, (101, 8)),  # PictureID appears: continues from the last one sent
    ],
    "translate_without_switch_starts_source_lazily": [
        T(4000, 9, (4000, 9)),
        C(False),
    ],
    "old_frame_of_new_source_before_its_keyframe": [
        T(100, 5, (100, 5)),
        SW(5000, 200),
        T(5000, 200, (101, 6)),
        T(4999, 199, (100, 5)),  # precedes the switch: collides, caller does not forward it
    ],
}


def _replay(rows: list[tuple[Any, ...]]) -> None:
    m = Vp8Munger()
    for i, row in enumerate(rows):
        op = row[0]
        if op == "translate":
            _, pid, tl0, bits, expected = row
            assert m.translate(pid, tl0, picture_id_bits=bits) == expected, (i, row)
        elif op == "switch":
            _, pid, tl0, bits = row
            m.switch(pid, tl0, picture_id_bits=bits)
        elif op == "drop":
            _, pid, bits = row
            m.drop_frame(pid, picture_id_bits=bits)
        elif op == "changed":
            assert m.changed is row[1], (i, row)
        else:  # pragma: no cover - table typo
            raise AssertionError(row)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario(name: str) -> None:
    _replay(SCENARIOS[name])


def test_default_width_is_fifteen_bits() -> None:
    m = Vp8Munger()
    assert m.translate(32767, None) == (32767, None)
    m.drop_frame(0)
    assert m.translate(1, None) == (0, None)
    m.switch(10, None)
    assert m.translate(10, None) == (1, None)


def test_many_drops_and_switches_stay_continuous() -> None:
    """Random simulcast switches and temporal drops: the forwarded frames' ids never jump.

    Three sources with pattern TID 0,2,1,2 and random start ids; the
    subscriber's max temporal layer changes now and then; switches happen at
    a keyframe (a TID 0 frame) of the new source. Every forwarded frame's
    PictureID is the previous one + 1 (mod 2**15), TL0PICIDX advances by one
    at each TID 0 frame and is repeated by the TID > 0 frames.
    """
    rng = random.Random(7741)
    pattern = (0, 2, 1, 2)
    starts = [(rng.randrange(1 << 15), rng.randrange(256)) for _ in range(3)]
    # Per source: frame counter -> (pid, tl0, tid)

    def frame(source: int, n: int) -> tuple[int, int, int]:
        pid0, tl00 = starts[source]
        tid = pattern[n % 4]
        return (pid0 + n) & 0x7FFF, (tl00 + n // 4) & 0xFF, tid

    m = Vp8Munger()
    source = 0
    max_tid = 2
    last_pid: int | None = None
    last_tl0: int | None = None
    forwarded = dropped = switches = 0
    for n in range(40_000):
        if n % 4 == 0 and rng.random() < 0.05:
            new = rng.choice([s for s in range(3) if s != source])
            pid, tl0, _ = frame(new, n)
            m.switch(pid, tl0)
            source = new
            switches += 1
        if rng.random() < 0.02:
            max_tid = rng.randrange(3)
        pid, tl0, tid = frame(source, n)
        packets = rng.randrange(1, 4)
        if tid > max_tid:
            for _ in range(packets):
                m.drop_frame(pid)
            dropped += 1
            continue
        outs = {m.translate(pid, tl0) for _ in range(packets)}
        assert len(outs) == 1
        out_pid, out_tl0 = outs.pop()
        assert out_pid is not None and out_tl0 is not None
        if last_pid is not None:
            assert out_pid == (last_pid + 1) & 0x7FFF, n
            assert last_tl0 is not None
            expected_tl0 = (last_tl0 + 1) & 0xFF if tid == 0 else last_tl0
            assert out_tl0 == expected_tl0, n
        last_pid, last_tl0 = out_pid, out_tl0
        forwarded += 1
    assert switches > 100 and dropped > 1000 and forwarded > 10_000


# --- rewrite_descriptor ------------------------------------------------------

# Descriptors built by hand (RFC 7741 §4.2):
#   octet 0: X R N S R PID   octet 1 (X=1): I L T K RSV
#   PictureID: M + 7 bits (+ 8 bits when M=1); TL0PICIDX; TID(2) Y(1) KEYIDX(5)
REWRITES = [
    pytest.param(
        # X S | I L T | M=1 pid 0x0123 | tl0 5 | TID 1
        b"\x90\xe0\x81\x23\x05\x40",
        0x7ABC,
        0xFE,
        b"\x90\xe0\xfa\xbc\xfe\x40",
        id="pid15-tl0-tid",
    ),
    pytest.param(b"\x90\x80\x81\x23", 0x8001, None, b"\x90\x80\x80\x01", id="pid15-input-masked"),
    pytest.param(b"\x90\x80\xff\xff", 0, None, b"\x90\x80\x80\x00", id="pid15-to-zero-keeps-M"),
    pytest.param(
        # X S | I L | M=0 pid 5 | tl0 9
        b"\x90\xc0\x05\x09",
        300,  # 300 mod 128 = 44
        266,  # 266 mod 256 = 10
        b"\x90\xc0\x2c\x0a",
        id="pid7-tl0-masked",
    ),
    pytest.param(b"\x90\x80\x7f", 128, None, b"\x90\x80\x00", id="pid7-wrap"),
    pytest.param(b"\x10", 1234, 56, b"\x10", id="no-extension"),
    pytest.param(b"\x80\x00", 1234, 56, b"\x80\x00", id="extension-without-fields"),
    pytest.param(b"\x90\x40\x07", 1234, 8, b"\x90\x40\x08", id="tl0-only"),
    pytest.param(b"\x90\x20\x40", 1234, 8, b"\x90\x20\x40", id="tid-only-untouched"),
    pytest.param(
        # N S PID=0 | I K | M=1 pid 0x0500 | KEYIDX 31
        b"\xb0\x90\x85\x00\x1f",
        0x0102,
        77,  # no TL0PICIDX field: ignored
        b"\xb0\x90\x81\x02\x1f",
        id="pid15-keyidx",
    ),
    pytest.param(
        b"\x90\xe0\x81\x23\x05\x40", None, 0x33, b"\x90\xe0\x81\x23\x33\x40", id="pid-none"
    ),
    pytest.param(
        b"\x90\xe0\x81\x23\x05\x40", 0x0222, None, b"\x90\xe0\x82\x22\x05\x40", id="tl0-none"
    ),
    pytest.param(
        # Every field: N, PID=3 | I L T K | pid 0x7fff | tl0 5 | TID 2 Y KEYIDX 10
        b"\xa3\xf0\xff\xff\x05\xaa",
        0x1234,
        0x99,
        b"\xa3\xf0\x92\x34\x99\xaa",
        id="all-fields",
    ),
]

PREFIX = b"\xde\xad\xbe"  # e.g. an RTP header before the payload
PAYLOAD = b"\x9d\x01\x2a\x00"  # VP8 payload after the descriptor: must stay intact


@pytest.mark.parametrize("raw, pid, tl0, expected", REWRITES)
def test_rewrite_descriptor(raw: bytes, pid: int | None, tl0: int | None, expected: bytes) -> None:
    for prefix in (b"", PREFIX):
        buf = bytearray(prefix + raw + PAYLOAD)
        rewrite_descriptor(buf, len(prefix), pid, tl0)
        assert bytes(buf) == prefix + expected + PAYLOAD
        # Exactly-sized buffer (descriptor only) works too.
        exact = bytearray(raw)
        rewrite_descriptor(exact, 0, pid, tl0)
        assert bytes(exact) == expected


@pytest.mark.parametrize("raw, pid, tl0, expected", REWRITES)
def test_rewrite_descriptor_round_trips_through_parser(
    raw: bytes, pid: int | None, tl0: int | None, expected: bytes
) -> None:
    before = parse_descriptor(raw)
    buf = bytearray(raw + PAYLOAD)
    rewrite_descriptor(buf, 0, pid, tl0)
    after = parse_descriptor(buf)
    if pid is not None and before.picture_id is not None:
        assert after.picture_id == pid % (1 << before.picture_id_bits)
    else:
        assert after.picture_id == before.picture_id
    if tl0 is not None and before.tl0picidx is not None:
        assert after.tl0picidx == tl0 % 256
    else:
        assert after.tl0picidx == before.tl0picidx
    # Everything else, layout included, is unchanged.
    for field in (
        "size",
        "start",
        "partition",
        "non_reference",
        "picture_id_bits",
        "tid",
        "layer_sync",
        "keyidx",
    ):
        assert getattr(after, field) == getattr(before, field), field


def test_rewrite_descriptor_in_memoryview() -> None:
    buf = bytearray(PREFIX + b"\x90\xe0\x81\x23\x05\x40" + PAYLOAD)
    rewrite_descriptor(memoryview(buf), len(PREFIX), 0x0042, 0x07)
    assert bytes(buf) == PREFIX + b"\x90\xe0\x80\x42\x07\x40" + PAYLOAD


TRUNCATED = [
    pytest.param(b"", 0, id="empty"),
    pytest.param(b"\x80", 0, id="missing-extension-octet"),
    pytest.param(b"\x80\x80", 0, id="missing-picture-id"),
    pytest.param(b"\x80\x80\x81", 0, id="missing-second-picture-id-octet"),
    pytest.param(b"\x80\x40", 0, id="missing-tl0picidx"),
    pytest.param(b"\x80\xc0\x05", 0, id="pid7-missing-tl0picidx"),
    pytest.param(b"\x80\x20", 0, id="missing-tid-octet"),
    pytest.param(b"\x80\x10", 0, id="missing-keyidx-octet"),
    pytest.param(b"\x90\xe0\x81\x23\x05", 0, id="all-but-last-octet"),
    pytest.param(PREFIX + b"\x90\xe0\x81", len(PREFIX), id="truncated-after-prefix"),
    pytest.param(b"\x10", 1, id="offset-at-end"),
    pytest.param(b"\x10", 5, id="offset-past-end"),
    pytest.param(b"\x10", -1, id="negative-offset"),
]


@pytest.mark.parametrize("raw, offset", TRUNCATED)
def test_rewrite_descriptor_rejects_truncated(raw: bytes, offset: int) -> None:
    buf = bytearray(raw)
    with pytest.raises(ValueError):
        rewrite_descriptor(buf, offset, 0x1234, 0x56)
    assert bytes(buf) == raw  # nothing written


@pytest.mark.parametrize("raw, offset", [p for p in TRUNCATED if p.values[1] == 0])
def test_truncated_cases_agree_with_parser(raw: bytes, offset: int) -> None:
    with pytest.raises(ValueError):
        parse_descriptor(raw)


def test_long_drop_history_keeps_recent_retransmissions() -> None:
    # TID 0,1 alternating with TID 1 dropped: one segment per forwarded frame,
    # far more than are kept; recent frames still translate where they went.
    m = Vp8Munger()
    sent: dict[int, int] = {}
    for n in range(0, 1000, 2):
        out_pid, _ = m.translate(n, None)
        assert out_pid == n // 2
        sent[n] = out_pid
        m.drop_frame(n + 1)
    for n in range(1000 - 2 * 60, 1000, 2):
        assert m.translate(n, None) == (sent[n], None)
    assert m.translate(1000, None) == (500, None)
