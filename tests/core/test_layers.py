"""LayerSelector / max_spatial_for_size: table-driven replays of choose() calls."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from sfu.core.layers import (
    DEFAULT_COST_BPS,
    REASON_BANDWIDTH,
    REASON_CLIMB,
    REASON_INITIAL,
    REASON_KEEP,
    REASON_MAX_SPATIAL,
    REASON_NONE,
    REASON_NOT_ARRIVING,
    Layer,
    LayerRates,
    LayerSelector,
    max_spatial_for_size,
)

# Three simulcast layers with three temporal layers each (cumulative rates).
L0 = LayerRates(True, 150_000, (50_000, 100_000, 150_000))
L1 = LayerRates(True, 500_000, (200_000, 350_000, 500_000))
L2 = LayerRates(True, 1_500_000, (600_000, 1_000_000, 1_500_000))
OFF = LayerRates(False, 0)
ALL = (L0, L1, L2)
# The same without temporal layers.
N0 = LayerRates(True, 150_000)
N1 = LayerRates(True, 500_000)
N2 = LayerRates(True, 1_500_000)
NO_TEMPORAL = (N0, N1, N2)
# Layer 2 just started: nothing measured yet.
FRESH2 = LayerRates(True, 0, (0, 0, 0))

# Estimates and the best candidate that fits estimate * 0.9.
E22 = 2_000_000  # budget 1.8M: (2,2)
E21 = 1_200_000  # budget 1.08M: (2,1) = 1.0M
E20 = 800_000  # budget 720k: (2,0) = 600k
E12 = 600_000  # budget 540k: (1,2) = 500k
E11 = 450_000  # budget 405k: (1,1) = 350k
E10 = 300_000  # budget 270k: (1,0) = 200k
E02 = 200_000  # budget 180k: (0,2) = 150k
E01 = 120_000  # budget 108k: (0,1) = 100k
E00 = 60_000  # budget 54k: (0,0) = 50k
TINY = 10_000  # nothing fits

FOLLOW = "follow"  # current = what the previous step returned (caller switched at once)


@dataclass(frozen=True)
class Step:
    now_ms: int
    estimate_bps: int | None
    expected: tuple[int, int] | None
    layers: tuple[LayerRates, ...] = ALL
    max_spatial: int = 2
    current: Any = FOLLOW  # FOLLOW, None or (spatial, temporal)
    reason: str | None = None


def S(now_ms: int, estimate_bps: int | None, expected: tuple[int, int] | None, **kw: Any) -> Step:
    return Step(now_ms, estimate_bps, expected, **kw)


# scenario id -> (selector kwargs, steps); defaults: hold 2000 ms, backoff 4000 ms, headroom 0.9
SCENARIOS: dict[str, tuple[dict[str, Any], list[Step]]] = {
    "falling_estimate_drops_temporal_before_spatial": (
        {},
        [
            S(0, E22, (2, 2), reason=REASON_INITIAL),
            S(50, E21, (2, 1), reason=REASON_BANDWIDTH),
            S(100, E20, (2, 0), reason=REASON_BANDWIDTH),
            S(150, E12, (1, 2), reason=REASON_BANDWIDTH),
            S(200, E11, (1, 1), reason=REASON_BANDWIDTH),
            S(250, E10, (1, 0), reason=REASON_BANDWIDTH),
            S(300, E02, (0, 2), reason=REASON_BANDWIDTH),
            S(350, E01, (0, 1), reason=REASON_BANDWIDTH),
            S(400, E00, (0, 0), reason=REASON_BANDWIDTH),
            S(450, TINY, (0, 0), reason=REASON_KEEP),  # never paused: lowest is the floor
        ],
    ),
    "steep_drop_lands_in_one_call": (
        {},
        [
            S(0, E22, (2, 2)),
            S(50, E10, (1, 0), reason=REASON_BANDWIDTH),
        ],
    ),
    "nothing_fits_falls_to_lowest_at_once": (
        {},
        [
            S(0, E22, (2, 2)),
            S(50, TINY, (0, 0), reason=REASON_BANDWIDTH),
            S(100, 0, (0, 0), reason=REASON_KEEP),
        ],
    ),
    "no_climb_before_hold_and_backoff": (
        {},
        [
            S(0, E22, (2, 2)),
            S(100, E12, (1, 2), reason=REASON_BANDWIDTH),  # backoff runs from here
            S(200, E22, (1, 2), reason=REASON_KEEP),  # layer 2 fits from here
            S(2199, E22, (1, 2)),
            S(2200, E22, (1, 2)),  # held, but backoff until 4100
            S(4099, E22, (1, 2)),
            S(4100, E22, (2, 2), reason=REASON_CLIMB),
            S(4150, E22, (2, 2), reason=REASON_KEEP),
        ],
    ),
    "climb_after_hold_when_no_backoff": (
        {},
        [
            S(0, E12, (1, 2), reason=REASON_INITIAL),  # first choice is no down-switch
            S(500, E22, (1, 2)),
            S(2499, E22, (1, 2)),
            S(2500, E22, (2, 2), reason=REASON_CLIMB),
        ],
    ),
    "climb_may_skip_intermediate_candidates": (
        {},
        [
            S(0, E10, (1, 0)),
            S(100, E22, (1, 0)),
            S(2100, E22, (2, 2), reason=REASON_CLIMB),
        ],
    ),
    "temporal_climb_also_waits_for_hold": (
        {},
        [
            S(0, E20, (2, 0)),
            S(100, E22, (2, 0)),
            S(2099, E22, (2, 0)),
            S(2100, E22, (2, 2), reason=REASON_CLIMB),
        ],
    ),
    "climb_only_to_what_held": (
        {},
        [
            S(0, E12, (1, 2)),
            S(500, E22, (1, 2)),  # (2,0..2) fit from 500
            S(1500, E21, (1, 2)),  # (2,2) stops fitting; (2,0), (2,1) still do
            S(2000, E22, (1, 2)),  # (2,2) fits again from 2000
            S(2500, E22, (2, 1), reason=REASON_CLIMB),  # (2,1) held since 500
            S(3999, E22, (2, 1)),
            S(4000, E22, (2, 2), reason=REASON_CLIMB),
        ],
    ),
    "interrupted_fit_restarts_hold": (
        {},
        [
            S(0, E12, (1, 2)),
            S(500, E22, (1, 2)),
            S(1000, E12, (1, 2), reason=REASON_KEEP),  # layer 2 does not fit: clock restarts
            S(1200, E22, (1, 2)),
            S(2500, E22, (1, 2)),  # would have climbed without the dip
            S(3199, E22, (1, 2)),
            S(3200, E22, (2, 2), reason=REASON_CLIMB),
        ],
    ),
    "bandwidth_pressure_at_the_floor_extends_backoff": (
        {"up_backoff_ms": 1000, "up_hold_ms": 0},
        [
            S(0, TINY, (0, 0)),
            S(500, TINY, (0, 0)),  # still over budget: backoff runs from 500
            S(600, E22, (0, 0)),
            S(1499, E22, (0, 0)),
            S(1500, E22, (2, 2), reason=REASON_CLIMB),
        ],
    ),
    "current_stops_arriving_falls_at_once": (
        {},
        [
            S(0, E22, (2, 2)),
            S(100, E22, (1, 2), layers=(L0, L1, OFF), reason=REASON_NOT_ARRIVING),
            S(200, E22, (1, 2), layers=(L0, L1, OFF), reason=REASON_KEEP),
            S(300, E22, (1, 2)),  # layer 2 is back: it must hold first (no backoff)
            S(2299, E22, (1, 2)),
            S(2300, E22, (2, 2), reason=REASON_CLIMB),
        ],
    ),
    "current_stops_arriving_nothing_fits": (
        {},
        [
            S(0, E22, (2, 2)),
            S(100, TINY, (0, 0), layers=(L0, L1, OFF), reason=REASON_NOT_ARRIVING),
        ],
    ),
    "current_stops_arriving_unheld_higher_layer_not_taken": (
        {},
        [
            S(0, E22, (1, 2), layers=(L0, L1, OFF)),
            S(100, E22, (0, 2), layers=(L0, OFF, L2), reason=REASON_NOT_ARRIVING),
            S(2099, E22, (0, 2), layers=(L0, OFF, L2)),
            S(2100, E22, (2, 2), layers=(L0, OFF, L2), reason=REASON_CLIMB),
        ],
    ),
    "current_stops_arriving_only_higher_layers_left": (
        {},
        [
            S(0, E22, (0, 2), max_spatial=0),
            # Layer 0 gone, layer 1 stands in for it: forced move, taken as a first choice.
            S(100, E22, (1, 2), layers=(OFF, L1, L2), max_spatial=0, reason=REASON_NOT_ARRIVING),
            S(200, E10, (1, 0), layers=(OFF, L1, L2), max_spatial=0, reason=REASON_BANDWIDTH),
        ],
    ),
    "current_stops_arriving_only_higher_layers_none_fits": (
        {},
        [
            S(0, TINY, (0, 0)),
            S(100, TINY, (1, 0), layers=(OFF, L1, L2), reason=REASON_NOT_ARRIVING),
        ],
    ),
    "higher_layer_starts_arriving_needs_hold": (
        {},
        [
            S(0, None, (1, 2), layers=(L0, L1, OFF)),
            S(1000, None, (1, 2)),
            S(2999, None, (1, 2)),
            S(3000, None, (2, 2), reason=REASON_CLIMB),
        ],
    ),
    "max_spatial_lowered_then_raised": (
        {},
        [
            S(0, E22, (2, 2)),
            S(100, E22, (1, 2), max_spatial=1, reason=REASON_MAX_SPATIAL),
            S(200, E22, (0, 2), max_spatial=0, reason=REASON_MAX_SPATIAL),
            S(300, E22, (2, 2), max_spatial=2, reason=REASON_CLIMB),  # user intent: no hold
        ],
    ),
    "max_spatial_raise_limited_by_budget": (
        {},
        [
            S(0, E12, (0, 2), max_spatial=0),
            S(100, E12, (1, 2), reason=REASON_CLIMB),  # layer 2 does not fit
            S(200, E22, (1, 2)),  # bandwidth-driven climb: hold again
            S(2199, E22, (1, 2)),
            S(2200, E22, (2, 2), reason=REASON_CLIMB),
        ],
    ),
    "max_spatial_raise_waits_for_backoff_only": (
        {},
        [
            S(0, E22, (1, 2), max_spatial=1),
            S(100, E10, (1, 0), max_spatial=1, reason=REASON_BANDWIDTH),  # backoff to 4100
            S(200, E22, (1, 0), max_spatial=2),  # raise seen under backoff
            S(4099, E22, (1, 0)),
            S(4100, E22, (2, 2), reason=REASON_CLIMB),
        ],
    ),
    "max_spatial_raise_waiver_lapses_when_not_fitting": (
        {},
        [
            S(0, E12, (1, 2), max_spatial=1),
            S(100, E12, (1, 2), max_spatial=2),  # raise, but layer 2 does not fit
            S(200, E22, (1, 2)),
            S(2199, E22, (1, 2)),
            S(2200, E22, (2, 2), reason=REASON_CLIMB),
        ],
    ),
    "max_spatial_for_hidden_video": (
        {},
        [
            S(0, E22, (2, 2)),
            S(100, E22, (0, 2), max_spatial=0, reason=REASON_MAX_SPATIAL),
            S(200, E22, (0, 2), max_spatial=-1, reason=REASON_KEEP),
        ],
    ),
    "estimate_none_never_limits": (
        {},
        [
            S(0, None, (2, 2)),
            S(60_000, None, (2, 2), reason=REASON_KEEP),
        ],
    ),
    "unmeasured_layer_is_not_free": (
        {},
        [
            S(0, E21, (1, 2), layers=(L0, L1, FRESH2)),  # default 1.5M > budget 1.08M
        ],
    ),
    "unmeasured_layer_fits_default_cost": (
        {},
        [
            S(0, E22, (2, 2), layers=(L0, L1, FRESH2)),  # 1.5M <= budget 1.8M
        ],
    ),
    "unmeasured_layer_without_temporal_layers": (
        {},
        [
            S(0, 1_000_000, (1, -1), layers=(N0, N1, LayerRates(True, 0))),
        ],
    ),
    "no_temporal_layers": (
        {},
        [
            S(0, E22, (2, -1), layers=NO_TEMPORAL),
            S(50, E21, (1, -1), layers=NO_TEMPORAL, reason=REASON_BANDWIDTH),
            S(100, E02, (0, -1), layers=NO_TEMPORAL, reason=REASON_BANDWIDTH),
            S(150, TINY, (0, -1), layers=NO_TEMPORAL, reason=REASON_KEEP),
        ],
    ),
    "nothing_arriving_gives_none_then_restarts": (
        {},
        [
            S(0, E22, (2, 2)),
            S(100, E22, None, layers=(OFF, OFF, OFF), reason=REASON_NONE),
            S(200, E22, (2, 2), reason=REASON_INITIAL),  # current None again: at once
        ],
    ),
    "no_layers_at_all": (
        {},
        [S(0, E22, None, layers=(), reason=REASON_NONE)],
    ),
    "only_layers_above_max_arriving_lowest_stands_in": (
        {},
        [
            S(0, E22, (1, 2), layers=(OFF, L1, L2), max_spatial=0),
            S(100, E22, (1, 2), layers=(OFF, L1, L2), max_spatial=0, reason=REASON_KEEP),
        ],
    ),
    "current_all_temporal_is_normalized": (
        {},
        [
            S(0, E22, (2, 2), current=(2, -1), reason=REASON_KEEP),
            S(100, E21, (2, 1), current=(2, -1), reason=REASON_BANDWIDTH),
        ],
    ),
    "stream_lost_temporal_layers_is_no_climb": (
        {},
        [
            S(0, E22, (2, -1), layers=NO_TEMPORAL, current=(2, 1), reason=REASON_KEEP),
            S(100, E22, (2, 2), current=(2, -1), reason=REASON_KEEP),
        ],
    ),
    "current_temporal_beyond_stream_is_clamped": (
        {},
        [S(0, E22, (2, 2), current=(2, 5), reason=REASON_KEEP)],
    ),
    "zero_hold_and_backoff_climb_at_once": (
        {"up_hold_ms": 0, "up_backoff_ms": 0},
        [
            S(0, E12, (1, 2)),
            S(1, E22, (2, 2), reason=REASON_CLIMB),
            S(2, E12, (1, 2), reason=REASON_BANDWIDTH),
            S(3, E22, (2, 2), reason=REASON_CLIMB),
        ],
    ),
    "headroom_one_uses_the_whole_estimate": (
        {"headroom": 1.0},
        [S(0, 1_500_000, (2, 2)), S(50, 1_499_999, (2, 1))],
    ),
}


def _replay(kwargs: dict[str, Any], steps: list[Step]) -> list[tuple[Any, str]]:
    selector = LayerSelector(**kwargs)
    current: Layer | None = None
    out: list[tuple[Any, str]] = []
    for step in steps:
        if step.current is not FOLLOW:
            current = None if step.current is None else Layer(*step.current)
        got = selector.choose(
            step.now_ms, step.layers, step.max_spatial, step.estimate_bps, current
        )
        out.append((None if got is None else (got.spatial, got.temporal), selector.reason))
        current = got
    return out


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario(name: str) -> None:
    kwargs, steps = SCENARIOS[name]
    for step, (got, reason) in zip(steps, _replay(kwargs, steps), strict=True):
        assert got == step.expected, (name, step)
        if step.reason is not None:
            assert reason == step.reason, (name, step)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario_is_deterministic(name: str) -> None:
    kwargs, steps = SCENARIOS[name]
    assert _replay(kwargs, steps) == _replay(kwargs, steps)


@pytest.mark.parametrize(
    "estimate_bps, expected",
    [
        (None, (2, 2)),
        (E22, (2, 2)),
        (E21, (2, 1)),
        (E20, (2, 0)),
        (E12, (1, 2)),
        (E11, (1, 1)),
        (E10, (1, 0)),
        (E02, (0, 2)),
        (E01, (0, 1)),
        (E00, (0, 0)),
        (TINY, (0, 0)),
        (0, (0, 0)),
    ],
)
def test_first_choice_is_best_fit_at_once(
    estimate_bps: int | None, expected: tuple[int, int]
) -> None:
    got = LayerSelector().choose(0, ALL, 2, estimate_bps, None)
    assert got == Layer(*expected)


def test_on_switched_bandwidth_restarts_backoff() -> None:
    selector = LayerSelector()
    assert selector.choose(0, ALL, 2, E22, None) == Layer(2, 2)
    # Decided at 100 (backoff would end at 4100), switched at the keyframe at 1000.
    assert selector.choose(100, ALL, 2, E12, Layer(2, 2)) == Layer(1, 2)
    assert selector.reason == REASON_BANDWIDTH
    selector.on_switched(1000, Layer(1, 2), selector.reason)
    assert (selector.last_switch, selector.last_switch_ms) == (Layer(1, 2), 1000)
    assert selector.last_switch_reason == REASON_BANDWIDTH
    assert selector.choose(1100, ALL, 2, E22, Layer(1, 2)) == Layer(1, 2)
    assert selector.choose(4100, ALL, 2, E22, Layer(1, 2)) == Layer(1, 2)
    assert selector.choose(4999, ALL, 2, E22, Layer(1, 2)) == Layer(1, 2)
    assert selector.choose(5000, ALL, 2, E22, Layer(1, 2)) == Layer(2, 2)


def test_on_switched_other_reason_does_not_start_backoff() -> None:
    selector = LayerSelector()
    assert selector.choose(0, ALL, 2, E12, None) == Layer(1, 2)
    selector.on_switched(0, Layer(1, 2), REASON_INITIAL)
    assert selector.choose(100, ALL, 2, E22, Layer(1, 2)) == Layer(1, 2)
    assert selector.choose(2100, ALL, 2, E22, Layer(1, 2)) == Layer(2, 2)


def test_pending_switch_keeps_backoff_fresh() -> None:
    # The caller still forwards (2,2) while it waits for a keyframe of layer 1;
    # every call that finds it over budget restarts the backoff.
    selector = LayerSelector(up_hold_ms=0)
    assert selector.choose(0, ALL, 2, E22, None) == Layer(2, 2)
    for now_ms in (100, 200, 300):
        assert selector.choose(now_ms, ALL, 2, E12, Layer(2, 2)) == Layer(1, 2)
    assert selector.choose(4299, ALL, 2, E22, Layer(1, 2)) == Layer(1, 2)
    assert selector.choose(4300, ALL, 2, E22, Layer(1, 2)) == Layer(2, 2)


def test_default_costs_are_increasing() -> None:
    assert list(DEFAULT_COST_BPS) == sorted(DEFAULT_COST_BPS)
    assert len(DEFAULT_COST_BPS) == 3


@pytest.mark.parametrize(
    "kwargs",
    [{"up_hold_ms": -1}, {"up_backoff_ms": -1}, {"headroom": 0.0}, {"headroom": -0.5}],
)
def test_constructor_rejects_bad_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        LayerSelector(**kwargs)


SIZES = [(320, 180), (640, 360), (1280, 720)]


@pytest.mark.parametrize(
    "sizes, width, height, expected",
    [
        pytest.param(SIZES, 0, 0, 0, id="hidden"),
        pytest.param(SIZES, 0, 720, 0, id="hidden-zero-width"),
        pytest.param(SIZES, 320, 180, 0, id="exact-low"),
        pytest.param(SIZES, 160, 90, 0, id="smaller-than-low"),
        pytest.param(SIZES, 350, 196, 0, id="low-within-slack"),
        pytest.param(SIZES, 360, 200, 1, id="low-beyond-slack"),
        pytest.param(SIZES, 640, 360, 1, id="exact-medium"),
        pytest.param(SIZES, 700, 394, 1, id="medium-within-slack"),
        pytest.param(SIZES, 720, 405, 2, id="medium-beyond-slack"),
        pytest.param(SIZES, 1280, 720, 2, id="exact-high"),
        pytest.param(SIZES, 1920, 1080, 2, id="larger-than-high"),
        pytest.param(SIZES, 300, 600, 2, id="portrait-needs-height"),
        pytest.param([(0, 0), (0, 0), (0, 0)], 320, 180, 2, id="all-unknown-top"),
        pytest.param([(0, 0), (640, 360), (1280, 720)], 320, 180, 1, id="low-unknown"),
        pytest.param([(320, 180), (0, 0), (1280, 720)], 640, 360, 2, id="medium-unknown"),
        pytest.param([(320, 180), (640, 360), (0, 0)], 1280, 720, 2, id="high-unknown"),
        pytest.param([(320, 180), (640, 360), (0, 0)], 640, 360, 1, id="high-unknown-not-needed"),
        pytest.param([(320, 180)], 1280, 720, 0, id="single-layer"),
        pytest.param([], 640, 360, 0, id="no-layers"),
    ],
)
def test_max_spatial_for_size(
    sizes: list[tuple[int, int]], width: int, height: int, expected: int
) -> None:
    assert max_spatial_for_size(sizes, width, height) == expected
