"""RtpMunger: table-driven replays of start / translate / drop / source_of rows."""

from __future__ import annotations

from typing import Any

import pytest

from sfu.core.munger import RtpMunger

X = 1 << 16  # extended seqs from SeqUnwrapper start above 2**16
M32 = 0xFFFFFFFF


# Row builders. Each row is replayed in order against one munger.
def S(src: str, ext: int, ts: int, adv: int | None = None) -> tuple[Any, ...]:
    """start(src, ext, ts[, ts_advance=adv])"""
    return ("start", src, ext, ts, adv)


def T(src: str, ext: int, ts: int, expected: tuple[int, int] | None) -> tuple[Any, ...]:
    """translate(src, ext, ts) == expected"""
    return ("translate", src, ext, ts, expected)


def D(src: str, ext: int) -> tuple[Any, ...]:
    """drop(src, ext)"""
    return ("drop", src, ext)


def Q(out_seq: int, expected: tuple[str, int] | None) -> tuple[Any, ...]:
    """source_of(out_seq) == expected"""
    return ("source_of", out_seq, expected)


def L(seq: int | None, ts: int | None) -> tuple[Any, ...]:
    """(last_out_seq, last_out_ts) == (seq, ts)"""
    return ("last", seq, ts)


# scenario id -> ((out_seq_start, out_ts_start, max_segments), rows)
SCENARIOS: dict[str, tuple[tuple[int, int, int], list[tuple[Any, ...]]]] = {
    "start_mid_stream": (
        (1000, 5000, 32),
        [
            L(None, None),
            S("a", X + 500, 90000),
            L(None, None),
            T("a", X + 500, 90000, (1000, 5000)),
            T("a", X + 501, 93000, (1001, 8000)),
            T("a", X + 502, 93000, (1002, 8000)),
            L(1002, 8000),
            T("a", X + 499, 87000, None),  # older than the source's first segment
            Q(1001, ("a", X + 501)),
            Q(1003, None),  # never emitted
            Q(999, None),  # before the first segment
        ],
    ),
    "first_packet_of_segment_lost": (
        (0, 0, 32),
        [
            S("a", X + 10, 3000),
            T("a", X + 11, 6000, (1, 3000)),
            L(1, 3000),
            Q(0, ("a", X + 10)),  # the NACKable hole maps to the lost packet
            T("a", X + 10, 3000, (0, 0)),
            L(1, 3000),
        ],
    ),
    "reordering_and_upstream_loss_keep_their_places": (
        (0, 100, 32),
        [
            S("a", X + 10, 0),
            T("a", X + 10, 0, (0, 100)),
            T("a", X + 12, 3000, (2, 3100)),  # X+11 lost so far: gap kept
            T("a", X + 11, 1500, (1, 1600)),  # arrives late: earlier out seq
            L(2, 3100),  # did not move back
            T("a", X + 13, 3000, (3, 3100)),
            T("a", X + 12, 3000, (2, 3100)),  # duplicate: same place
            Q(1, ("a", X + 11)),
            L(3, 3100),
        ],
    ),
    "output_wraps": (
        (65534, 0xFFFFFF00, 32),
        [
            S("a", X + 100, 1000),
            T("a", X + 100, 1000, (65534, 0xFFFFFF00)),
            T("a", X + 101, 1000 + 0x100, (65535, 0)),
            T("a", X + 102, 1000 + 0x200, (0, 0x100)),
            T("a", X + 103, 1000 + 0x300, (1, 0x200)),
            L(1, 0x200),
            Q(65534, ("a", X + 100)),
            Q(65535, ("a", X + 101)),
            Q(0, ("a", X + 102)),
            Q(1, ("a", X + 103)),
            T("a", X + 101, 1000 + 0x100, (65535, 0)),  # late duplicate across the wrap
            L(1, 0x200),
        ],
    ),
    "source_seq_and_ts_wrap": (
        (10, 0, 32),
        [
            S("a", 2 * X - 2, 0xFFFFF000),
            T("a", 2 * X - 2, 0xFFFFF000, (10, 0)),
            T("a", 2 * X - 1, (0xFFFFF000 + 3000) & M32, (11, 3000)),
            T("a", 2 * X, (0xFFFFF000 + 6000) & M32, (12, 6000)),
            T("a", 2 * X + 1, (0xFFFFF000 + 9000) & M32, (13, 9000)),
            Q(12, ("a", 2 * X)),
            L(13, 9000),
        ],
    ),
    "drop_then_continue": (
        (100, 0, 32),
        [
            S("a", X, 0),
            T("a", X, 0, (100, 0)),
            T("a", X + 1, 3000, (101, 3000)),
            D("a", X + 2),
            T("a", X + 3, 6000, (102, 6000)),
            T("a", X + 4, 9000, (103, 9000)),
            D("a", X + 5),
            D("a", X + 6),  # consecutive drops
            T("a", X + 7, 12000, (104, 12000)),
            Q(102, ("a", X + 3)),
            Q(103, ("a", X + 4)),
            Q(104, ("a", X + 7)),
            Q(101, ("a", X + 1)),
            T("a", X + 2, 4500, None),  # the dropped packet again (e.g. retransmitted)
            T("a", X + 5, 10000, None),
            T("a", X + 6, 11000, None),
            D("a", X + 3),  # not the newest: ignored
            D("a", X + 1),  # not the newest: ignored
            D("b", X + 8),  # not the current source: ignored
            T("a", X + 8, 15000, (105, 15000)),
            L(105, 15000),
        ],
    ),
    "drop_after_upstream_loss_then_late_fill": (
        (0, 0, 32),
        [
            S("a", X, 0),
            T("a", X, 0, (0, 0)),
            T("a", X + 2, 6000, (2, 6000)),  # X+1 lost upstream
            D("a", X + 3),
            T("a", X + 4, 12000, (3, 12000)),
            T("a", X + 1, 3000, (1, 3000)),  # late: fills its hole
            Q(1, ("a", X + 1)),
            Q(2, ("a", X + 2)),
            Q(3, ("a", X + 4)),
            L(3, 12000),
        ],
    ),
    "drop_newest_before_its_predecessor_arrives": (
        (0, 0, 32),
        [
            S("a", X, 0),
            T("a", X, 0, (0, 0)),
            D("a", X + 2),  # X+1 not here yet
            T("a", X + 1, 3000, (1, 3000)),
            T("a", X + 3, 9000, (2, 9000)),
            Q(2, ("a", X + 3)),
        ],
    ),
    "drop_first_packet_of_stream": (
        (500, 0, 32),
        [
            S("a", X + 40, 7000),
            D("a", X + 40),
            T("a", X + 41, 10000, (500, 3000)),
            T("a", X + 40, 7000, None),
            Q(500, ("a", X + 41)),
        ],
    ),
    "switch_to_other_source": (
        (1000, 50000, 32),
        [
            S("a", X + 100, 10000),
            T("a", X + 100, 10000, (1000, 50000)),
            T("a", X + 101, 13000, (1001, 53000)),
            T("a", X + 102, 16000, (1002, 56000)),
            S("b", 5 * X + 7, 777777, 3000),
            T("b", 5 * X + 7, 777777, (1003, 59000)),
            T("b", 5 * X + 8, 780777, (1004, 62000)),
            T("a", X + 103, 19000, None),  # late packet of the previous source
            T("b", 5 * X + 6, 774777, None),  # older than b's first segment
            T("c", X + 100, 0, None),  # unknown source
            D("a", X + 104),  # a is no longer current: ignored
            T("b", 5 * X + 9, 783777, (1005, 65000)),
            Q(1003, ("b", 5 * X + 7)),
            Q(1002, ("a", X + 102)),
            Q(1000, ("a", X + 100)),
            L(1005, 65000),
        ],
    ),
    "late_packet_of_previous_source_fills_only_its_own_hole": (
        (0, 0, 32),
        [
            S("a", X, 0),
            T("a", X, 0, (0, 0)),
            T("a", X + 2, 6000, (2, 6000)),  # X+1 lost
            S("b", 9 * X, 1, 3000),
            T("b", 9 * X, 1, (3, 9000)),
            T("a", X + 1, 3000, (1, 3000)),  # below b's first out seq: a hole of a
            T("a", X + 3, 9000, None),  # would take b's out seq 3
            L(3, 9000),
        ],
    ),
    "switch_back_and_forth": (
        (0, 0, 32),
        [
            S("a", X + 100, 1000),
            T("a", X + 100, 1000, (0, 0)),
            T("a", X + 101, 4000, (1, 3000)),
            S("b", 3 * X + 5000, 999),  # default ts_advance = 1
            T("b", 3 * X + 5000, 999, (2, 3001)),
            T("b", 3 * X + 5001, 3999, (3, 6001)),
            S("a", X + 110, 31000, 3000),
            T("a", X + 110, 31000, (4, 9001)),
            T("a", X + 105, 16000, None),  # a's old segment, past the switch point
            T("a", X + 111, 34000, (5, 12001)),
            T("b", 3 * X + 5002, 6999, None),  # b is not current any more
            Q(2, ("b", 3 * X + 5000)),
            Q(3, ("b", 3 * X + 5001)),
            Q(4, ("a", X + 110)),
            Q(1, ("a", X + 101)),
            L(5, 12001),
        ],
    ),
    "start_twice_before_any_packet": (
        (7, 70, 32),
        [
            S("a", X + 10, 100),
            S("b", X + 20, 500),
            T("b", X + 20, 500, (7, 70)),
            T("a", X + 10, 100, None),
            Q(7, ("b", X + 20)),
        ],
    ),
    "restart_same_source_after_pause": (
        (0, 0, 32),
        [
            S("a", X, 0),
            T("a", X, 0, (0, 0)),
            T("a", X + 1, 3000, (1, 3000)),
            # The source restarted its timestamp; re-anchor with the elapsed time.
            S("a", X + 2, 123, 90000),
            T("a", X + 2, 123, (2, 93000)),
            T("a", X + 3, 3123, (3, 96000)),
            Q(1, ("a", X + 1)),
        ],
    ),
    "old_segments_are_forgotten": (
        (0, 0, 2),
        [
            S("a", X, 0),
            T("a", X, 0, (0, 0)),
            T("a", X + 1, 3000, (1, 3000)),
            D("a", X + 2),
            T("a", X + 3, 9000, (2, 9000)),
            D("a", X + 4),  # third segment evicts the first
            T("a", X + 5, 15000, (3, 15000)),
            Q(0, None),
            Q(1, None),
            Q(2, ("a", X + 3)),
            Q(3, ("a", X + 5)),
            T("a", X + 1, 3000, None),
        ],
    ),
}


