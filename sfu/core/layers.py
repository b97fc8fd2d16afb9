"""Simulcast / temporal layer choice for one subscriber of one video track.

A publisher sends up to three simulcast encodings of one source (spatial index
0 = low, 1 = medium, 2 = high), each possibly split into VP8 temporal layers
(TID 0..T-1, RFC 7741 §4.2). The SFU forwards exactly one spatial layer and,
within it, the temporal layers up to some maximum to each subscriber
(RFC 7667 §3.7, "switching" middlebox). This module only *decides*; the
caller (the subscriber's down track) switches spatial layers at a keyframe of
the target and asks the publisher for one.

Rules applied by :meth:`LayerSelector.choose`:

* **Candidates.** Every arriving spatial layer ``s <= max_spatial``
  contributes ``(s, t)`` for each temporal layer ``t`` in ``0..T-1`` (cost:
  the cumulative ``temporal_bitrates_bps[t]``), or ``(s, -1)`` when the layer
  has no temporal layers (cost: ``bitrate_bps``). Candidates are ordered
  lexicographically by ``(s, t)``, so a falling estimate sheds temporal layers
  before it gives up a spatial layer: (2,2) -> (2,1) -> (2,0) -> (1,2).
  When no layer ``<= max_spatial`` arrives, the lowest arriving layer stands
  in: a larger picture than asked for beats no picture.
* **Unmeasured layers are not free.** A layer whose measured bitrate is still
  0 (it just started) costs :data:`DEFAULT_COST_BPS` for its spatial index,
  so a fresh layer is not chosen on a budget it cannot meet.
* **Budget.** ``estimate_bps * headroom``, the remainder being kept for
  retransmissions, RTCP and the estimate's own error. ``None`` = no limit.
  A candidate *fits* when its cost is ``<=`` the budget.
* **Down at once.** When the current layer stopped arriving, when it is above
  ``max_spatial``, or when it no longer fits, the target is the best fitting
  candidate not above the current one (a climb still has to earn its place,
  see below), else the lowest candidate: the subscriber is never paused for
  bandwidth, the lowest layer is the floor. Exception: when the current layer
  is gone (or disallowed) and only higher candidates fit, the move is forced
  anyway and there is nothing to protect, so the best fitting one is taken as
  for a first choice.
* **Up slowly.** A candidate above the current layer (better estimate, a
  higher layer started arriving, ``max_spatial`` raised) is only taken once it
  has fitted the budget at every call for ``up_hold_ms``; a single call at
  which it does not fit (or does not arrive, or is above ``max_spatial``)
  restarts that clock. Receiver-side estimates (REMB,
  draft-alvestrand-rmcat-remb; GCC, draft-ietf-rmcat-gcc) swing by tens of
  percent, and a spatial switch costs a keyframe, so a short-lived rise must
  not trigger one.
* **Backoff.** Whenever the layer being forwarded does not fit the budget
  (hence right after every bandwidth-caused down-switch), no climb at all for
  ``up_backoff_ms``: the estimate has just proven too optimistic, climbing
  straight back would make the layers flap. :meth:`LayerSelector.on_switched`
  with reason ``"bandwidth"`` restarts the backoff at the actual switch time.
* **First choice** (``current is None``): the best fitting candidate at once.
* **User intent is fast.** When ``max_spatial`` is higher than at the previous
  call (e.g. the subscriber enlarged the video), the newly allowed candidates
  that fit are considered held already: the climb happens at this call if the
  budget allows and no backoff runs; under backoff it happens as soon as the
  backoff ends, provided they kept fitting in between.
* **Climb target.** At most the best fitting candidate; a climb may skip
  intermediate candidates.
* **Temporal normalization.** The returned temporal index matches the stream:
  ``T-1`` rather than ``-1`` when the layer has temporal layers, ``-1`` when
  it has none. A current temporal of -1, or one the stream does not have,
  stands for the whole layer (its top candidate), so a change in a layer's
  temporal structure is neither a climb nor a down-switch.

The selector is deterministic: the output depends only on the sequence of
calls and their arguments (time comes in as ``now_ms``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "DEFAULT_COST_BPS",
    "REASON_BANDWIDTH",
    "REASON_CLIMB",
    "REASON_INITIAL",
    "REASON_KEEP",
    "REASON_MAX_SPATIAL",
    "REASON_NONE",
    "REASON_NOT_ARRIVING",
    "SIZE_SLACK",
    "Layer",
    "LayerRates",
    "LayerSelector",
    "max_spatial_for_size",
]

DEFAULT_COST_BPS: tuple[int, ...] = (150_000, 500_000, 1_500_000)
"""Assumed cost of a spatial layer whose bitrate has not been measured yet
(indices beyond the table use its last entry). Roughly what browsers send for
180p / 360p / 720p simulcast encodings."""

SIZE_SLACK = 0.9
"""A layer "covers" a rendered size when it is at least this fraction of it in
both dimensions: a 10% upscale is invisible, the next layer costs ~3x."""

# Why choose() returned what it returned (see LayerSelector.reason).
REASON_NONE = "none"  # no layer arrives at all
REASON_INITIAL = "initial"  # first choice (current was None)
REASON_KEEP = "keep"  # target is the current level
REASON_NOT_ARRIVING = "not_arriving"  # current layer stopped arriving
REASON_MAX_SPATIAL = "max_spatial"  # current layer is above max_spatial
REASON_BANDWIDTH = "bandwidth"  # current layer no longer fits the budget
REASON_CLIMB = "climb"  # a higher candidate earned its place


@dataclass(slots=True, frozen=True)
class LayerRates:
    """What one spatial layer is doing right now, as measured by the server."""

    arriving: bool
    """Packets seen in the last ~500 ms."""
    bitrate_bps: int
    """Measured bitrate of the whole spatial layer (all temporal layers)."""
    temporal_bitrates_bps: tuple[int, ...] = ()
    """Cumulative bitrate up to each temporal layer: (t0, t0+t1, t0+t1+t2);
    empty when the stream has no temporal layers."""


@dataclass(slots=True, frozen=True)
class Layer:
    """A forwarding choice: one spatial layer, temporal layers up to ``temporal``."""

    spatial: int
    temporal: int
    """Max temporal layer to forward; -1 = all / the stream has no temporal layers."""


def max_spatial_for_size(sizes: Sequence[tuple[int, int]], width: int, height: int) -> int:
    """Smallest spatial index whose size covers a ``width`` x ``height`` rendering.

    ``sizes[s]`` is the (width, height) of spatial layer ``s``, lowest first.
    A layer covers the rendering when both its dimensions are at least
    :data:`SIZE_SLACK` of the rendered ones. Unknown sizes, given as (0, 0),
    cover nothing that can be relied on; when no known size covers, the top
    index is returned (never under-deliver on a guess). A hidden rendering
    (width or height 0) needs only the lowest layer: 0.
    """
    if width <= 0 or height <= 0 or not sizes:
        return 0
    for index, (layer_width, layer_height) in enumerate(sizes):
        if layer_width <= 0 or layer_height <= 0:
            continue
        if layer_width >= width * SIZE_SLACK and layer_height >= height * SIZE_SLACK:
            return index
    return len(sizes) - 1


def _default_cost_bps(spatial: int) -> int:
    return DEFAULT_COST_BPS[min(spatial, len(DEFAULT_COST_BPS) - 1)]


def _candidates(layers: Sequence[LayerRates], max_spatial: int) -> list[tuple[int, int, int]]:
    """(spatial, temporal, cost_bps) in lexicographic (spatial, temporal) order."""
    spatials = [s for s in range(min(len(layers), max_spatial + 1)) if layers[s].arriving]
    if not spatials:
        # Nothing allowed arrives: the lowest arriving layer above the limit
        # stands in (a bigger picture beats none).
        spatials = [s for s in range(len(layers)) if layers[s].arriving][:1]
    out: list[tuple[int, int, int]] = []
    for s in spatials:
        rates = layers[s]
        temporal = rates.temporal_bitrates_bps
        if rates.bitrate_bps <= 0:
            cost = _default_cost_bps(s)
            if temporal:
                out.extend((s, t, cost) for t in range(len(temporal)))
            else:
                out.append((s, -1, cost))
            continue
        if not temporal:
            out.append((s, -1, rates.bitrate_bps))
            continue
        previous = 0
        for t, cumulative in enumerate(temporal):
            # An unmeasured temporal layer counts as the whole spatial layer;
            # cumulative costs never decrease with t.
            cost = max(cumulative if cumulative > 0 else rates.bitrate_bps, previous)
            out.append((s, t, cost))
            previous = cost
    return out


class LayerSelector:
    """Chooses the layer to forward to one subscriber of one video track.

    See the module docstring for the rules. ``reason`` tells why the last
    :meth:`choose` returned what it did (one of the ``REASON_*`` strings).

    Memory bound: one entry per candidate (at most spatial x temporal layers).
    """

    __slots__ = (
        "_backoff_from_ms",
        "_fit_since_ms",
        "_last_max_spatial",
        "headroom",
        "last_switch",
        "last_switch_ms",
        "last_switch_reason",
        "reason",
        "up_backoff_ms",
        "up_hold_ms",
    )

    def __init__(
        self, *, up_hold_ms: int = 2000, up_backoff_ms: int = 4000, headroom: float = 0.9
    ) -> None:
        if up_hold_ms < 0:
            raise ValueError(f"up_hold_ms must be >= 0, got {up_hold_ms}")
        if up_backoff_ms < 0:
            raise ValueError(f"up_backoff_ms must be >= 0, got {up_backoff_ms}")
        if not headroom > 0:
            raise ValueError(f"headroom must be > 0, got {headroom}")
        self.up_hold_ms = up_hold_ms
        self.up_backoff_ms = up_backoff_ms
        self.headroom = headroom
        # (spatial, temporal) -> first call time of the current unbroken run
        # of calls at which that candidate fitted.
        self._fit_since_ms: dict[tuple[int, int], int] = {}
        self._backoff_from_ms: int | None = None
        self._last_max_spatial: int | None = None
        self.reason = REASON_NONE
        self.last_switch: Layer | None = None
        self.last_switch_ms: int | None = None
        self.last_switch_reason: str | None = None

    def choose(
        self,
        now_ms: int,
        layers: Sequence[LayerRates],
        max_spatial: int,
        estimate_bps: int | None,
        current: Layer | None,
    ) -> Layer | None:
        """Target layer. None only when no layer at all is arriving.

        ``layers[s]`` describes spatial layer ``s``; ``max_spatial`` is the
        highest spatial layer the subscriber wants (e.g. from
        :func:`max_spatial_for_size`); ``estimate_bps`` the subscriber's
        bandwidth estimate (None = no limit); ``current`` the layer being
        forwarded now (None before the first choice).
        """
        previous_max = self._last_max_spatial
        self._last_max_spatial = max_spatial
        candidates = _candidates(layers, max_spatial)
        if not candidates:
            self._fit_since_ms.clear()
            self.reason = REASON_NONE
            return None

        budget_bps = None if estimate_bps is None else estimate_bps * self.headroom
        fitting = [c for c in candidates if budget_bps is None or c[2] <= budget_bps]
        self._track_fit(now_ms, fitting, previous_max, max_spatial)

        lowest = candidates[0]
        if current is None:
            target = fitting[-1] if fitting else lowest
            self.reason = REASON_INITIAL
            return Layer(target[0], target[1])

        cur = (current.spatial, current.temporal)
        current_cost: int | None = None
        same_spatial = [c for c in candidates if c[0] == cur[0]]
        if same_spatial:
            # Exact match, else the layer's top candidate: -1 ("all") or a
            # temporal index the stream does not have means the whole layer.
            match = next((c for c in same_spatial if c[1] == cur[1]), same_spatial[-1])
            cur = (match[0], match[1])
            current_cost = match[2]
            if budget_bps is not None and current_cost > budget_bps:
                self._backoff_from_ms = now_ms
        backoff_from = self._backoff_from_ms
        may_climb = backoff_from is None or now_ms - backoff_from >= self.up_backoff_ms
        held_before = now_ms - self.up_hold_ms

        target = None
        for s, t, cost in reversed(fitting):
            if (s, t) <= cur or (may_climb and self._fit_since_ms[(s, t)] <= held_before):
                target = (s, t, cost)
                break
        if target is None:
            if current_cost is None and fitting:
                # Forced move and only higher layers are left: nothing to
                # protect, so choose as at the start.
                target = fitting[-1]
            else:
                target = lowest

        key = (target[0], target[1])
        if key == cur:
            self.reason = REASON_KEEP
        elif current_cost is None:
            # Forced move: the current layer is gone or no longer allowed.
            if cur[0] < len(layers) and layers[cur[0]].arriving:
                self.reason = REASON_MAX_SPATIAL
            else:
                self.reason = REASON_NOT_ARRIVING
        elif key > cur:
            self.reason = REASON_CLIMB
        else:
            self.reason = REASON_BANDWIDTH
        return Layer(key[0], key[1])

    def on_switched(self, now_ms: int, layer: Layer, reason: str) -> None:
        """Record that the caller actually switched to ``layer`` (at a keyframe).

        A spatial down-switch waits for a keyframe, so it happens later than
        the decision; with ``reason == REASON_BANDWIDTH`` the climb backoff is
        restarted from this moment.
        """
        self.last_switch = layer
        self.last_switch_ms = now_ms
        self.last_switch_reason = reason
        if reason == REASON_BANDWIDTH and (
            self._backoff_from_ms is None or now_ms > self._backoff_from_ms
        ):
            self._backoff_from_ms = now_ms

    def _track_fit(
        self,
        now_ms: int,
        fitting: list[tuple[int, int, int]],
        previous_max: int | None,
        max_spatial: int,
    ) -> None:
        since = self._fit_since_ms
        keys = {(s, t) for s, t, _ in fitting}
        for key in [k for k in since if k not in keys]:
            del since[key]  # the run of fitting calls is broken
        for key in keys:
            since.setdefault(key, now_ms)
        if previous_max is not None and max_spatial > previous_max:
            # User intent: newly allowed layers need not wait for the hold.
            held_at_ms = now_ms - self.up_hold_ms
            for key in keys:
                if key[0] > previous_max:
                    since[key] = min(since[key], held_at_ms)
