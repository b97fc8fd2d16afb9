"""Token buckets as tables."""

from __future__ import annotations

import pytest

from signaling.ratelimit import AddressLimiter, TokenBucket


@pytest.mark.parametrize(
    ("rate", "burst", "times", "expected"),
    [
        (1, 1, [0, 0], [True, False]),
        (1, 3, [0, 0, 0, 0], [True, True, True, False]),
        (2, 1, [0, 0.2, 0.5, 0.6, 1.5], [True, False, True, False, True]),
        (10, 2, [0, 0, 0, 10], [True, True, False, True]),  # refill caps at the burst
        (10, 2, [0, 0, 10, 10, 10], [True, True, True, True, False]),
        (1, 1, [5, 4, 5.5, 6], [True, False, False, True]),  # time going back adds nothing
    ],
)
def test_bucket(rate: float, burst: float, times: list[float], expected: list[bool]) -> None:
    bucket = TokenBucket(rate, burst, now_s=times[0])
    assert [bucket.take(t) for t in times] == expected


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 5), (1, 0.5)])
def test_bucket_refuses_bad_settings(rate: float, burst: float) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate, burst)


def test_address_limiter_keeps_addresses_apart_and_bounded() -> None:
    limiter = AddressLimiter(rate_per_s=1, burst=2, max_addresses=3)
    assert [limiter.take("a", 0) for _ in range(3)] == [True, True, False]
    assert limiter.take("b", 0) is True  # another address has its own bucket
    for address in ("c", "d", "e"):
        limiter.take(address, 0)
    assert len(limiter) == 3
    # "a" was forgotten (least recently seen): it starts full again.
    assert limiter.take("a", 0) is True
