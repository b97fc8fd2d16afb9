"""Serial-number arithmetic for RTP sequence numbers and timestamps.

RTP sequence numbers are 16-bit and timestamps 32-bit counters that wrap
(RFC 3550 §5.1). Comparing them needs serial-number arithmetic (RFC 1982 §3):
``a`` is "after" ``b`` when the forward distance from ``b`` to ``a`` is less
than half the number space.

RFC 1982 §3.2 leaves the comparison undefined when the two values are exactly
half the space apart. Here :func:`seq_diff` maps that distance to the negative
end (-32768), so :func:`seq_gt` is False in *both* directions for such a pair,
which is the conservative reading of "undefined".

The unwrappers turn the wrapped values into unbounded integers ("extended"
values, RFC 3550 §A.1 keeps the same idea as a cycle count) so the rest of the
server can use plain ``<``/``-`` on them.
"""

from __future__ import annotations

__all__ = [
    "SEQ_MASK",
    "SEQ_MOD",
    "TS_MASK",
    "TS_MOD",
    "SeqUnwrapper",
    "TsUnwrapper",
    "seq_add",
    "seq_diff",
    "seq_gt",
    "ts_add",
    "ts_diff",
    "ts_gt",
]

SEQ_MOD = 1 << 16
SEQ_MASK = SEQ_MOD - 1
_SEQ_HALF = SEQ_MOD >> 1

TS_MOD = 1 << 32
TS_MASK = TS_MOD - 1
_TS_HALF = TS_MOD >> 1


def seq_add(a: int, delta: int) -> int:
    """Return ``a + delta`` modulo 2**16 (``delta`` may be negative)."""
    return (a + delta) & SEQ_MASK


def seq_diff(a: int, b: int) -> int:
    """Return the signed serial distance ``a - b`` in [-32768, 32767].

    Positive means ``a`` is newer than ``b`` (RFC 1982 §3.2); the ambiguous
    half-way distance maps to -32768.
    """
    d = (a - b) & SEQ_MASK
    return d - SEQ_MOD if d >= _SEQ_HALF else d


def seq_gt(a: int, b: int) -> bool:
    """True when sequence number ``a`` is newer than ``b`` (RFC 1982 §3.2)."""
    d = (a - b) & SEQ_MASK
    return 0 < d < _SEQ_HALF


def ts_add(a: int, delta: int) -> int:
    """Return ``a + delta`` modulo 2**32 (``delta`` may be negative)."""
    return (a + delta) & TS_MASK


def ts_diff(a: int, b: int) -> int:
    """Return the signed serial distance ``a - b`` in [-2**31, 2**31 - 1]."""
    d = (a - b) & TS_MASK
    return d - TS_MOD if d >= _TS_HALF else d


def ts_gt(a: int, b: int) -> bool:
    """True when timestamp ``a`` is later than ``b`` (RFC 1982 §3.2)."""
    d = (a - b) & TS_MASK
    return 0 < d < _TS_HALF


class SeqUnwrapper:
    """Turns 16-bit RTP sequence numbers into extended (unwrapped) ones.

    The first input ``s`` maps to ``s + 2**16``: a packet that arrives slightly
    older than the first one (reordering at stream start) then still gets a
    non-negative extended value. Every later input is placed at the extended
    value closest to the highest one seen so far (|distance| <= 2**15), which
    handles both reordering and wraparound. An input more than 2**15 away
    from the highest is indistinguishable from a wrap and is placed on the
    nearer side (RFC 3550 §A.1 treats such jumps as a restart instead; the
    caller can :meth:`reset` if it wants that).

    Memory bound: O(1) (one integer).
    """

    __slots__ = ("last",)

    last: int | None
    """Highest extended sequence number returned so far (None before any)."""

    def __init__(self) -> None:
        self.last = None

    def unwrap(self, seq: int) -> int:
        """Return the extended sequence number for the 16-bit ``seq``."""
        last = self.last
        if last is None:
            ext = (seq & SEQ_MASK) + SEQ_MOD
            self.last = ext
            return ext
        d = (seq - last) & SEQ_MASK
        if d >= _SEQ_HALF:
            # Older than the highest (reordered or retransmitted packet).
            return last + d - SEQ_MOD
        ext = last + d
        self.last = ext
        return ext

    def reset(self) -> None:
        """Forget the history; the next input is treated as the first."""
        self.last = None


class TsUnwrapper:
    """Turns 32-bit RTP timestamps into extended (unwrapped) ones.

    Same rules as :class:`SeqUnwrapper` with a 2**32 space: the first input
    ``t`` maps to ``t + 2**32`` and later inputs land closest to the highest
    extended timestamp seen so far.

    Memory bound: O(1) (one integer).
    """

    __slots__ = ("last",)

    last: int | None
    """Highest extended timestamp returned so far (None before any)."""

    def __init__(self) -> None:
        self.last = None

    def unwrap(self, ts: int) -> int:
        """Return the extended timestamp for the 32-bit ``ts``."""
        last = self.last
        if last is None:
            ext = (ts & TS_MASK) + TS_MOD
            self.last = ext
            return ext
        d = (ts - last) & TS_MASK
        if d >= _TS_HALF:
            return last + d - TS_MOD
        ext = last + d
        self.last = ext
        return ext

    def reset(self) -> None:
        """Forget the history; the next input is treated as the first."""
        self.last = None
