"""Decisions over live routes: assignment of orders, recovery re-plans, dispatcher optimize.

Each function is pure (plans, live state and a clock in; a Decision out): it picks the
routes involved, solves, compares the objective before and after, and says whether the
result is worth issuing, with the rationale in numbers.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from msgspec.structs import replace as with_fields

from decision.live import (
    DriverState,
    LiveProblem,
    RouteState,
    build_problem,
    moved_stops,
    plans_from_solution,
)
from decision.params import ObjectiveWeights, SolveParams
from decision.policy import ReplanPolicy
from decision.problem import Problem, Vehicle
from decision.solution import Dropped, ObjectiveTerms, evaluate, simulate_route
from decision.solver import drop_reason, solve
from decision.travel import TravelTimes
from fleet.geo import haversine_m
from fleet.records import Order, RoutePlan, Stop


@dataclass(frozen=True)
class Decision:
    """What to publish: changed plans (new versions) and why; ``issue`` False means nothing.

    ``reason``: ``issued``, ``below_margin``, ``unchanged``, ``infeasible`` or
    ``not_placed``. ``assigned`` maps new stop ids to their route; ``unassigned`` says why
    a new stop fits nowhere.
    """

    cause: str
    plans: Mapping[str, RoutePlan]
    rationale: Mapping[str, Any]
    issue: bool
    reason: str
    assigned: Mapping[str, str] = field(default_factory=dict)
    unassigned: Mapping[str, Dropped] = field(default_factory=dict)


def order_stop(order: Order) -> Stop:
    """The stop an order becomes (its stop_id is the order_id)."""
    return Stop(
        stop_id=order.order_id,
        lat=order.lat,
        lon=order.lon,
        window_start_ms=order.window_start_ms,
        window_end_ms=order.window_end_ms,
        service_s=order.service_s,
        demand=order.demand,
        priority=order.priority,
    )


def nearest_routes(
    states: Sequence[RouteState], lat: float, lon: float, k: int, exclude: Sequence[str] = ()
) -> list[RouteState]:
    """The k routes whose driver (or depot) is nearest to a point."""
    scored = []
    for state in states:
        pos = state.position()
        if pos is None or state.route_id in exclude:
            continue
        scored.append((haversine_m(lat, lon, pos.lat, pos.lon), state.route_id, state))
    scored.sort(key=lambda t: (t[0], t[1]))
    return [s for _, _, s in scored[:k]]


def _sequences(live: LiveProblem) -> dict[str, tuple[str, ...]]:
    return live.problem.current_routes()


def _solve_and_judge(
    live: LiveProblem,
    params: SolveParams,
    cause: str,
    policy: ReplanPolicy | None,
    *,
    force_routes: Sequence[str] = (),
    candidates: list[dict[str, Any]] | None = None,
    began: float | None = None,
    cache: InsertionCache | None = None,
) -> Decision:
    """Solve, compare with the current plans and decide; ``policy`` None: no margin.

    ``began`` (perf_counter) makes the time limit the whole decision's: what was spent
    before the search, and ``FINISH_S`` for what follows it, come out of the search's time.
    """
    problem = live.problem
    weights = params.weights
    before_seq = _sequences(live)
    before_terms, _ = evaluate(problem, before_seq)
    new_ids_exist = any(not j.committed for j in problem.jobs)
    initial = seeded_routes(problem, params.weights, cache) if new_ids_exist else None
    if began is not None:
        left = params.time_limit_s - (time.perf_counter() - began) - FINISH_S
        params = replace(params, time_limit_s=max(MIN_SEARCH_S, left))
    solution = solve(problem, params, initial=initial)
    new_ids = [j.job_id for j in problem.jobs if not j.committed]
    if solution.status == "infeasible":
        return Decision(
            cause,
            {},
            _rationale(before_terms, before_terms, params, [], solution.solver_ms, (), candidates),
            False,
            "infeasible",
        )
    after_seq = solution.sequences()
    moved = sorted({live.stop_id(j) for j in moved_stops(before_seq, after_seq)})
    dropped = [replace(d, job_id=live.stop_id(d.job_id)) for d in solution.dropped]
    rationale = _rationale(
        before_terms, solution.terms, params, moved, solution.solver_ms, dropped, candidates
    )
    placed = {j: r for r, seq in after_seq.items() for j in seq if j in new_ids}
    unassigned = {d.job_id: d for d in solution.dropped if d.job_id in new_ids}
    plans = plans_from_solution(live, solution)
    for route_id in force_routes:
        if route_id not in plans and route_id in live.states:
            old = live.states[route_id].plan
            plans[route_id] = with_fields(old, version=old.version + 1, path=None)
    before_cost = before_terms.cost(weights)
    after_cost = solution.terms.cost(weights)
    if policy is not None:
        rationale["required_gain"] = round(policy.required_gain(before_cost), 3)
        if not policy.worth_issuing(before_cost, after_cost) and not force_routes:
            return Decision(cause, {}, rationale, False, "below_margin", placed, unassigned)
    if not plans:
        return Decision(
            cause,
            {},
            rationale,
            False,
            "unchanged" if not new_ids else "not_placed",
            placed,
            unassigned,
        )
    return Decision(cause, plans, rationale, True, "issued", placed, unassigned)


def _rationale(
    before: ObjectiveTerms,
    after: ObjectiveTerms,
    params: SolveParams,
    moved: list[str],
    solver_ms: int,
    dropped: Sequence[Dropped],
    candidates: list[dict[str, Any]] | None,
) -> dict[str, Any]:
    weights = params.weights
    out: dict[str, Any] = {
        "objective_before": round(before.cost(weights), 3),
        "objective_after": round(after.cost(weights), 3),
        "gain": round(before.cost(weights) - after.cost(weights), 3),
        "terms_before": _terms(before),
        "terms_after": _terms(after),
        "weights": weights.as_dict(),
        "moved_stops": moved,
        "solver_ms": solver_ms,
    }
    if dropped:
        out["dropped"] = [
            {"stop_id": d.job_id, "reason": d.reason, "detail": d.detail} for d in dropped
        ]
    if candidates is not None:
        out["candidates"] = candidates
    return out


def _terms(t: ObjectiveTerms) -> dict[str, float]:
    return {
        "travel_s": round(t.travel_s, 1),
        "late_s": round(t.late_s, 1),
        "unserved": t.unserved,
        "disruption": t.disruption,
    }


InsertionCache = dict[tuple[str, tuple[str, ...], str], tuple[tuple[float, int] | None, set[str]]]
FINISH_S = 0.1  # evaluating and writing the plans after the search
MIN_SEARCH_S = 0.05


def best_insertion(
    problem: Problem,
    vehicle: Vehicle,
    seq: Sequence[str],
    job_id: str,
    weights: ObjectiveWeights,
    cache: InsertionCache | None = None,
) -> tuple[tuple[float, int] | None, set[str]]:
    """The cheapest feasible place of a new job in a sequence (added cost, position), and
    what fails elsewhere: ``window``, ``shift``, ``capacity``, ``stop_id_taken``."""
    key = (vehicle.vehicle_id, tuple(seq), job_id)
    if cache is not None and key in cache:
        return cache[key]
    result = _best_insertion(problem, vehicle, seq, job_id, weights)
    if cache is not None:
        cache[key] = result
    return result


def _best_insertion(
    problem: Problem, vehicle: Vehicle, seq: Sequence[str], job_id: str, weights: ObjectiveWeights
) -> tuple[tuple[float, int] | None, set[str]]:
    job = problem.job(job_id)
    base = simulate_route(problem, vehicle, seq)
    base_cost = weights.travel * base.travel + weights.late * sum(v.late for v in base.visits)
    reasons: set[str] = set()
    if vehicle.capacity is not None and base.load + job.demand > vehicle.capacity:
        reasons.add("capacity")
    if vehicle.vehicle_id in job.barred:
        reasons.add("stop_id_taken")
    if reasons:
        return None, reasons
    best: tuple[float, int] | None = None
    # Not before the approached stop, nor before a locked stop (it keeps its place).
    pinned = [p + 1 for p, j in enumerate(seq) if problem.job(j).locked]
    first = max([1 if vehicle.first_job else 0, *pinned])
    for pos in range(first, len(seq) + 1):
        route = simulate_route(problem, vehicle, [*seq[:pos], job_id, *seq[pos:]])
        visit = route.visits[pos]
        if visit.late > 0 and (job.hard_window or problem.hard_windows):
            reasons.add("window")
            continue
        if vehicle.shift_end is not None and route.end_time > vehicle.shift_end:
            reasons.add("shift")
            continue
        cost = weights.travel * route.travel + weights.late * sum(v.late for v in route.visits)
        if best is None or cost - base_cost < best[0]:
            best = (cost - base_cost, pos)
    return best, reasons


def insertion_candidates(
    live: LiveProblem, stop_id: str, params: SolveParams, cache: InsertionCache | None = None
) -> list[dict[str, Any]]:
    """Each route's cheapest insertion of a new stop: cost, and whether window, load, shift fit."""
    out = []
    for vehicle in live.problem.vehicles:
        best, reasons = best_insertion(
            live.problem, vehicle, vehicle.route, stop_id, params.weights, cache
        )
        out.append(
            {
                "route_id": vehicle.vehicle_id,
                "insertion_cost": round(best[0], 1) if best is not None else None,
                "feasible": best is not None,
                "why_not": [] if best is not None else sorted(reasons),
            }
        )
    out.sort(key=lambda c: (not c["feasible"], c["insertion_cost"] or 0.0, c["route_id"]))
    return out


