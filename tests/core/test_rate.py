"""Loss-based rate controller (draft-ietf-rmcat-gcc-02 §6)."""

from __future__ import annotations

import pytest

from sfu.core.rate import LossBasedRate

# scenario id -> ((min, max, start), rows of (loss_fraction, now_ms, expected_bps))
SCENARIOS = {
    "increase_paced_then_decrease_then_hold": (
        (100_000, 2_000_000, 1_000_000),
        [
            (0.0, 0, 1_080_000),  # < 2 %: +8 %
            (0.0, 500, 1_080_000),  # increase at most once per 1000 ms
            (0.01, 999, 1_080_000),
            (0.0, 1000, 1_166_400),
            (0.05, 1500, 1_166_400),  # 2..10 %: hold
            (0.2, 1600, 1_049_760),  # > 10 %: * (1 - 0.5 * 0.2)
            (0.5, 1700, 787_320),  # * 0.75
            (0.02, 1800, 787_320),  # exactly 2 % is not "< 2 %": hold
            (0.10, 1900, 787_320),  # exactly 10 % is not "> 10 %": hold
            (0.01, 2000, 850_305),  # 1000 ms after the last increase
        ],
    ),
    "clamped_to_max": (
        (100_000, 2_000_000, 1_950_000),
        [(0.0, 0, 2_000_000), (0.0, 1000, 2_000_000), (0.3, 1100, 1_700_000)],
    ),
    "clamped_to_min": (
        (100_000, 2_000_000, 150_000),
        [(0.8, 0, 100_000), (1.0, 100, 100_000), (0.0, 200, 108_000)],
    ),
    "loss_above_one_treated_as_total_loss": (
        (10_000, 2_000_000, 1_000_000),
        [(1.5, 0, 500_000), (1.0, 10, 250_000)],
    ),
    "decreases_are_not_paced": (
        (10_000, 2_000_000, 1_000_000),
        [(0.2, 0, 900_000), (0.2, 1, 810_000), (0.2, 2, 729_000)],
    ),
}


@pytest.mark.parametrize(("limits", "rows"), SCENARIOS.values(), ids=SCENARIOS.keys())
def test_rate_scenarios(limits: tuple[int, int, int], rows: list[tuple[float, int, int]]) -> None:
    ctl = LossBasedRate(*limits)
    for n, (loss, now_ms, expected) in enumerate(rows):
        assert ctl.update(loss, now_ms) == expected, f"row {n}"
        assert ctl.bitrate_bps == expected


@pytest.mark.parametrize(
    ("limits", "initial"),
    [
        ((100_000, 2_000_000, 50_000), 100_000),
        ((100_000, 2_000_000, 5_000_000), 2_000_000),
        ((100_000, 2_000_000, 300_000), 300_000),
    ],
    ids=["start_below_min", "start_above_max", "start_inside"],
)
def test_start_is_clamped(limits: tuple[int, int, int], initial: int) -> None:
    assert LossBasedRate(*limits).bitrate_bps == initial


@pytest.mark.parametrize(
    "limits",
    [(0, 1000, 500), (2000, 1000, 1500), (-5, 1000, 500)],
    ids=["zero_min", "max_below_min", "negative_min"],
)
def test_invalid_limits(limits: tuple[int, int, int]) -> None:
    with pytest.raises(ValueError):
        LossBasedRate(*limits)
