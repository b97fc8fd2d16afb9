"""Per-track keyframe request throttle."""

from __future__ import annotations

from typing import Any

import pytest

from sfu.core.throttle import KeyframeRequester

# scenario id -> (min_interval_ms, rows)
#   ("ask", now_ms, expected should_request result)
#   ("kf", now_ms)               on_keyframe
#   ("state", requests, pending)
SCENARIOS: dict[str, tuple[int, list[tuple[Any, ...]]]] = {
    "one_per_interval": (
        500,
        [
            ("state", 0, False),
            ("ask", 0, True),
            ("state", 1, True),
            ("ask", 100, False),
            ("ask", 499, False),
            ("ask", 500, True),
            ("ask", 999, False),
            ("ask", 1000, True),
            ("state", 3, True),
        ],
    ),
    "answered_request_reopens_after_the_shorter_interval": (
        500,
        [
            ("ask", 10_000, True),
            ("kf", 10_050),
            ("state", 1, False),
            ("ask", 10_100, False),
            ("ask", 10_199, False),
            ("state", 1, False),
            ("ask", 10_200, True),
            ("state", 2, True),
            # in flight again: the full interval applies
            ("ask", 10_400, False),
            ("ask", 10_699, False),
            ("ask", 10_700, True),
        ],
    ),
    "keyframe_before_answer_time_still_counts": (
        500,
        [("ask", 0, True), ("kf", 5), ("ask", 150, False), ("ask", 200, True)],
    ),
    "keyframe_without_request": (
        500,
        [("kf", 5), ("state", 0, False), ("ask", 6, True), ("state", 1, True)],
    ),
    "custom_interval": (
        1000,
        [("ask", 0, True), ("ask", 999, False), ("ask", 1000, True), ("ask", 1500, False)],
    ),
    "no_throttle": (0, [("ask", 0, True), ("ask", 0, True), ("state", 2, True)]),
}


@pytest.mark.parametrize(("interval", "rows"), SCENARIOS.values(), ids=SCENARIOS.keys())
def test_throttle_scenarios(interval: int, rows: list[tuple[Any, ...]]) -> None:
    kr = KeyframeRequester(min_interval_ms=interval)
    for n, row in enumerate(rows):
        if row[0] == "ask":
            assert kr.should_request(row[1]) is row[2], f"row {n}"
        elif row[0] == "kf":
            kr.on_keyframe(row[1])
            assert kr.last_keyframe_ms == row[1]
        else:
            assert (kr.requests, kr.pending) == (row[1], row[2]), f"row {n}"


def test_default_interval_is_500_ms() -> None:
    kr = KeyframeRequester()
    assert kr.should_request(0)
    assert not kr.should_request(499)
    assert kr.should_request(500)


def test_negative_interval_rejected() -> None:
    with pytest.raises(ValueError):
        KeyframeRequester(-1)
    with pytest.raises(ValueError):
        KeyframeRequester(500, answered_interval_ms=501)
    with pytest.raises(ValueError):
        KeyframeRequester(500, answered_interval_ms=-1)


def test_answered_interval_can_be_set() -> None:
    kr = KeyframeRequester(500, answered_interval_ms=50)
    assert kr.should_request(0)
    kr.on_keyframe(20)
    assert not kr.should_request(49)
    assert kr.should_request(50)
