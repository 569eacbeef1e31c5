"""Decisions over live routes: assignment, recovery re-plans, margin, debounce and cooldown."""

from __future__ import annotations

import random

import msgspec
import pytest

from decision.decide import (
    assign_orders,
    plan_sequences,
    reassign_stale,
    reinsert_failed,
    replan,
    retry_stop_id,
)
from decision.live import DriverState, RouteState, build_problem
from decision.params import SolveParams
from decision.policy import ReplanPolicy, TriggerGate
from decision.solution import violations
from decision.travel import HaversineTravel, MatrixTravel, Place
from fleet.records import LatLon, Order, RoutePlan, Stop

NOW = 1_763_715_600_000  # 09:00 UTC
HOUR = 3_600_000
TRAVEL = HaversineTravel()
PARAMS = SolveParams(time_limit_s=2.0, solution_limit=300)


def make_route(k: int, n: int, seed: int, *, driver: bool = True) -> RouteState:
    """A route of n stops around a driver near Berlin's centre, windows over the next hours."""
    rng = random.Random(seed * 100 + k)
    base_lat, base_lon = 52.50 + 0.02 * k, 13.40 + 0.02 * k
    stops = []
    for i in range(n):
        start = NOW + rng.randrange(0, 3) * HOUR
        stops.append(
            Stop(
                f"r{k}-s{i}",
                base_lat + rng.uniform(-0.02, 0.02),
                base_lon + rng.uniform(-0.03, 0.03),
                window_start_ms=start,
                window_end_ms=start + 4 * HOUR,
                service_s=120,
                demand=1,
            )
        )
    plan = RoutePlan(
        route_id=f"rt-{k}",
        driver_id=f"drv-{k}",
        version=1,
        stops=stops,
        depot=LatLon(52.50, 13.40),
        shift_start_ms=NOW - HOUR,
        shift_end_ms=NOW + 8 * HOUR,
        capacity=50,
    )
    state = DriverState(
        base_lat, base_lon, NOW, done=frozenset({stops[0].stop_id}), approaching=stops[1].stop_id
    )
    return RouteState(plan, state if driver else None)


def test_live_problem_starts_at_the_driver_and_leaves_done_stops_out() -> None:
    state = make_route(0, 6, 1)
    live = build_problem([state], NOW, TRAVEL)
    vehicle = live.problem.vehicles[0]
    assert "rt-0/r0-s0" not in {j.job_id for j in live.problem.jobs}
    assert vehicle.route[0] == vehicle.first_job == "rt-0/r0-s1"
    assert vehicle.start_time == 0.0


def test_stop_ids_need_only_be_unique_within_their_route() -> None:
    one, two = make_route(0, 5, 11), make_route(1, 5, 12)
    same = [msgspec.structs.replace(s, stop_id=f"st-{i}") for i, s in enumerate(two.plan.stops)]
    two = RouteState(msgspec.structs.replace(two.plan, stops=same), None)
    one = RouteState(
        msgspec.structs.replace(
            one.plan, stops=[msgspec.structs.replace(s, stop_id=f"st-{i}")
                             for i, s in enumerate(one.plan.stops)]
        ),
        None,
    )  # fmt: skip
    decision = replan("optimize", "rt-0", [one, two], NOW, TRAVEL, PARAMS, None, neighbours=1,
                      force=True)  # fmt: skip
    for route_id, plan in decision.plans.items():
        assert len({s.stop_id for s in plan.stops}) == len(plan.stops), route_id


def test_replan_keeps_the_approached_stop_first_and_done_stops_in_place() -> None:
    state = make_route(0, 12, 2)
    decision = replan("off_route", "rt-0", [state], NOW, TRAVEL, PARAMS, None, force=True)
    seq = plan_sequences(decision.plans)["rt-0"]
    assert seq[:2] == ["r0-s0", "r0-s1"]
    assert sorted(seq) == sorted(s.stop_id for s in state.plan.stops)
    assert decision.plans["rt-0"].version == 2


def test_a_replan_below_the_margin_is_not_issued() -> None:
    state = make_route(0, 8, 3)
    first = replan("optimize", "rt-0", [state], NOW, TRAVEL, PARAMS, None, force=True)
    settled = RouteState(first.plans["rt-0"], state.driver)
    again = replan(
        "behind_schedule", "rt-0", [settled], NOW, TRAVEL, PARAMS, ReplanPolicy(margin=1e6)
    )
    assert not again.issue and again.reason == "below_margin" and not again.plans
    assert again.rationale["required_gain"] == 1e6


