"""Ring buffer of packets keyed by extended sequence number."""

from __future__ import annotations

import pytest

from sfu.core.packet_cache import PacketCache

BASE = 1 << 16


@pytest.mark.parametrize("size", [0, -4, 3, 6, 100, 1000], ids=lambda s: f"size{s}")
def test_size_must_be_power_of_two(size: int) -> None:
    with pytest.raises(ValueError):
        PacketCache(size)


@pytest.mark.parametrize("size", [1, 2, 8, 512], ids=lambda s: f"size{s}")
def test_valid_sizes(size: int) -> None:
    cache = PacketCache(size)
    assert cache.size == size
    cache.put(BASE + 3, b"x")
    assert cache.get(BASE + 3) == b"x"


# Rows: (puts, gets) with gets as (ext_seq, expected).
CASES = {
    "hit": ([(BASE, b"a"), (BASE + 1, b"b")], [(BASE, b"a"), (BASE + 1, b"b")]),
    "never_stored": ([(BASE, b"a")], [(BASE + 1, None), (BASE + 8, None), (0, None)]),
    "overwritten_by_newer": (
        [(BASE + 1, b"old"), (BASE + 9, b"new")],
        [(BASE + 1, None), (BASE + 9, b"new")],
    ),
    "older_does_not_evict_newer": (
        [(BASE + 9, b"new"), (BASE + 1, b"late")],
        [(BASE + 9, b"new"), (BASE + 1, None)],
    ),
    "same_seq_replaced": ([(BASE + 2, b"a"), (BASE + 2, b"b")], [(BASE + 2, b"b")]),
    "across_16bit_wrap": (
        [(2 * BASE - 2, b"w0"), (2 * BASE - 1, b"w1"), (2 * BASE, b"w2"), (2 * BASE + 1, b"w3")],
        [(2 * BASE - 2, b"w0"), (2 * BASE + 1, b"w3"), (BASE - 1, None), (3 * BASE, None)],
    ),
    "full_ring": (
        [(BASE + i, bytes([i])) for i in range(12)],
        [(BASE + 3, None), (BASE + 4, bytes([4])), (BASE + 11, bytes([11]))],
    ),
}


@pytest.mark.parametrize(("puts", "gets"), CASES.values(), ids=CASES.keys())
def test_put_get(puts: list[tuple[int, bytes]], gets: list[tuple[int, bytes | None]]) -> None:
    cache = PacketCache(8)
    for seq, pkt in puts:
        cache.put(seq, pkt)
    for seq, expected in gets:
        assert cache.get(seq) == expected, seq


def test_clear() -> None:
    cache = PacketCache(4)
    for i in range(4):
        cache.put(BASE + i, b"p")
    cache.clear()
    assert [cache.get(BASE + i) for i in range(4)] == [None] * 4
    # Still usable, including older seqs than before the clear.
    cache.put(BASE - 1, b"q")
    assert cache.get(BASE - 1) == b"q"
