"""Token buckets for the signaling limits: pure, no clock of their own.

A bucket holds up to `burst` tokens and gains `rate_per_s` a second; each
message (or join) takes one, and none left means refuse. The caller passes the
time, so tables can test it.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from collections.abc import Sequence

__all__ = ["AddressLimiter", "TokenBucket", "client_address"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class TokenBucket:
    __slots__ = ("_last_s", "_tokens", "burst", "rate_per_s")

    def __init__(self, rate_per_s: float, burst: float, now_s: float = 0.0) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("a bucket needs a positive rate and a burst of at least 1")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._tokens = float(burst)
        self._last_s = now_s

    def take(self, now_s: float) -> bool:
        elapsed = now_s - self._last_s
        if elapsed > 0:
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate_per_s)
            self._last_s = now_s
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False


class AddressLimiter:
    """One bucket per remote address, at most `max_addresses` remembered (the
    least recently seen are forgotten first: a flood of addresses costs a
    bounded amount of memory and only resets strangers' buckets)."""

    def __init__(self, rate_per_s: float, burst: float, max_addresses: int = 10_000) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.max_addresses = max_addresses
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def take(self, address: str, now_s: float) -> bool:
        bucket = self._buckets.get(address)
        if bucket is None:
            bucket = self._buckets[address] = TokenBucket(self.rate_per_s, self.burst, now_s)
            if len(self._buckets) > self.max_addresses:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(address)
        return bucket.take(now_s)

    def __len__(self) -> int:
        return len(self._buckets)


def client_address(remote: str, forwarded_for: str | None, trusted: Sequence[IPNetwork]) -> str:
    """The address to limit: the peer itself, unless it is a trusted proxy;
    then the nearest address in X-Forwarded-For that is not a trusted proxy
    (addresses to its left could be written by the client)."""
    if not trusted or not forwarded_for or not _within(remote, trusted):
        return remote
    # The nearest hops are at the end (each proxy appends); the client can
    # write any number of entries before them.
    hops = [hop.strip() for hop in forwarded_for.split(",")[-32:]]
    for hop in reversed(hops):
        if not hop:
            continue
        if not _within(hop, trusted):
            return hop if _is_ip(hop) else remote
    return remote


def _within(address: str, networks: Sequence[IPNetwork]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def _is_ip(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True
