"""NACK generation (RFC 4585 §6.2.1): gap detection, pacing, retries, give-up, overflow."""

from __future__ import annotations

from typing import Any

import pytest

from sfu.core.nack import NackGenerator

B = 1 << 16  # extended seqs as produced by SeqUnwrapper start at 2**16

# Each scenario: constructor kwargs and rows replayed in order:
#   ("pkt", ext_seq, now_ms, expected newly-missing count)
#   ("due", now_ms, rtt_ms, expected list of ext seqs)
#   ("state", {attribute: expected value})
SCENARIOS: dict[str, tuple[dict[str, int], list[tuple[Any, ...]]]] = {
    "in_order_nothing_missing": (
        {},
        [
            ("pkt", B, 0, 0),
            ("pkt", B + 1, 10, 0),
            ("pkt", B + 2, 20, 0),
            ("due", 30, 50, []),
            ("state", {"missing_count": 0, "nacked": 0, "highest": B + 2}),
        ],
    ),
    "gap_is_nacked_then_paced_by_rtt": (
        {},
        [
            ("pkt", B + 10, 0, 0),
            ("pkt", B + 13, 5, 2),
            ("due", 5, 100, [B + 11, B + 12]),
            ("due", 50, 100, []),
            ("due", 104, 100, []),
            ("due", 105, 100, [B + 11, B + 12]),
            ("state", {"nacked": 4, "missing_count": 2}),
        ],
    ),
    "min_interval_when_rtt_small": (
        {"min_interval_ms": 20},
        [
            ("pkt", B, 0, 0),
            ("pkt", B + 2, 0, 1),
            ("due", 0, 5, [B + 1]),
            ("due", 19, 5, []),
            ("due", 20, 5, [B + 1]),
        ],
    ),
    "late_packet_recovers": (
        {},
        [
            ("pkt", B, 0, 0),
            ("pkt", B + 4, 1, 3),
            ("due", 1, 10, [B + 1, B + 2, B + 3]),
            ("pkt", B + 2, 30, 0),
            ("due", 30, 10, [B + 1, B + 3]),
            ("pkt", B + 1, 35, 0),
            ("pkt", B + 1, 36, 0),  # duplicate retransmission: counted once
            ("state", {"recovered": 2, "missing_count": 1, "nacked": 5}),
        ],
    ),
    "reordered_before_due": (
        {},
        [
            ("pkt", B, 0, 0),
            ("pkt", B + 2, 0, 1),
            ("pkt", B + 1, 1, 0),
            ("due", 2, 10, []),
            ("state", {"recovered": 1, "nacked": 0}),
        ],
    ),
    "max_retries_then_given_up": (
        {"max_retries": 3, "max_age_ms": 10_000},
        [
            ("pkt", B, 0, 0),
            ("pkt", B + 2, 0, 1),
            ("due", 0, 100, [B + 1]),
            ("due", 100, 100, [B + 1]),
            ("due", 200, 100, [B + 1]),
            ("due", 250, 100, []),
            ("state", {"given_up": 0, "missing_count": 1}),
            ("due", 300, 100, []),
            ("state", {"given_up": 1, "missing_count": 0, "nacked": 3}),
        ],
    ),
    "max_age_gives_up": (
        {"max_age_ms": 1000},
        [
            ("pkt", B, 0, 0),
            ("pkt", B + 2, 0, 1),
            ("pkt", B + 5, 500, 2),
            ("due", 1000, 2000, [B + 1, B + 3, B + 4]),
            ("due", 1001, 2000, []),
            ("state", {"given_up": 1, "missing_count": 2}),
            ("due", 1501, 2000, []),
            ("state", {"given_up": 3, "missing_count": 0}),
        ],
    ),
    "gap_across_16bit_wrap": (
        {},
        [
            ("pkt", 2 * B - 2, 0, 0),
            ("pkt", 2 * B + 1, 1, 2),
            ("due", 1, 0, [2 * B - 1, 2 * B]),
        ],
    ),
    "huge_gap_requests_keyframe": (
        {"max_missing": 8},
        [
            ("pkt", B, 0, 0),
            ("pkt", B + 2, 0, 1),
            ("pkt", B + 12, 0, 9),
            ("state", {"keyframe_needed": True, "missing_count": 0}),
            ("due", 0, 10, []),
            ("take", True),
            ("take", False),
            ("state", {"keyframe_needed": False}),
            ("pkt", B + 14, 1, 1),
            ("due", 1, 10, [B + 13]),
        ],
    ),
    "accumulated_overflow": (
        {"max_missing": 4},
        [
            ("pkt", B, 0, 0),
            ("pkt", B + 3, 0, 2),
            ("pkt", B + 6, 0, 2),
            ("state", {"missing_count": 4, "keyframe_needed": False}),
            ("pkt", B + 8, 0, 1),
            ("state", {"missing_count": 0, "keyframe_needed": True}),
        ],
    ),
    "aged_entries_make_room_before_overflow": (
        {"max_missing": 4, "max_age_ms": 100},
        [
            ("pkt", B, 0, 0),
            ("pkt", B + 5, 0, 4),
            ("pkt", B + 7, 200, 1),
            ("state", {"missing_count": 1, "keyframe_needed": False, "given_up": 4}),
        ],
    ),
    "old_packet_that_was_never_missing": (
        {},
        [
            ("pkt", B + 100, 0, 0),
            ("pkt", B + 50, 1, 0),
            ("state", {"recovered": 0, "highest": B + 100}),
        ],
    ),
}


@pytest.mark.parametrize(("kwargs", "rows"), SCENARIOS.values(), ids=SCENARIOS.keys())
def test_nack_scenarios(kwargs: dict[str, int], rows: list[tuple[Any, ...]]) -> None:
    gen = NackGenerator(**kwargs)
    for n, row in enumerate(rows):
        op = row[0]
        if op == "pkt":
            assert gen.on_packet(row[1], row[2]) == row[3], f"row {n}: {row}"
        elif op == "due":
            assert gen.due(row[1], row[2]) == row[3], f"row {n}: {row}"
        elif op == "take":
            assert gen.take_keyframe_needed() is row[1], f"row {n}: {row}"
        else:
            for attr, expected in row[1].items():
                assert getattr(gen, attr) == expected, f"row {n}: {attr}"


@pytest.mark.parametrize(
    "kwargs",
    [{"max_missing": 0}, {"max_retries": 0}, {"max_age_ms": -1}, {"min_interval_ms": -1}],
    ids=["max_missing", "max_retries", "max_age", "min_interval"],
)
def test_invalid_limits(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        NackGenerator(**kwargs)


def test_missing_set_is_bounded_under_sustained_loss() -> None:
    gen = NackGenerator(max_missing=64)
    seq = B
    gen.on_packet(seq, 0)
    for t in range(10, 20_000, 10):
        seq += 2  # every other packet lost, one arrival per 10 ms
        gen.on_packet(seq, t)
        gen.due(t, 50)
        assert gen.missing_count <= 64
    # Retries run out after ~550 ms (10 x 50 ms + one interval), before the
    # set fills up: give-ups keep it bounded without a keyframe.
    assert gen.given_up > 1900
    # Each given-up seq was asked for exactly max_retries times.
    assert 10 * gen.given_up <= gen.nacked <= 10 * (gen.given_up + gen.missing_count)
    assert not gen.keyframe_needed
