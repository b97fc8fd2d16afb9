"""Per-track keyframe request throttle.

Every subscriber that joins, loses too much or switches layers wants a
keyframe, but the publisher should get at most one PLI (RFC 4585 §6.3.1) or
FIR (RFC 5104 §4.3.1) per interval per track: a keyframe is several times the
size of a delta frame, and a request sent before the answer to the previous
one could arrive only produces a second, useless keyframe. Requests inside the
interval are folded into the one already in flight.
"""

from __future__ import annotations

__all__ = ["KeyframeRequester"]


class KeyframeRequester:
    """Lets at most one keyframe request through per ``min_interval_ms``.

    ``requests`` counts the requests let through; ``pending`` is True while a
    request went out and no keyframe has arrived since.

    Memory bound: O(1).
    """

    __slots__ = ("_last_keyframe_ms", "_last_request_ms", "min_interval_ms", "pending", "requests")

    def __init__(self, min_interval_ms: int = 500) -> None:
        if min_interval_ms < 0:
            raise ValueError(f"min_interval_ms must be >= 0, got {min_interval_ms}")
        self.min_interval_ms = min_interval_ms
        self._last_request_ms: int | None = None
        self._last_keyframe_ms: int | None = None
        self.requests = 0
        self.pending = False

    def should_request(self, now_ms: int) -> bool:
        """True if a keyframe request may be sent upstream now (and count it)."""
        last = self._last_request_ms
        if last is not None and now_ms - last < self.min_interval_ms:
            return False
        self._last_request_ms = now_ms
        self.requests += 1
        self.pending = True
        return True

    def on_keyframe(self, now_ms: int) -> None:
        """Record that a keyframe arrived from the publisher."""
        self._last_keyframe_ms = now_ms
        self.pending = False

    @property
    def last_keyframe_ms(self) -> int | None:
        """Arrival time of the last keyframe (None before any)."""
        return self._last_keyframe_ms
