"""Serial arithmetic (RFC 1982) on 16-bit seqs and 32-bit timestamps, and unwrapping."""

from __future__ import annotations

import pytest

from sfu.core.seqnum import (
    SeqUnwrapper,
    TsUnwrapper,
    seq_add,
    seq_diff,
    seq_gt,
    ts_add,
    ts_diff,
    ts_gt,
)

U16 = 1 << 16
U32 = 1 << 32


@pytest.mark.parametrize(
    ("a", "delta", "expected"),
    [
        (0, 1, 1),
        (65535, 1, 0),
        (65535, 2, 1),
        (0, -1, 65535),
        (100, -101, 65535),
        (1000, 65536, 1000),
        (40000, 40000, 14464),
    ],
    ids=["plus1", "wrap", "wrap2", "minus_wrap", "minus_big", "full_cycle", "big_delta"],
)
def test_seq_add(a: int, delta: int, expected: int) -> None:
    assert seq_add(a, delta) == expected


@pytest.mark.parametrize(
    ("a", "b", "diff", "gt"),
    [
        (5, 3, 2, True),
        (3, 5, -2, False),
        (7, 7, 0, False),
        (0, 65535, 1, True),
        (65535, 0, -1, False),
        (10, 65530, 16, True),
        (65530, 10, -16, False),
        (32767, 0, 32767, True),
        (0, 32767, -32767, False),
        # Exactly half the space apart: RFC 1982 §3.2 leaves it undefined; we
        # map it to -32768 and neither side is "greater".
        (32768, 0, -32768, False),
        (0, 32768, -32768, False),
    ],
    ids=[
        "ahead",
        "behind",
        "equal",
        "ahead_across_wrap",
        "behind_across_wrap",
        "ahead_16_wrap",
        "behind_16_wrap",
        "max_ahead",
        "max_behind",
        "half_a",
        "half_b",
    ],
)
def test_seq_diff_and_gt(a: int, b: int, diff: int, gt: bool) -> None:
    assert seq_diff(a, b) == diff
    assert seq_gt(a, b) is gt
    assert -32768 <= seq_diff(a, b) <= 32767


@pytest.mark.parametrize(
    ("a", "delta", "expected"),
    [
        (0, 3000, 3000),
        (U32 - 1, 1, 0),
        (U32 - 1000, 3000, 2000),
        (1000, -3000, U32 - 2000),
    ],
    ids=["plain", "wrap", "wrap_3000", "negative"],
)
def test_ts_add(a: int, delta: int, expected: int) -> None:
    assert ts_add(a, delta) == expected


@pytest.mark.parametrize(
    ("a", "b", "diff", "gt"),
    [
        (3000, 0, 3000, True),
        (0, 3000, -3000, False),
        (5, 5, 0, False),
        (1500, U32 - 1500, 3000, True),
        (U32 - 1500, 1500, -3000, False),
        (2**31 - 1, 0, 2**31 - 1, True),
        (2**31, 0, -(2**31), False),
        (0, 2**31, -(2**31), False),
    ],
    ids=["ahead", "behind", "equal", "ahead_wrap", "behind_wrap", "max", "half_a", "half_b"],
)
def test_ts_diff_and_gt(a: int, b: int, diff: int, gt: bool) -> None:
    assert ts_diff(a, b) == diff
    assert ts_gt(a, b) is gt


@pytest.mark.parametrize(
    ("seqs", "expected", "last"),
    [
        ([100, 101, 102], [U16 + 100, U16 + 101, U16 + 102], U16 + 102),
        # Older than the first packet: stays positive thanks to the 2**16 base.
        ([100, 99, 101], [U16 + 100, U16 + 99, U16 + 101], U16 + 101),
        ([0, 65535, 1], [U16, U16 - 1, U16 + 1], U16 + 1),
        ([65534, 65535, 0, 1], [2 * U16 - 2, 2 * U16 - 1, 2 * U16, 2 * U16 + 1], 2 * U16 + 1),
        # Reordered across the wrap: 65535 arrives after 0.
        ([65534, 0, 65535, 1], [2 * U16 - 2, 2 * U16, 2 * U16 - 1, 2 * U16 + 1], 2 * U16 + 1),
        # Duplicate does not move last.
        ([7, 7, 8], [U16 + 7, U16 + 7, U16 + 8], U16 + 8),
        # Jump forward by less than half the space: a forward jump.
        ([0, 30000, 60000, 10], [U16, U16 + 30000, U16 + 60000, 2 * U16 + 10], 2 * U16 + 10),
        # Two full wraps in steps of 20000.
        (
            [0, 20000, 40000, 60000, 14464, 34464, 54464, 8928],
            [U16 + k * 20000 for k in range(8)],
            U16 + 7 * 20000,
        ),
    ],
    ids=[
        "in_order",
        "older_than_first",
        "first_zero_then_older",
        "wrap",
        "reorder_across_wrap",
        "duplicate",
        "big_steps",
        "two_wraps",
    ],
)
def test_seq_unwrapper(seqs: list[int], expected: list[int], last: int) -> None:
    u = SeqUnwrapper()
    assert u.last is None
    assert [u.unwrap(s) for s in seqs] == expected
    assert u.last == last
    assert all(e & 0xFFFF == s for e, s in zip(expected, seqs, strict=True))


def test_seq_unwrapper_reset() -> None:
    u = SeqUnwrapper()
    u.unwrap(65535)
    u.unwrap(0)
    u.reset()
    assert u.last is None
    assert u.unwrap(5) == U16 + 5


@pytest.mark.parametrize(
    ("tss", "expected", "last"),
    [
        ([0, 3000, 6000], [U32, U32 + 3000, U32 + 6000], U32 + 6000),
        ([9000, 6000, 12000], [U32 + 9000, U32 + 6000, U32 + 12000], U32 + 12000),
        (
            [U32 - 3000, U32 - 1, 2000, U32 - 2],
            [2 * U32 - 3000, 2 * U32 - 1, 2 * U32 + 2000, 2 * U32 - 2],
            2 * U32 + 2000,
        ),
        ([0, U32 - 90000], [U32, U32 - 90000], U32),
    ],
    ids=["in_order", "older", "wrap_and_reorder", "older_than_first_across_zero"],
)
def test_ts_unwrapper(tss: list[int], expected: list[int], last: int) -> None:
    u = TsUnwrapper()
    assert [u.unwrap(t) for t in tss] == expected
    assert u.last == last
    u.reset()
    assert u.last is None