def seeded_routes(
    problem: Problem, weights: ObjectiveWeights, cache: InsertionCache | None = None
) -> dict[str, list[str]]:
    """The current sequences with every new job at its cheapest feasible place (greedy, the
    most urgent first): the search starts from there, so a short budget still places them."""
    sequences = {v.vehicle_id: list(v.route) for v in problem.vehicles}
    new = [j for j in problem.jobs if not j.committed]
    new.sort(key=lambda j: (j.window_end if j.window_end is not None else float("inf"), j.job_id))
    for job in new:
        choice: tuple[float, str, int] | None = None
        for vehicle in problem.vehicles:
            best, _ = best_insertion(
                problem, vehicle, sequences[vehicle.vehicle_id], job.job_id, weights, cache
            )
            if best is not None and (choice is None or best[0] < choice[0]):
                choice = (best[0], vehicle.vehicle_id, best[1])
        if choice is not None:
            sequences[choice[1]].insert(choice[2], job.job_id)
    return sequences


def assign_orders(
    orders: Sequence[Order],
    states: Sequence[RouteState],
    now_ms: int,
    travel: TravelTimes,
    params: SolveParams,
    candidates_per_order: int = 5,
) -> Decision:
    """Assign a batch of orders in one solve over the routes nearest to them.

    Candidates are scored by insertion cost with window, capacity and shift checks; the
    solve then places every order (re-sequencing the receiving routes) or reports why not.
    """
    began = time.perf_counter()
    stops = [order_stop(o) for o in orders]
    chosen: dict[str, RouteState] = {}
    open_states = [s for s in states if s.route_id not in {x for st in states for x in st.excluded}]
    for stop in stops:
        for state in nearest_routes(open_states, stop.lat, stop.lon, candidates_per_order):
            chosen[state.route_id] = state
    if not chosen:
        dropped = {
            s.stop_id: Dropped(s.stop_id, "no_routes", "no active route to assign to")
            for s in stops
        }
        return Decision("assign", {}, {"candidates": []}, False, "not_placed", {}, dropped)
    live = build_problem(list(chosen.values()), now_ms, travel, new_stops=stops)
    cache: InsertionCache = {}
    scored = {s.stop_id: insertion_candidates(live, s.stop_id, params, cache) for s in stops}
    decision = _solve_and_judge(
        live, params, "assign", None, candidates=[], began=began, cache=cache
    )
    winners = decision.assigned
    cands: list[dict[str, Any]] = []
    for stop in stops:
        for cand in scored[stop.stop_id]:
            row = dict(cand, stop_id=stop.stop_id)
            won = winners.get(stop.stop_id) == cand["route_id"]
            row["chosen"] = won
            if won:
                row["reoptimised_gain"] = decision.rationale.get("gain")
            elif not cand["feasible"]:
                row["lost_because"] = "infeasible: " + ", ".join(cand["why_not"])
            elif stop.stop_id in winners:
                row["lost_because"] = "higher cost after re-optimising"
            else:
                row["lost_because"] = "no room with the other stops"
            cands.append(row)
    rationale = dict(decision.rationale, candidates=cands)
    unassigned = dict(decision.unassigned)
    for stop in stops:
        if stop.stop_id not in winners and stop.stop_id not in unassigned:
            unassigned[stop.stop_id] = drop_reason(live.problem, stop.stop_id)
    plans = receivers_only(decision, chosen)
    return replace(
        decision, plans=plans, rationale=rationale, unassigned=unassigned, issue=bool(plans)
    )


