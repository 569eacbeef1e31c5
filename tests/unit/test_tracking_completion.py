"""Completion reports: each stop filed under its zone and hour of day, removals included."""

from __future__ import annotations

import h3

from fleet.tracking.completion import (
    VERSION_KEY,
    WINDOW_KEY,
    ZONE_KEY,
    ZONES_SUMMARY_KEY,
    completion_args,
    stop_outcomes,
    stop_window,
)
from load_tests.scenarios import build_plan

PLAN = build_plan("rt-c1", "drv-c1", n_stops=3, start_ms=1_763_704_800_000)  # 06:00 UTC


def test_outcomes_carry_zone_window_and_state() -> None:
    outcomes = stop_outcomes(PLAN, {"st-1": "delivered", "st-2": "failed"}, 7)
    assert [o.state for o in outcomes] == ["delivered", "failed", "pending"]
    first = PLAN.stops[0]
    assert outcomes[0].zone == h3.latlng_to_cell(first.lat, first.lon, 7)
    assert outcomes[0].member == "rt-c1:st-1"
    assert outcomes[0].window == "2025-11-21T06"


def test_removed_stops_clear_their_entries() -> None:
    assert {o.state for o in stop_outcomes(PLAN, {}, 7, removed=True)} == {""}


def test_window_falls_back_to_the_shift_start() -> None:
    stop = PLAN.stops[0].__class__(stop_id="x", lat=52.5, lon=13.4)
    assert stop_window(stop, PLAN) == "2025-11-21T06"


def test_each_outcome_goes_to_its_zone_and_its_window() -> None:
    (one,) = stop_outcomes(build_plan("rt-c2", "drv-c2", n_stops=1), {}, 7)
    args = completion_args([one], 60)
    assert args[0] == 60
    assert args[1:6] == [
        ZONE_KEY.format(one.zone),
        ZONES_SUMMARY_KEY,
        one.zone,
        one.member,
        "pending",
    ]
    assert args[6:8] == [VERSION_KEY.format("rt-c2"), 1]
    assert args[8] == WINDOW_KEY.format(one.window)
