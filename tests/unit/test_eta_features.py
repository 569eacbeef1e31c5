"""ETA features: distances along the plan, stops and service before, speeds, zones."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fleet.records import LatLon, RoutePlan, Stop
from models.features import (
    Anchor,
    PlanContext,
    ZoneSpeeds,
    recent_speed_mps,
    route_features,
)

SPEEDS = ZoneSpeeds({}, {}, 8.0)


def _plan() -> RoutePlan:
    # Stops 1 km apart due north of the depot (about 0.009 degrees of latitude each).
    stops = [Stop(f"st-{i}", 52.5 + 0.009 * i, 13.4, service_s=60.0 * i) for i in (1, 2, 3)]
    return RoutePlan("rt-1", "drv-1", 1, stops, depot=LatLon(52.5, 13.4))


def test_rows_follow_the_remaining_stops_in_visiting_order() -> None:
    ctx = PlanContext.from_plan(_plan(), 7)
    batch = route_features(ctx, Anchor(1_000, 52.5, 13.4, along_m=500.0), [2, 1], SPEEDS)
    remaining = batch.col("remaining_m")
    assert len(batch) == 2
    assert math.isclose(remaining[0], ctx.stop_along_m[1] - 500.0)
    assert remaining[1] > remaining[0]
    np.testing.assert_array_equal(batch.col("stops_before"), [0, 1])
    np.testing.assert_array_equal(batch.col("service_before_s"), [0.0, 120.0])


def test_service_left_at_the_current_stop_comes_first() -> None:
    ctx = PlanContext.from_plan(_plan(), 7)
    anchor = Anchor(1_000, 52.509, 13.4, along_m=ctx.stop_along_m[0], service_left_s=45.0)
    batch = route_features(ctx, anchor, [1, 2], SPEEDS)
    np.testing.assert_array_equal(batch.col("service_before_s"), [45.0, 165.0])


def test_a_driver_past_a_stop_has_zero_distance_to_it_not_negative() -> None:
    ctx = PlanContext.from_plan(_plan(), 7)
    batch = route_features(ctx, Anchor(1_000, 52.52, 13.4, along_m=99_999.0), [0, 1, 2], SPEEDS)
    assert np.all(batch.col("remaining_m") == 0.0)


def test_no_remaining_stops_no_rows() -> None:
    ctx = PlanContext.from_plan(_plan(), 7)
    assert len(route_features(ctx, Anchor(0, 52.5, 13.4, 0.0), [], SPEEDS)) == 0


def test_hour_and_weekday_are_utc_of_the_anchor() -> None:
    ctx = PlanContext.from_plan(_plan(), 7)
    monday_0830 = 1_791_158_400_000 + 510 * 60_000  # 2026-10-05 08:30 UTC, a Monday
    batch = route_features(ctx, Anchor(monday_0830, 52.5, 13.4, 0.0), [0], SPEEDS)
    assert batch.col("hour_of_day")[0] == 8.5
    assert batch.col("day_of_week")[0] == 0.0


def test_zone_speeds_fall_back_to_the_hour_then_overall() -> None:
    speeds = ZoneSpeeds({("z", 8): 5.0}, {8: 6.0}, 7.0)
    np.testing.assert_array_equal(
        speeds.lookup(["z", "other", "other"], [8.2, 8.9, 3.0]), [5.0, 6.0, 7.0]
    )


def test_recent_speed_counts_only_moving_segments() -> None:
    ts = np.arange(0, 11) * 10_000  # 10 s apart
    lat = 52.5 + np.r_[np.arange(6) * 0.0009, np.full(5, 5 * 0.0009)]  # 100 m per 10 s, then stop
    speed = recent_speed_mps(ts, lat, np.full(11, 13.4), int(ts[-1]))
    assert 9.5 < speed < 10.5


def test_recent_speed_is_nan_without_enough_movement() -> None:
    ts = np.arange(0, 5) * 10_000
    assert math.isnan(recent_speed_mps(ts, np.full(5, 52.5), np.full(5, 13.4), int(ts[-1])))
    assert math.isnan(recent_speed_mps([], [], [], 0))


@settings(max_examples=60, deadline=None)
@given(
    along=st.floats(-1e4, 1e5, allow_nan=False),
    service_left=st.floats(0, 1e4, allow_nan=False),
    picks=st.sets(st.integers(0, 2), min_size=1),
)
def test_features_are_finite_where_defined_and_non_negative(along, service_left, picks) -> None:
    ctx = PlanContext.from_plan(_plan(), 7)
    batch = route_features(
        ctx, Anchor(0, 52.5, 13.4, along, math.nan, service_left), sorted(picks), SPEEDS
    )
    assert len(batch) == len(picks)
    assert np.all(batch.col("remaining_m") >= 0)
    assert np.all(np.diff(batch.col("service_before_s")) >= 0)
    assert np.all(np.isfinite(batch.col("path_travel_s")))
