"""Token buckets as tables."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from signaling.ratelimit import AddressLimiter, TokenBucket, client_address


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


PROXIES = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128")]


@pytest.mark.parametrize(
    ("remote", "forwarded", "trusted", "expected"),
    [
        ("203.0.113.5", None, PROXIES, "203.0.113.5"),  # no proxy
        ("203.0.113.5", "1.2.3.4", PROXIES, "203.0.113.5"),  # untrusted peer: header ignored
        ("10.0.0.2", "198.51.100.7", PROXIES, "198.51.100.7"),  # through the proxy
        ("10.0.0.2", "6.6.6.6, 198.51.100.7", PROXIES, "198.51.100.7"),  # spoofed left part
        ("10.0.0.2", "198.51.100.7, 10.0.0.9", PROXIES, "198.51.100.7"),  # two proxies
        ("10.0.0.2", "10.0.0.3", PROXIES, "10.0.0.2"),  # only proxies
        ("10.0.0.2", "garbage", PROXIES, "10.0.0.2"),
        ("10.0.0.2", "", PROXIES, "10.0.0.2"),
        ("10.0.0.2", "198.51.100.7", [], "10.0.0.2"),  # nothing trusted
        ("::1", "2001:db8::1", PROXIES, "2001:db8::1"),
        # 40 forged entries before the one the proxy appended: the proxy's wins.
        ("10.0.0.2", ", ".join(["6.6.6.6"] * 40 + ["198.51.100.7"]), PROXIES, "198.51.100.7"),
    ],
)
def test_client_address(
    remote: str, forwarded: str | None, trusted: list[Any], expected: str
) -> None:
    assert client_address(remote, forwarded, trusted) == expected
