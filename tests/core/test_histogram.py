"""The fixed-bucket histogram behind the report metrics, as tables."""

from __future__ import annotations

import pytest

from sfu.core.histogram import Histogram


@pytest.mark.parametrize(
    ("values", "cumulative"),
    [
        ([], [(1.0, 0), (2.0, 0), (float("inf"), 0)]),
        ([0.5], [(1.0, 1), (2.0, 1), (float("inf"), 1)]),
        ([1.0], [(1.0, 1), (2.0, 1), (float("inf"), 1)]),  # a bound is inclusive (le)
        ([1.5, 2.0, 9], [(1.0, 0), (2.0, 2), (float("inf"), 3)]),
        ([-1, 0, 3, 3], [(1.0, 2), (2.0, 2), (float("inf"), 4)]),
    ],
)
def test_cumulative_buckets(values: list[float], cumulative: list[tuple[float, int]]) -> None:
    hist = Histogram((1.0, 2.0))
    for v in values:
        hist.observe(v)
    assert hist.cumulative() == cumulative
    assert hist.count == len(values)
    assert hist.sum == pytest.approx(sum(values))


def test_merge_adds_and_refuses_other_buckets() -> None:
    a, b = Histogram((1.0,)), Histogram((1.0,))
    a.observe(0.5)
    b.observe(3)
    a.merge(b)
    assert a.cumulative() == [(1.0, 1), (float("inf"), 2)] and a.sum == 3.5
    with pytest.raises(ValueError):
        a.merge(Histogram((2.0,)))


@pytest.mark.parametrize("bounds", [(), (2.0, 1.0), (1.0, 1.0)])
def test_bounds_must_increase(bounds: tuple[float, ...]) -> None:
    with pytest.raises(ValueError):
        Histogram(bounds)
