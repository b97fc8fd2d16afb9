"""Small, pure statistics for the reports."""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["percentile", "summarize_ms"]


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) by the nearest-rank method; None when empty."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} outside 0..100")
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summarize_ms(values_s: Sequence[float]) -> dict[str, float | int | None]:
    """p50 / p99 / max in milliseconds (rounded to µs) and the sample count."""

    def ms(value: float | None) -> float | None:
        return None if value is None else round(value * 1000, 3)

    return {
        "count": len(values_s),
        "p50_ms": ms(percentile(values_s, 50)),
        "p99_ms": ms(percentile(values_s, 99)),
        "max_ms": ms(max(values_s) if values_s else None),
    }
