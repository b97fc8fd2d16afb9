"""A fixed-bucket histogram: counts per upper bound, a sum and a count.

The media plane records into it where it already computes a figure (a
receiver report's RTT, jitter, loss: about once a second per stream), and the
metrics endpoint reads it as a Prometheus histogram. No I/O, no locks (one
event loop), no allocation per observation.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

__all__ = ["Histogram"]


class Histogram:
    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        if list(bounds) != sorted(set(bounds)) or not bounds:
            raise ValueError("bucket bounds must be increasing and distinct")
        self.bounds = tuple(bounds)
        #: counts[i]: observations <= bounds[i] and > bounds[i-1]; the last is +Inf.
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def merge(self, other: Histogram) -> None:
        if other.bounds != self.bounds:
            raise ValueError("histograms with different buckets")
        for i, n in enumerate(other.counts):
            self.counts[i] += n
        self.sum += other.sum
        self.count += other.count

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations <= it), ending with +Inf: the
        Prometheus `_bucket` series."""
        total = 0
        out = []
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += n
            out.append((bound, total))
        return out