def receivers_only(decision: Decision, states: Mapping[str, RouteState]) -> dict[str, RoutePlan]:
    """The plans of routes that receive a new stop or trade stops: re-sequencing a bystander
    route is not what an assignment or a recovery is for (no churn)."""
    receiving = set(decision.assigned.values())
    return {
        route_id: plan
        for route_id, plan in decision.plans.items()
        if route_id in receiving
        or {s.stop_id for s in plan.stops} != {s.stop_id for s in states[route_id].plan.stops}
    }


def replan(
    cause: str,
    route_id: str,
    states: Sequence[RouteState],
    now_ms: int,
    travel: TravelTimes,
    params: SolveParams,
    policy: ReplanPolicy | None,
    *,
    neighbours: int = 0,
    force: bool = False,
) -> Decision:
    """Re-plan a route from the driver's position, optionally with its nearest routes.

    ``policy`` gates the result on the gain margin (automatic triggers); a dispatcher's
    ``optimize`` passes ``force`` to get an answer even when nothing improves.
    """
    began = time.perf_counter()
    by_id = {s.route_id: s for s in states}
    own = by_id[route_id]
    involved = [own]
    pos = own.position()
    if neighbours and pos is not None:
        involved += nearest_routes(states, pos.lat, pos.lon, neighbours, exclude=[route_id])
    live = build_problem(involved, now_ms, travel)
    return _solve_and_judge(
        live, params, cause, policy, force_routes=[route_id] if force else (), began=began
    )


