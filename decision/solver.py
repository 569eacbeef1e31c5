"""The OR-Tools routing model: windows, capacity, service, shift ends, drops, locks, disruption."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from ortools.constraint_solver import pywrapcp, routing_enums_pb2
from ortools.util import optional_boolean_pb2

from decision.params import SolveParams
from decision.problem import Problem, Vehicle
from decision.solution import Dropped, Solution, evaluate, simulate_route

IntMatrix = npt.NDArray[np.int64]


@dataclass(frozen=True)
class _Nodes:
    """Solver node layout: jobs (in seed order), then one start and one end node per vehicle."""

    job_ids: tuple[str, ...]
    locations: tuple[int | None, ...]  # None: a virtual end (the route stops at its last job)
    starts: tuple[int, ...]
    ends: tuple[int, ...]


def _layout(problem: Problem, seed: int) -> _Nodes:
    job_ids = [j.job_id for j in problem.jobs]
    random.Random(seed).shuffle(job_ids)
    locations: list[int | None] = [problem.job(j).location for j in job_ids]
    starts, ends = [], []
    for v in problem.vehicles:
        starts.append(len(locations))
        locations.append(v.start_location)
    for v in problem.vehicles:
        ends.append(len(locations))
        locations.append(v.end_location)
    return _Nodes(tuple(job_ids), tuple(locations), tuple(starts), tuple(ends))


def _leg_matrix(problem: Problem, nodes: _Nodes, values: npt.NDArray[np.float64]) -> IntMatrix:
    """Node-by-node matrix of a location matrix in solver steps, rounded up; 0 to virtual ends."""
    locs = np.array([-1 if loc is None else loc for loc in nodes.locations], dtype=np.int64)
    safe = np.where(locs < 0, 0, locs)
    out = np.ceil(values[np.ix_(safe, safe)] * problem.scale - 1e-9)
    out[:, locs < 0] = 0
    out[locs < 0, :] = 0
    return np.maximum(out, 0).astype(np.int64)


def _steps_up(problem: Problem, t: float) -> int:
    return math.ceil(t * problem.scale - 1e-9)


def _steps_down(problem: Problem, t: float) -> int:
    return math.floor(t * problem.scale + 1e-9)


def _shift_limit(problem: Problem, vehicle: Vehicle, current: Sequence[str]) -> int:
    """The latest end of a route in solver steps: its shift end, or, when the current plan
    already ends later (a live driver behind schedule), that end, so the current plan stays
    a valid start. Live problems allow the rounding of one step per leg; Solomon's
    (``hard_windows``) limit is exact."""
    assert vehicle.shift_end is not None
    limit = _steps_down(problem, vehicle.shift_end)
    if problem.hard_windows:
        return limit
    route = [j for j in current if problem.has_job(j)]
    end = simulate_route(problem, vehicle, route).end_time if route else vehicle.start_time
    return max(limit, _steps_up(problem, end)) + len(route) + 2


def solve(
    problem: Problem, params: SolveParams, initial: Mapping[str, Sequence[str]] | None = None
) -> Solution:
    """Solve a problem within the time limit; the plan always honours locks and the first stop.

    The search starts from ``initial`` (sequences by vehicle) when given and feasible, else
    from the vehicles' current routes when feasible, else from the first-solution strategy.
    """
    began = time.perf_counter()
    weights = params.weights
    nodes = _layout(problem, params.seed)
    n_jobs = len(nodes.job_ids)
    manager = pywrapcp.RoutingIndexManager(
        len(nodes.locations), len(problem.vehicles), list(nodes.starts), list(nodes.ends)
    )
    routing = pywrapcp.RoutingModel(manager)
    solver = routing.solver()
    vindex = {v.vehicle_id: i for i, v in enumerate(problem.vehicles)}
    jnode = {jid: i for i, jid in enumerate(nodes.job_ids)}

    legs = _leg_matrix(problem, nodes, problem.travel.durations)
    service = np.zeros(len(nodes.locations), dtype=np.int64)
    for jid, node in jnode.items():
        service[node] = _steps_up(problem, problem.job(jid).service)
    transit = legs + service[:, None]
    time_cb = routing.RegisterTransitMatrix(transit.tolist())

    starts = [_steps_down(problem, v.start_time) for v in problem.vehicles]
    finite_times = [v.shift_end or 0.0 for v in problem.vehicles] + [
        j.window_end or 0.0 for j in problem.jobs
    ]
    horizon = int(
        max(_steps_up(problem, max([*finite_times, 0.0])), max([*starts, 0]))
        + int(service.sum())
        + int(legs.max(initial=0)) * (n_jobs + 1)
        + 1
    )
    routing.AddDimension(time_cb, horizon, horizon, False, "time")
    time_dim = routing.GetDimensionOrDie("time")
    scaled_late = max(1, round(weights.late)) if weights.late > 0 else 0

    unreachable: set[str] = set()
    for jid, node in jnode.items():
        job = problem.job(jid)
        cumul = time_dim.CumulVar(manager.NodeToIndex(node))
        if job.window_start is not None:
            cumul.SetMin(max(0, _steps_up(problem, job.window_start)))
        if job.window_end is not None:
            end = _steps_down(problem, job.window_end)
            hard = problem.hard_windows or job.hard_window
            if hard and end >= max(0, _steps_up(problem, job.window_start or 0)):
                cumul.SetMax(end)
            elif hard:
                unreachable.add(jid)
            elif scaled_late:
                time_dim.SetCumulVarSoftUpperBound(
                    manager.NodeToIndex(node), max(0, end), scaled_late
                )
    for i, v in enumerate(problem.vehicles):
        latest = starts[i] if v.latest_start is None else _steps_down(problem, v.latest_start)
        time_dim.CumulVar(routing.Start(i)).SetRange(max(0, starts[i]), max(0, starts[i], latest))
        if v.shift_end is not None:
            end = _shift_limit(problem, v, (initial or {}).get(v.vehicle_id, v.route))
            time_dim.CumulVar(routing.End(i)).SetMax(max(0, end))
            if end > _steps_down(problem, v.shift_end) and scaled_late:
                # The current plan already runs past the shift: no worse than now, and every
                # minute of overtime costs like lateness.
                shift_end = max(0, _steps_down(problem, v.shift_end))
                time_dim.SetCumulVarSoftUpperBound(routing.End(i), shift_end, scaled_late)
        routing.AddVariableMinimizedByFinalizer(time_dim.CumulVar(routing.End(i)))

    if any(v.capacity is not None for v in problem.vehicles):
        demand = [0] * len(nodes.locations)
        for jid, node in jnode.items():
            demand[node] = problem.job(jid).demand
        big = sum(demand) + 1
        caps = [big if v.capacity is None else max(0, v.capacity) for v in problem.vehicles]
        demand_cb = routing.RegisterUnaryTransitVector(demand)
        routing.AddDimensionWithVehicleCapacity(demand_cb, 0, caps, True, "load")

    # Arc costs: travel, plus the disruption of a seen job leaving the vehicle it was on.
    cost = np.round(legs * weights.travel).astype(np.int64)
    seen_nodes = [
        (jnode[j.job_id], vindex[j.current_vehicle])
        for j in problem.jobs
        if j.seen and j.current_vehicle in vindex and weights.disruption > 0
    ]
    if seen_nodes:
        penalty = round(weights.disruption * problem.scale)
        for i in range(len(problem.vehicles)):
            mat = cost.copy()
            for node, owner in seen_nodes:
                if owner != i:
                    mat[node, :] += penalty
            routing.SetArcCostEvaluatorOfVehicle(routing.RegisterTransitMatrix(mat.tolist()), i)
    else:
        routing.SetArcCostEvaluatorOfAllVehicles(routing.RegisterTransitMatrix(cost.tolist()))
    if weights.vehicle > 0:
        routing.SetFixedCostOfAllVehicles(round(weights.vehicle * problem.scale))

    # Drops, locks and the approached stop.
    pinned: dict[str, int] = {}
    for i, v in enumerate(problem.vehicles):
        if v.first_job is not None:
            pinned[v.first_job] = i
        for jid in v.route:
            if problem.job(jid).locked:
                pinned[jid] = i
    for jid, node in jnode.items():
        job = problem.job(jid)
        index = manager.NodeToIndex(node)
        if jid in unreachable:  # its window closed before now: never served, never blocking
            routing.AddDisjunction([index], 0)
            solver.Add(routing.ActiveVar(index) == 0)
            continue
        if jid in pinned:
            routing.VehicleVar(index).SetValue(pinned[jid])  # mandatory, on this vehicle
            continue
        barred = [vindex[v] for v in job.barred if v in vindex]
        if barred:
            routing.VehicleVar(index).RemoveValues(barred)
        if not job.required:
            weight = weights.unserved * (1 + max(0, job.priority)) * (10 if job.committed else 1)
            drop = round(weight * problem.scale)
            routing.AddDisjunction([index], max(1, drop))
    rank = None  # position counter, only when some route has locked stops
    for i, v in enumerate(problem.vehicles):
        if v.first_job is not None and v.first_job not in unreachable:
            solver.Add(routing.NextVar(routing.Start(i)) == manager.NodeToIndex(jnode[v.first_job]))
        # A locked stop keeps its place: the same position in the route's remaining sequence.
        route = [j for j in v.route if j not in unreachable]
        places = [(p, j) for p, j in enumerate(route, start=1) if problem.job(j).locked]
        if not places:
            continue
        if rank is None:
            count_cb = routing.RegisterUnaryTransitVector([1] * len(nodes.locations))
            routing.AddDimension(count_cb, 0, len(nodes.locations) + 1, True, "rank")
            rank = routing.GetDimensionOrDie("rank")
        for position, jid in places:
            rank.CumulVar(manager.NodeToIndex(jnode[jid])).SetValue(position)

    search = pywrapcp.DefaultRoutingSearchParameters()
    search.first_solution_strategy = getattr(
        routing_enums_pb2.FirstSolutionStrategy, params.first_solution_strategy
    )
    search.local_search_metaheuristic = getattr(
        routing_enums_pb2.LocalSearchMetaheuristic, params.local_search_metaheuristic
    )
    if params.neighbour_operators:
        ops = search.local_search_operators
        ops.use_relocate_neighbors = optional_boolean_pb2.BOOL_TRUE
        ops.use_cross_exchange = optional_boolean_pb2.BOOL_TRUE
    spent = time.perf_counter() - began
    budget = max(0.01, params.time_limit_s - spent)
    search.time_limit.FromMilliseconds(max(10, int(budget * 1000)))
    if params.solution_limit is not None:
        search.solution_limit = params.solution_limit

    if params.settle_s is not None:
        _stop_when_settled(routing, params.settle_s)
    assignment = None
    warm_starts: list[Mapping[str, Sequence[str]]] = [initial] if initial is not None else []
    warm_starts.append({v.vehicle_id: v.route for v in problem.vehicles})
    for start in warm_starts:
        warm = [
            [manager.NodeToIndex(jnode[j]) for j in start.get(v.vehicle_id, ()) if j in jnode
             and j not in unreachable]
            for v in problem.vehicles
        ]  # fmt: skip
        first_assignment = routing.ReadAssignmentFromRoutes(warm, True) if any(warm) else None
        if first_assignment is not None:
            # A search stopped by the clock before its first step returns nothing: the
            # starting plan itself is then the answer.
            found = routing.SolveFromAssignmentWithParameters(first_assignment, search)
            assignment = found if found is not None else first_assignment
            break
    if assignment is None:
        assignment = routing.SolveWithParameters(search)
    solver_ms = int((time.perf_counter() - began) * 1000)

    if assignment is None:
        current = problem.current_routes()
        terms, routes = evaluate(problem, current)
        return Solution(routes, (), terms, terms.cost(weights), solver_ms, "infeasible")

    sequences: dict[str, tuple[str, ...]] = {}
    for i, v in enumerate(problem.vehicles):
        index = routing.Start(i)
        seq = []
        index = assignment.Value(routing.NextVar(index))
        while not routing.IsEnd(index):
            seq.append(nodes.job_ids[manager.IndexToNode(index)])
            index = assignment.Value(routing.NextVar(index))
        sequences[v.vehicle_id] = tuple(seq)
    terms, routes = evaluate(problem, sequences)
    served = {j for seq in sequences.values() for j in seq}
    dropped = tuple(drop_reason(problem, j.job_id) for j in problem.jobs if j.job_id not in served)
    return Solution(routes, dropped, terms, terms.cost(weights), solver_ms, "solved")


def _stop_when_settled(routing: Any, settle_s: float) -> None:
    """End the search once its best plan has stood for ``max(settle_s, time to find it)``.

    Small live problems (one route's remaining stops) reach their best plan in milliseconds;
    guided local search would then spend the rest of the time limit confirming it. Checked
    at each solution the search accepts (guided local search accepts one every few
    milliseconds at most); the time limit still bounds the whole search.
    """
    started = time.perf_counter()
    best = [math.inf, 0.0]  # cost, seconds from the start when it was found

    def on_solution() -> None:
        cost = routing.CostVar().Value()
        elapsed = time.perf_counter() - started
        if cost < best[0]:
            best[0], best[1] = cost, elapsed
        elif elapsed - best[1] > max(settle_s, best[1]):
            routing.solver().FinishCurrentSearch()

    routing.AddAtSolutionCallback(on_solution)


def drop_reason(problem: Problem, job_id: str) -> Dropped:
    """Why a job is not served: what rules it breaks even alone on the best vehicle."""
    job = problem.job(job_id)
    dur = problem.travel.durations
    caps = [v.capacity for v in problem.vehicles]
    if all(c is not None and job.demand > c for c in caps):
        return Dropped(job_id, "over_capacity", f"demand {job.demand} exceeds every capacity")
    reachable_window = False
    for v in problem.vehicles:
        arrival = v.start_time + float(dur[v.start_location, job.location])
        begin = arrival if job.window_start is None else max(arrival, job.window_start)
        hard = problem.hard_windows or job.hard_window
        if job.window_end is not None and hard and begin > job.window_end + 1e-9:
            continue
        reachable_window = True
        back = 0.0 if v.end_location is None else float(dur[job.location, v.end_location])
        if v.shift_end is None or begin + job.service + back <= v.shift_end + 1e-9:
            return Dropped(
                job_id, "no_room", "fits alone but not with the other stops (windows, load, shift)"
            )
    if not reachable_window:
        return Dropped(job_id, "window_unreachable", "no vehicle can arrive before its window end")
    return Dropped(job_id, "beyond_shift", "no vehicle can serve it and end its shift in time")
