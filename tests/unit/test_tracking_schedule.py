"""Behind-schedule detector: planned time at a position, hysteresis, alert details."""

from __future__ import annotations

import numpy as np
import pytest

from fleet.records import Ping
from fleet.tracking.config import TrackingConfig
from fleet.tracking.schedule import BehindState, expected_stop_id, planned_time_at, step_behind
from fleet.tracking.tracker import DriverTrack, apply_pings, apply_plan, plan_geometry
from load_tests.scenarios import build_plan

CFG = TrackingConfig(behind_schedule_ms=600_000, behind_schedule_resolve_ms=300_000)


def test_planned_time_interpolates_between_departure_and_arrival() -> None:
    plan = build_plan("rt-s", "drv-s", n_stops=3, leg_m=1600, speed_mps=8, service_s=100)
    along = np.array([1600.0, 3200.0, 4800.0])
    start = plan.shift_start_ms
    assert start is not None
    assert planned_time_at(plan, along, 0, 800.0) == start + 100_000
    depart_1 = start + 200_000 + 100_000
    assert planned_time_at(plan, along, 1, 2400.0) == depart_1 + 100_000
    assert planned_time_at(plan, along, 3, 2400.0) is None


def test_expected_stop_is_the_one_planned_next() -> None:
    plan = build_plan("rt-s", "drv-s", n_stops=3, leg_m=1600, speed_mps=8, service_s=100)
    start = plan.shift_start_ms
    assert start is not None
    assert expected_stop_id(plan, start + 250_000) == "st-2"
    assert expected_stop_id(plan, start + 10**9) == "st-3"


@pytest.mark.parametrize(
    ("lags_s", "actions"),
    [
        ([0, 300, 599, 601, 700, 400, 301, 299, 200], ["open", "resolve"]),
        ([601, 500, 650, 320, 700], ["open"]),  # between thresholds: holds, never flaps
        ([100, 200, 590], []),
    ],
)
def test_hysteresis(lags_s: list[int], actions: list[str]) -> None:
    state, seen = BehindState(), []
    for i, lag in enumerate(lags_s):
        state, change = step_behind(state, lag * 1000, i, {}, CFG)
        if change is not None:
            seen.append(change.action)
    assert seen == actions


def test_a_driver_stuck_at_the_depot_falls_behind_with_details() -> None:
    plan = build_plan("rt-s2", "drv-s2", n_stops=4, leg_m=1600, speed_mps=8, service_s=100)
    geo = plan_geometry(plan)
    track = apply_plan(DriverTrack("drv-s2"), plan, 0).track
    start = plan.shift_start_ms
    assert start is not None
    lat, lon = plan.path[0] if plan.path else (0.0, 0.0)
    alerts = []
    for minute in range(0, 16):
        ts = start + minute * 60_000
        result = apply_pings(track, geo, [Ping("drv-s2", ts, lat, lon)], ts, CFG)
        track, alerts = result.track, alerts + result.alerts
    assert [(a.kind, a.state) for a in alerts] == [("behind_schedule", "open")]
    details = alerts[0].details
    assert details["driver_id"] == "drv-s2"
    assert details["current_stop_id"] == "st-1"
    assert details["expected_stop_id"] in {"st-3", "st-4"}
    assert details["delay_s"] > 600
    assert details["est_end_delay_s"] == details["delay_s"]