@pytest.mark.parametrize(("init", "rows"), SCENARIOS.values(), ids=SCENARIOS.keys())
def test_munger_scenarios(init: tuple[int, int, int], rows: list[tuple[Any, ...]]) -> None:
    m = RtpMunger(init[0], init[1], max_segments=init[2])
    assert not m.started
    for n, row in enumerate(rows):
        op = row[0]
        where = f"row {n}: {row}"
        if op == "start":
            _, src, ext, ts, adv = row
            if adv is None:
                m.start(src, ext, ts)
            else:
                m.start(src, ext, ts, ts_advance=adv)
            assert m.started
        elif op == "translate":
            _, src, ext, ts, expected = row
            assert m.translate(src, ext, ts) == expected, where
        elif op == "drop":
            m.drop(row[1], row[2])
        elif op == "source_of":
            assert m.source_of(row[1]) == row[2], where
        else:
            assert (m.last_out_seq, m.last_out_ts) == (row[1], row[2]), where


def test_continuous_output_over_many_drops_and_wraps() -> None:
    """Drop every third packet over several output wraps: output stays gap-free."""
    m = RtpMunger(65000, M32 - 10_000, max_segments=4)
    m.start("a", X, 0)
    expected_seq = 65000
    prev_ts = None
    for i in range(200_000):
        ext = X + i
        ts = (i * 3000) & M32
        if i % 3 == 2:
            m.drop("a", ext)
            continue
        out = m.translate("a", ext, ts)
        assert out is not None
        assert out[0] == expected_seq
        if prev_ts is not None:
            assert (out[1] - prev_ts) & M32 == 3000 * (2 if i % 3 == 0 else 1)
        prev_ts = out[1]
        expected_seq = (expected_seq + 1) & 0xFFFF
        assert m.source_of(out[0]) == ("a", ext)


@pytest.mark.parametrize("adv", [0, -3000], ids=["zero", "negative"])
def test_ts_advance_must_move_forward(adv: int) -> None:
    m = RtpMunger(0, 0)
    with pytest.raises(ValueError):
        m.start("a", X, 0, ts_advance=adv)


def test_nothing_before_start() -> None:
    m = RtpMunger(0, 0)
    assert m.translate("a", X, 0) is None
    assert m.source_of(0) is None
    m.drop("a", X)
    assert not m.started
    with pytest.raises(ValueError):
        RtpMunger(0, 0, max_segments=0)
