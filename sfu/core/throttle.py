"""Per-track keyframe request throttle.

Every subscriber that joins, loses too much or switches layers wants a
keyframe, but the publisher should get at most one PLI (RFC 4585 §6.3.1) or
FIR (RFC 5104 §4.3.1) per interval per track: a keyframe is several times the
size of a delta frame, and a request sent before the answer to the previous
one could arrive only produces a second, useless keyframe. Requests inside the
interval are folded into the one already in flight.

Once that keyframe has arrived, though, a new request comes from someone who
missed it (a subscriber that joined a moment later): it need not wait out the
whole interval, only a shorter one (``answered_interval_ms``), which still
caps a join storm at a few keyframes per second. This is what keeps
join-to-first-frame short when people join in quick succession.
"""

from __future__ import annotations

__all__ = ["KeyframeRequester"]


class KeyframeRequester:
    """Lets at most one keyframe request through per ``min_interval_ms``.

    ``requests`` counts the requests let through; ``pending`` is True while a
    request went out and no keyframe has arrived since.

    Memory bound: O(1).
    """

    __slots__ = (
        "_last_keyframe_ms",
        "_last_request_ms",
        "answered_interval_ms",
        "min_interval_ms",
        "pending",
        "requests",
    )

    def __init__(self, min_interval_ms: int = 500, answered_interval_ms: int | None = None) -> None:
        if min_interval_ms < 0:
            raise ValueError(f"min_interval_ms must be >= 0, got {min_interval_ms}")
        if answered_interval_ms is None:
            answered_interval_ms = min_interval_ms * 2 // 5
        if not 0 <= answered_interval_ms <= min_interval_ms:
            raise ValueError(
                f"answered_interval_ms must be within 0..{min_interval_ms}, "
                f"got {answered_interval_ms}"
            )
        self.min_interval_ms = min_interval_ms
        #: After the keyframe answering the last request arrived, requests pass
        #: again once this long has gone by since that request.
        self.answered_interval_ms = answered_interval_ms
        self._last_request_ms: int | None = None
        self._last_keyframe_ms: int | None = None
        self.requests = 0
        self.pending = False

    def should_request(self, now_ms: int) -> bool:
        """True if a keyframe request may be sent upstream now (and count it)."""
        last = self._last_request_ms
        if last is not None:
            elapsed_ms = now_ms - last
            wait_ms = self.min_interval_ms if self.pending else self.answered_interval_ms
            if elapsed_ms < wait_ms:
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
