"""Pure parts of tracking's read model: stop outcomes, completion changes, recent speed."""

from __future__ import annotations

import msgspec
import pytest

from fleet.records import Ping
from fleet.tracking.read_model import completion_changes, new_outcomes, recent_speed_mps
from fleet.tracking.tracker import DriverTrack
from load_tests.scenarios import build_plan

PLAN = build_plan("rt-a", "drv-a", n_stops=3)


def _track(**kw: object) -> DriverTrack:
    return DriverTrack("drv-a", route_id="rt-a", plan_version=PLAN.version, **kw)  # type: ignore[arg-type]


def test_new_outcomes_are_the_stops_that_changed() -> None:
    before = _track(done={"st-1": "delivered"})
    after = _track(done={"st-1": "delivered", "st-2": "failed"})
    assert new_outcomes(before, after) == [("st-2", "failed")]
    assert new_outcomes(after, after) == []


def test_a_new_route_reports_all_its_outcomes() -> None:
    before = DriverTrack("drv-a", route_id="rt-old", done={"x": "delivered"})
    after = _track(done={"st-1": "failed"})
    assert new_outcomes(before, after) == [("st-1", "failed")]


def test_completion_is_filed_only_when_something_changed() -> None:
    track = _track(done={"st-1": "delivered"})
    assert completion_changes(track, track, PLAN, PLAN, 7) == []
    after = _track(done={"st-1": "delivered", "st-2": "delivered"})
    assert len(completion_changes(track, after, PLAN, PLAN, 7)) == len(PLAN.stops)


def test_stops_a_new_version_dropped_are_filed_as_removed() -> None:
    newer = msgspec.structs.replace(PLAN, version=PLAN.version + 1, stops=PLAN.stops[:2])
    before = _track()
    after = DriverTrack("drv-a", route_id="rt-a", plan_version=newer.version)
    outcomes = completion_changes(before, after, newer, PLAN, 7)
    assert len(outcomes) == len(PLAN.stops)  # two kept, one removed


def _ping(ts_s: float, lat: float, speed: float | None = None) -> Ping:
    return Ping("drv-a", int(ts_s * 1000), lat, 13.4, speed_mps=speed)


def test_recent_speed_prefers_reported_speeds() -> None:
    assert recent_speed_mps([_ping(0, 52.0, 10.0), _ping(1, 52.1, 12.0)]) == 11.0


def test_recent_speed_from_distance_over_time() -> None:
    # 0.001 degree of latitude is about 111 m; in 10 s that is about 11 m/s.
    speed = recent_speed_mps([_ping(0, 52.000), _ping(10, 52.001)])
    assert speed == pytest.approx(11.1, abs=0.1)


def test_recent_speed_unknown_without_two_fixes_apart_in_time() -> None:
    assert recent_speed_mps([]) is None
    assert recent_speed_mps([_ping(0, 52.0)]) is None
    assert recent_speed_mps([_ping(5, 52.0), _ping(5, 52.1)]) is None
