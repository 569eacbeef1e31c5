"""The routing model: feasible plans or reported drops, locks, the approached stop, same seed."""

from __future__ import annotations

import random

import numpy as np
import pytest

from decision.params import ObjectiveWeights, SolveParams
from decision.problem import Job, Problem, Vehicle
from decision.solution import evaluate, violations
from decision.solver import solve
from decision.travel import euclidean_matrix

FAST = SolveParams(time_limit_s=2.0, solution_limit=200)


def grid_problem(n_jobs: int, n_vehicles: int, seed: int, **vehicle_kw: object) -> Problem:
    """Random jobs on a 100 x 100 plane, vehicles at the centre, windows of 60-200 units."""
    rng = random.Random(seed)
    pts = [(50.0, 50.0)] + [(rng.uniform(0, 100), rng.uniform(0, 100)) for _ in range(n_jobs)]
    jobs = []
    for i in range(n_jobs):
        start = rng.uniform(0, 300)
        jobs.append(
            Job(
                f"j{i}",
                i + 1,
                start,
                start + rng.uniform(60, 200),
                service=5.0,
                demand=rng.randint(1, 10),
            )
        )
    kw = {"shift_end": 600.0, "capacity": 40, **vehicle_kw}
    vehicles = tuple(Vehicle(f"v{k}", 0, 0, **kw) for k in range(n_vehicles))  # type: ignore[arg-type]
    return Problem(
        vehicles, tuple(jobs), euclidean_matrix(np.array(pts)), hard_windows=True, scale=100
    )


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_plan_is_feasible_and_every_job_is_served_or_dropped_with_a_reason(seed: int) -> None:
    problem = grid_problem(30, 3, seed)
    solution = solve(problem, FAST)
    assert violations(problem, solution.sequences()) == []
    served = {j for seq in solution.sequences().values() for j in seq}
    dropped = {d.job_id: d for d in solution.dropped}
    assert served | set(dropped) == {j.job_id for j in problem.jobs}
    assert not served & set(dropped)
    assert all(
        d.reason in {"no_room", "window_unreachable", "beyond_shift", "over_capacity"}
        for d in dropped.values()
    )


def test_capacity_shortage_drops_jobs_and_says_why() -> None:
    problem = grid_problem(20, 1, 5, capacity=15)
    solution = solve(problem, FAST)
    load = sum(problem.job(j).demand for seq in solution.sequences().values() for j in seq)
    assert load <= 15
    assert solution.dropped and {d.reason for d in solution.dropped} <= {
        "no_room",
        "window_unreachable",
    }
    assert solution.terms.unserved == len(solution.dropped)


def test_job_heavier_than_any_vehicle_is_dropped_as_over_capacity() -> None:
    base = grid_problem(5, 2, 9)
    heavy = Job("heavy", 1, demand=99)
    problem = Problem(base.vehicles, (*base.jobs, heavy), base.travel, hard_windows=True, scale=100)
    reasons = {d.job_id: d.reason for d in solve(problem, FAST).dropped}
    assert reasons["heavy"] == "over_capacity"


def test_closed_window_is_dropped_as_unreachable_not_served_late() -> None:
    base = grid_problem(5, 2, 9)
    gone = Job("gone", 3, window_start=0.0, window_end=1.0)  # 1 unit: nobody gets there
    problem = Problem(base.vehicles, (*base.jobs, gone), base.travel, hard_windows=True, scale=100)
    reasons = {d.job_id: d.reason for d in solve(problem, FAST).dropped}
    assert reasons["gone"] == "window_unreachable"


def _with_routes(problem: Problem, locked: set[str], first: str | None) -> Problem:
    ids = [j.job_id for j in problem.jobs]
    half = len(ids) // 2
    routes = {"v0": tuple(ids[:half]), "v1": tuple(ids[half:])}
    owner = {j: v for v, seq in routes.items() for j in seq}
    jobs = tuple(
        Job(
            j.job_id,
            j.location,
            None,
            None,
            j.service,
            j.demand,
            locked=j.job_id in locked,
            seen=True,
            current_vehicle=owner[j.job_id],
            committed=True,
        )
        for j in problem.jobs
    )
    vehicles = tuple(
        Vehicle(v, 0, 0, capacity=1000, route=routes[v], first_job=first if v == "v0" else None)
        for v in ("v0", "v1")
    )
    return Problem(vehicles, jobs, problem.travel, scale=100)


def test_locked_stops_keep_their_route_and_place_while_the_rest_moves() -> None:
    base = grid_problem(16, 2, 4)
    ids = [j.job_id for j in base.jobs]
    locked = {ids[1], ids[5], ids[10], ids[14]}  # two on each route, far apart in the sequence
    problem = _with_routes(base, locked, None)
    params = SolveParams(
        time_limit_s=2.0, solution_limit=300, weights=ObjectiveWeights(disruption=0.0)
    )
    after = solve(problem, params).sequences()
    for v in problem.vehicles:
        place = {j: p for p, j in enumerate(v.route) if j in locked}
        assert {j: p for p, j in enumerate(after[v.vehicle_id]) if j in locked} == place
    assert after != {v.vehicle_id: v.route for v in problem.vehicles}  # others did move
    assert violations(problem, after) == []


def test_the_approached_stop_stays_first() -> None:
    base = grid_problem(12, 2, 6)
    far = max(base.jobs, key=lambda j: float(base.travel.durations[0, j.location])).job_id
    ids = [j.job_id for j in base.jobs]
    problem = _with_routes(base, set(), None)
    v0 = problem.vehicle("v0")
    route = (far, *[j for j in v0.route if j != far]) if far in v0.route else (far, *v0.route)
    if far not in v0.route:  # move the far job onto v0 for the test
        v1 = problem.vehicle("v1")
        others = tuple(j for j in v1.route if j != far)
        jobs = tuple(
            Job(
                j.job_id,
                j.location,
                current_vehicle="v0" if j.job_id == far else j.current_vehicle,
                seen=True,
                committed=True,
            )
            for j in problem.jobs
        )
        problem = Problem(
            (Vehicle("v0", 0, 0, route=route, first_job=far), Vehicle("v1", 0, 0, route=others)),
            jobs,
            problem.travel,
            scale=100,
        )
    else:
        problem = Problem(
            (Vehicle("v0", 0, 0, route=route, first_job=far), problem.vehicle("v1")),
            problem.jobs,
            problem.travel,
            scale=100,
        )
    assert ids  # the far stop is the worst possible first stop, yet it stays first
    after = solve(problem, FAST).sequences()
    assert after["v0"][0] == far


def test_same_seed_gives_the_same_plan() -> None:
    problem = grid_problem(40, 4, 8)
    params = SolveParams(time_limit_s=30.0, seed=3, solution_limit=150)
    first = solve(problem, params).sequences()
    assert solve(problem, params).sequences() == first


def test_objective_terms_match_an_independent_evaluation() -> None:
    problem = grid_problem(25, 3, 2)
    solution = solve(problem, FAST)
    terms, _ = evaluate(problem, solution.sequences())
    assert terms == solution.terms
    assert solution.cost == pytest.approx(terms.cost(FAST.weights))
