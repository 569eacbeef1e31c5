"""The driver tracker over a simulated route: status, progress, alerts, serialisation."""

from __future__ import annotations

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from fleet.records import RoutePlan, Stop
from fleet.tracking.alerts import alert_id
from fleet.tracking.config import TrackingConfig
from fleet.tracking.tracker import (
    DriverTrack,
    RouteProgress,
    apply_event,
    apply_pings,
    apply_plan,
    driver_status,
    plan_geometry,
    route_progress,
)
from load_tests.scenarios import Detour, DriverScenario, build_plan, simulate

CFG = TrackingConfig()


def _run(sc: DriverScenario) -> tuple[DriverTrack, list, list[str]]:
    sim = simulate(sc)
    geo = plan_geometry(sc.plan)
    track = apply_plan(DriverTrack(sc.driver_id), sc.plan, 0).track
    alerts, statuses = [], []
    items = sorted(
        [(p.ts_ms, 0, p) for p in sim.pings] + [(e.ts_ms, 1, e) for e in sim.events],
        key=lambda x: (x[0], x[1]),
    )
    for ts, kind, item in items:
        if kind == 0:
            result = apply_pings(track, geo, [item], ts, CFG)
        else:
            result = apply_event(track, geo, item, CFG)
        track = result.track
        alerts.extend(result.alerts)
        statuses.append(driver_status(track, geo, ts))
    return track, alerts, statuses


def test_clean_drive_has_no_alerts_and_completes() -> None:
    plan = build_plan("rt-c", "drv-c", n_stops=5)
    track, alerts, statuses = _run(DriverScenario("drv-c", plan, sigma_m=15.0, seed=3))
    assert alerts == []
    assert route_progress(track, plan).fraction == 1.0
    assert "on_schedule" in statuses and statuses[-1] == "idle"


def test_detour_opens_and_resolves_off_route_once() -> None:
    plan = build_plan("rt-d", "drv-d", n_stops=5)
    detour = Detour(start_s=600, duration_s=180, distance_m=400)
    _track, alerts, statuses = _run(DriverScenario("drv-d", plan, detours=(detour,), seed=4))
    assert [(a.kind, a.state) for a in alerts] == [("off_route", "open"), ("off_route", "resolved")]
    assert alerts[0].alert_id == alerts[1].alert_id
    assert alerts[0].details["expected_stop_id"].startswith("st-")
    assert "off_route" in statuses


def test_progress_counts_outcomes_over_total() -> None:
    plan = build_plan("rt-p", "drv-p", n_stops=4)
    track = apply_plan(DriverTrack("drv-p"), plan, 0).track
    track.done.update({"st-1": "delivered", "st-2": "failed"})
    progress = route_progress(track, plan)
    assert (progress.delivered, progress.failed, progress.total) == (1, 1, 4)
    assert progress.fraction == 0.5 and progress.next_stop_id == "st-3"


def test_state_round_trips_through_json_for_tables() -> None:
    plan = build_plan("rt-j", "drv-j", n_stops=5)
    detour = Detour(start_s=600, duration_s=180, distance_m=400)
    track, _, _ = _run(DriverScenario("drv-j", plan, detours=(detour,), seed=5))
    raw = msgspec.json.encode(track)
    assert msgspec.json.decode(raw, type=DriverTrack) == track


def test_alert_ids_are_deterministic_and_contract_identifiers() -> None:
    a = alert_id("drv-1", "off_route", 1000)
    assert a == alert_id("drv-1", "off_route", 1000)
    assert a != alert_id("drv-1", "off_route", 1001)
    assert len(a) <= 64 and a.startswith("al-")


def test_new_route_version_keeps_outcomes_of_remaining_stops() -> None:
    plan = build_plan("rt-v", "drv-v", n_stops=3)
    track = apply_plan(DriverTrack("drv-v"), plan, 0).track
    track.done.update({"st-1": "delivered", "st-3": "delivered"})
    v2 = msgspec.structs.replace(plan, version=2, stops=plan.stops[:2])
    track = apply_plan(track, v2, 0).track
    assert track.done == {"st-1": "delivered"} and track.plan_version == 2


_stop_ids = st.sampled_from(["a", "b", "c", "d", "e"])


@settings(max_examples=200, deadline=None)
@given(
    st.lists(_stop_ids, max_size=8),  # the plan's stops (an id may repeat)
    st.dictionaries(_stop_ids, st.sampled_from(["delivered", "failed"])),  # outcomes
    st.booleans(),  # the track follows another route
)
def test_progress_equals_its_definition(stop_ids, done, other_route) -> None:
    """One pass over the stops gives what the definition says: outcomes of the plan's stop
    ids counted once each, the next stop the first without an outcome."""
    plan = RoutePlan(
        route_id="r",
        driver_id="d",
        version=1,
        stops=[Stop(stop_id=s, lat=0.0, lon=0.0) for s in stop_ids],
    )
    track = DriverTrack("d", route_id="x" if other_route else "r", done=dict(done))
    progress = route_progress(track, plan)
    if other_route:
        assert progress == RouteProgress(0, 0, 0, None)
        return
    outcomes = [how for stop_id, how in done.items() if stop_id in set(stop_ids)]
    waiting = [s for s in stop_ids if s not in done]
    assert progress == RouteProgress(
        len(stop_ids),
        outcomes.count("delivered"),
        outcomes.count("failed"),
        waiting[0] if waiting else None,
    )