def test_an_order_goes_to_a_route_with_candidates_in_the_rationale() -> None:
    states = [make_route(k, 6, 4) for k in range(3)]
    order = Order(
        "ord-1",
        52.521,
        13.421,
        NOW,
        window_start_ms=NOW,
        window_end_ms=NOW + 6 * HOUR,
        service_s=60,
        demand=1,
    )
    decision = assign_orders([order], states, NOW, TRAVEL, PARAMS)
    assert decision.issue and decision.assigned["ord-1"] in decision.plans
    route = decision.plans[decision.assigned["ord-1"]]
    assert "ord-1" in [s.stop_id for s in route.stops]
    cands = decision.rationale["candidates"]
    assert {c["route_id"] for c in cands} == {"rt-0", "rt-1", "rt-2"}
    assert sum(c["chosen"] for c in cands) == 1
    assert all("lost_because" in c for c in cands if not c["chosen"])


def test_an_order_no_route_can_serve_in_its_window_is_unassigned_with_a_reason() -> None:
    states = [make_route(k, 4, 5) for k in range(2)]
    late = Order("ord-2", 52.9, 13.9, NOW, window_start_ms=NOW, window_end_ms=NOW + 60_000)
    heavy = Order("ord-3", 52.51, 13.41, NOW, demand=500)
    decision = assign_orders([late, heavy], states, NOW, TRAVEL, PARAMS)
    assert decision.unassigned["ord-2"].reason == "window_unreachable"
    assert decision.unassigned["ord-3"].reason == "over_capacity"
    assert not decision.assigned


def test_a_failed_stop_gets_a_later_attempt_within_its_window() -> None:
    states = [make_route(k, 6, 6) for k in range(2)]
    decision = reinsert_failed("rt-0", "r0-s1", states, NOW, TRAVEL, PARAMS, retry_after_s=600)
    assert decision.issue
    route = decision.assigned["r0-s1.r1"]
    stop = next(s for s in decision.plans[route].stops if s.stop_id == "r0-s1.r1")
    assert stop.planned_arrival_ms is not None and stop.planned_arrival_ms >= NOW + 600_000
    assert stop.window_end_ms is not None and stop.planned_arrival_ms <= stop.window_end_ms


def test_retry_ids_count_attempts_and_stay_within_64_characters() -> None:
    assert retry_stop_id("st-17") == "st-17.r1"
    assert retry_stop_id("st-17.r1") == "st-17.r2"
    long_id = "x" * 64
    assert len(retry_stop_id(long_id)) == 64 and retry_stop_id(long_id).endswith(".r1")


def test_a_stale_drivers_time_critical_stops_move_to_other_routes() -> None:
    states = [make_route(k, 5, 7) for k in range(3)]
    decision = reassign_stale("rt-0", states, NOW, TRAVEL, PARAMS, critical_within_s=5 * 3600)
    moved = decision.rationale["moved_stops"]
    assert decision.issue and moved
    assert not set(moved) & {s.stop_id for s in decision.plans["rt-0"].stops}
    receivers = [r for r in decision.plans if r != "rt-0"]
    assert set(moved) <= {s.stop_id for r in receivers for s in decision.plans[r].stops}


def test_locked_stops_keep_their_order_through_a_zone_optimize() -> None:
    states = [make_route(k, 8, 8) for k in range(2)]
    locked = frozenset({"r0-s3", "r0-s6"})
    states[0] = RouteState(states[0].plan, states[0].driver, locked)
    decision = replan(
        "optimize", "rt-0", states, NOW, TRAVEL, PARAMS, None, neighbours=1, force=True
    )
    seq = plan_sequences(decision.plans)["rt-0"]
    assert [s for s in seq if s in locked] == ["r0-s3", "r0-s6"]


def test_replanned_routes_respect_capacity_and_shift() -> None:
    states = [make_route(k, 10, 9) for k in range(3)]
    live = build_problem(states, NOW, TRAVEL)
    decision = replan(
        "optimize", "rt-1", states, NOW, TRAVEL, PARAMS, None, neighbours=2, force=True
    )
    jobs = {j.job_id for j in live.problem.jobs}
    seqs = {
        r: [f"{r}/{s}" for s in seq if f"{r}/{s}" in jobs]
        for r, seq in plan_sequences(decision.plans).items()
    }
    assert violations(live.problem, seqs) == []


