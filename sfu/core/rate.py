"""Loss-based bitrate controller (draft-ietf-rmcat-gcc-02 §6).

The server estimates how much a publisher may send from the loss it observes
on that publisher's streams and tells it with REMB. GCC's loss-based
controller (draft-ietf-rmcat-gcc-02 §6) works on the fraction of packets
lost per report interval:

* loss > 10 %: ``A = A * (1 - 0.5 * loss)`` (back off in proportion);
* loss < 2 %: increase;
* otherwise hold (the sender is near the available capacity).

Increase rate: the draft multiplies by 1.05 on *every* report, which makes the
growth speed depend on how often the caller reports. Here the increase is
8 % and applied at most once per ``INCREASE_INTERVAL_MS`` (1000 ms), i.e. at
most 8 %/s whatever the report rate: roughly doubling in 9 s, which probes for
capacity without overshooting a congested link by much within one RTCP
interval. Decreases are applied on every update because each loss fraction
describes a distinct interval of packets.
"""

from __future__ import annotations

__all__ = ["LossBasedRate"]

LOSS_HIGH = 0.10
LOSS_LOW = 0.02
INCREASE_FACTOR = 1.08
INCREASE_INTERVAL_MS = 1000


class LossBasedRate:
    """Loss-based sending-rate estimate clamped to ``[min_bps, max_bps]``.

    Memory bound: O(1).
    """

    __slots__ = ("_bitrate_bps", "_last_increase_ms", "max_bps", "min_bps")

    def __init__(self, min_bps: int, max_bps: int, start_bps: int) -> None:
        if min_bps <= 0 or max_bps < min_bps:
            raise ValueError(f"need 0 < min_bps <= max_bps, got {min_bps}, {max_bps}")
        self.min_bps = min_bps
        self.max_bps = max_bps
        self._bitrate_bps = min(max(start_bps, min_bps), max_bps)
        self._last_increase_ms: int | None = None

    @property
    def bitrate_bps(self) -> int:
        """Current estimate in bits per second."""
        return self._bitrate_bps

    def update(self, loss_fraction: float, now_ms: int) -> int:
        """Apply one loss report (fraction 0.0..1.0) and return the new estimate."""
        rate = self._bitrate_bps
        if loss_fraction > LOSS_HIGH:
            if loss_fraction > 1.0:
                loss_fraction = 1.0
            rate = int(rate * (1.0 - 0.5 * loss_fraction))
        elif loss_fraction < LOSS_LOW:
            last = self._last_increase_ms
            if last is None or now_ms - last >= INCREASE_INTERVAL_MS:
                self._last_increase_ms = now_ms
                rate = int(rate * INCREASE_FACTOR)
        if rate < self.min_bps:
            rate = self.min_bps
        elif rate > self.max_bps:
            rate = self.max_bps
        self._bitrate_bps = rate
        return rate