def retry_stop_id(stop_id: str) -> str:
    """The id of the next attempt at a stop: ``st-17`` -> ``st-17.r1`` -> ``st-17.r2``.

    A new id keeps the failed attempt on record (the tracker keeps its outcome) while the
    new attempt is pending; ids stay within the contract's 64 characters.
    """
    base, _, n = stop_id.rpartition(".r")
    if base and n.isdigit():
        stem, attempt = base, int(n) + 1
    else:
        stem, attempt = stop_id, 1
    suffix = f".r{attempt}"
    return stem[: 64 - len(suffix)] + suffix


def reinsert_failed(
    route_id: str,
    stop_id: str,
    states: Sequence[RouteState],
    now_ms: int,
    travel: TravelTimes,
    params: SolveParams,
    *,
    retry_after_s: float = 900.0,
    neighbours: int = 2,
) -> Decision:
    """A failed stop gets a new attempt, no sooner than ``retry_after_s``, on its route or a
    nearby one, where its window still allows; ``assigned`` maps the attempt's id."""
    began = time.perf_counter()
    by_id = {s.route_id: s for s in states}
    own = by_id[route_id]
    failed = next((s for s in own.plan.stops if s.stop_id == stop_id), None)
    if failed is None:
        return Decision("failed_delivery", {}, {}, False, "unknown_stop")
    retry_ms = now_ms + int(retry_after_s * 1000)
    retry = with_fields(
        failed,
        stop_id=retry_stop_id(stop_id),
        window_start_ms=max(failed.window_start_ms or 0, retry_ms),
        planned_arrival_ms=None,
    )
    done = (own.driver.done if own.driver else frozenset()) | {stop_id}
    driver = own.driver or DriverState(failed.lat, failed.lon, now_ms)
    involved = [replace(own, driver=replace(driver, done=done))]
    involved += nearest_routes(states, failed.lat, failed.lon, neighbours, exclude=[route_id])
    live = build_problem(involved, now_ms, travel, new_stops=[retry])
    cache: InsertionCache = {}
    cands = insertion_candidates(live, retry.stop_id, params, cache)
    decision = _solve_and_judge(
        live, params, "failed_delivery", None, candidates=cands, began=began, cache=cache
    )
    if retry.stop_id not in decision.assigned:
        return replace(decision, plans={}, issue=False, reason="not_placed")
    return replace(decision, plans=receivers_only(decision, {s.route_id: s for s in involved}))


def reassign_stale(
    route_id: str,
    states: Sequence[RouteState],
    now_ms: int,
    travel: TravelTimes,
    params: SolveParams,
    *,
    critical_within_s: float = 3600.0,
    neighbours: int = 3,
) -> Decision:
    """A silent driver's time-critical stops (window ending soon) move to nearby routes."""
    began = time.perf_counter()
    by_id = {s.route_id: s for s in states}
    own = by_id[route_id]
    horizon = now_ms + int(critical_within_s * 1000)
    critical = [
        s for s in own.remaining() if s.window_end_ms is not None and s.window_end_ms <= horizon
    ]
    if not critical:
        return Decision("reassign_stale", {}, {"moved_stops": []}, False, "unchanged")
    pos = own.position()
    anchor = critical[0] if pos is None else pos
    others = nearest_routes(states, anchor.lat, anchor.lon, neighbours, exclude=[route_id])
    if not others:
        return Decision("reassign_stale", {}, {"moved_stops": []}, False, "not_placed")
    live = build_problem(others, now_ms, travel, new_stops=critical)
    cands = [
        c
        for s in critical
        for c in (dict(x, stop_id=s.stop_id) for x in insertion_candidates(live, s.stop_id, params))
    ]
    decision = _solve_and_judge(live, params, "reassign_stale", None, candidates=cands, began=began)
    moved = [s.stop_id for s in critical if s.stop_id in decision.assigned]
    if not moved:
        return replace(decision, plans={}, issue=False, reason="not_placed")
    plans = receivers_only(decision, {s.route_id: s for s in others})
    plans[route_id] = with_fields(
        own.plan,
        version=own.plan.version + 1,
        stops=[s for s in own.plan.stops if s.stop_id not in moved],
    )
    rationale = dict(decision.rationale, moved_stops=sorted(moved))
    return replace(decision, plans=plans, rationale=rationale)


def plan_sequences(plans: Mapping[str, RoutePlan]) -> dict[str, list[str]]:
    """Stop ids per route (for tests and logs)."""
    return {r: [s.stop_id for s in p.stops] for r, p in plans.items()}