def test_gate_debounces_and_cools_down() -> None:
    gate = TriggerGate(ReplanPolicy(debounce_s=2, cooldown_s=60))
    gate.offer("rt-1", "off_route", 0)
    gate.offer("rt-1", "behind_schedule", 1_000)
    assert gate.due(1_500) == []
    assert gate.due(2_000) == [("rt-1", ["off_route", "behind_schedule"])]
    gate.issued("rt-1", 2_000)
    gate.offer("rt-1", "off_route", 3_000)
    assert gate.due(30_000) == [] and gate.next_due_ms() == 62_000
    assert gate.due(62_000) == [("rt-1", ["off_route"])]


def test_gate_does_not_repeat_a_replan_that_came_out_below_the_margin() -> None:
    """A below-margin result mutes that trigger kind for the route (not other kinds, not
    other routes) until the route's plan changes or the cooldown passes."""
    gate = TriggerGate(ReplanPolicy(debounce_s=0, cooldown_s=60))
    gate.offer("rt-1", "eta_window_risk alert:a1", 0)
    assert gate.due(0) == [("rt-1", ["eta_window_risk alert:a1"])]
    gate.held("rt-1", "eta_window_risk", 0)
    gate.offer("rt-1", "eta_window_risk alert:a2", 1_000)
    gate.offer("rt-2", "eta_window_risk alert:b1", 1_000)
    assert gate.due(1_000) == [("rt-2", ["eta_window_risk alert:b1"])]
    gate.offer("rt-1", "off_route alert:a3", 2_000)
    assert gate.due(2_000) == [("rt-1", ["off_route alert:a3"])]
    gate.issued("rt-1", 3_000)  # the plan changed: the kind is heard again (after the cooldown)
    gate.offer("rt-1", "eta_window_risk alert:a4", 4_000)
    assert gate.due(63_000) == [("rt-1", ["eta_window_risk alert:a4"])]
    gate.held("rt-1", "eta_window_risk", 63_000)
    gate.offer("rt-1", "eta_window_risk alert:a5", 64_000)
    assert gate.due(64_000) == []
    gate.offer("rt-1", "eta_window_risk alert:a6", 123_000)  # the mute lasts one cooldown
    assert gate.due(123_000) == [("rt-1", ["eta_window_risk alert:a6"])]


def test_matrix_provider_prices_known_places_and_falls_back_for_others() -> None:
    import numpy as np

    matrix = MatrixTravel(
        ("a", "b"),
        np.array([[0.0, 100.0], [120.0, 0.0]]),
        np.array([[0.0, 900.0], [1000.0, 0.0]]),
        fallback=TRAVEL,
    )
    places = [Place("a", 52.5, 13.4), Place("x", 52.51, 13.41), Place("b", 52.52, 13.42)]
    out = matrix.matrix(places, NOW)
    assert out.durations[0, 2] == 100.0 and out.durations[2, 0] == 120.0
    assert out.durations[0, 1] > 0
    with pytest.raises(LookupError):
        MatrixTravel(("a",), np.zeros((1, 1)), np.zeros((1, 1))).matrix(places, NOW)


def test_an_order_on_long_routes_is_placed_even_on_a_short_budget() -> None:
    """The search starts from the cheapest insertion, so a budget too short for a full
    local-search pass over 300 stops still places the order."""
    states = [make_route(k, 100, 13) for k in range(3)]
    states = [
        RouteState(msgspec.structs.replace(s.plan, capacity=500, shift_end_ms=NOW + 24 * HOUR),
                   s.driver)
        for s in states
    ]  # fmt: skip
    near = states[1].plan.stops[50]
    order = Order("ord-9", near.lat + 0.001, near.lon, NOW, window_start_ms=NOW,
                  window_end_ms=NOW + 20 * HOUR)  # fmt: skip
    decision = assign_orders([order], states, NOW, TRAVEL, SolveParams(time_limit_s=0.05))
    assert decision.assigned.get("ord-9") in {"rt-0", "rt-1", "rt-2"}


def test_a_settled_search_ends_before_its_time_limit_with_the_plan_of_a_full_search() -> None:
    """``settle_s``: a one-route re-plan stops once its best plan has stood, not after the
    whole time limit, and that plan is the one a search bounded by solutions finds."""
    states = [make_route(k, 10, 5) for k in range(3)]
    later = NOW + 600_000
    full = replan("off_route", "rt-0", states, later, TRAVEL, PARAMS, None)
    settled = replan(
        "off_route", "rt-0", states, later, TRAVEL,
        SolveParams(time_limit_s=30.0, settle_s=0.05), None,
    )  # fmt: skip
    assert settled.rationale["solver_ms"] < 15_000
    assert settled.rationale["objective_after"] == pytest.approx(full.rationale["objective_after"])
    assert plan_sequences(settled.plans) == plan_sequences(full.plans)
