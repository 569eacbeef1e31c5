"""Solutions: routes with their visit times, objective terms, dropped jobs with reasons."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from decision.params import ObjectiveWeights
from decision.problem import Problem, Vehicle


@dataclass(frozen=True)
class Visit:
    """One job on a route: arrival, service start (after any wait) and lateness."""

    job_id: str
    arrival: float
    start: float
    late: float


@dataclass(frozen=True)
class Route:
    """One vehicle's sequence with its times and totals."""

    vehicle_id: str
    visits: tuple[Visit, ...]
    travel: float
    distance: float
    end_time: float
    load: int

    @property
    def job_ids(self) -> tuple[str, ...]:
        """The jobs in order."""
        return tuple(v.job_id for v in self.visits)


@dataclass(frozen=True)
class Dropped:
    """A job the plan does not serve, with a machine-readable reason and a sentence."""

    job_id: str
    reason: str
    detail: str


@dataclass(frozen=True)
class ObjectiveTerms:
    """The objective split into its terms (before weighting)."""

    travel_s: float
    late_s: float
    unserved: int
    disruption: int
    vehicles: int
    distance: float
    unserved_weighted: float = 0.0  # sum of (1 + priority) over dropped jobs

    def cost(self, weights: ObjectiveWeights) -> float:
        """The weighted objective."""
        return (
            weights.travel * self.travel_s
            + weights.late * self.late_s
            + weights.unserved * self.unserved_weighted
            + weights.disruption * self.disruption
            + weights.vehicle * self.vehicles
        )

    def as_dict(self) -> dict[str, float]:
        """Terms by name, rounded for a rationale."""
        return {k: round(float(v), 3) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Solution:
    """What the solver returns. ``status``: ``solved``, ``fallback`` or ``infeasible``."""

    routes: tuple[Route, ...]
    dropped: tuple[Dropped, ...]
    terms: ObjectiveTerms
    cost: float
    solver_ms: int
    status: str

    def sequences(self) -> dict[str, tuple[str, ...]]:
        """Job ids per vehicle."""
        return {r.vehicle_id: r.job_ids for r in self.routes}


def simulate_route(problem: Problem, vehicle: Vehicle, job_ids: Sequence[str]) -> Route:
    """Drive a sequence: visit times (waiting for window starts), travel, distance, load."""
    dur, dist = problem.travel.durations, problem.travel.distances
    t = vehicle.start_time
    here = vehicle.start_location
    travel = distance = 0.0
    load = 0
    visits = []
    for jid in job_ids:
        job = problem.job(jid)
        leg = float(dur[here, job.location])
        travel += leg
        distance += float(dist[here, job.location])
        arrival = t + leg
        start = arrival if job.window_start is None else max(arrival, job.window_start)
        late = 0.0 if job.window_end is None else max(0.0, start - job.window_end)
        visits.append(Visit(jid, arrival, start, late))
        t = start + job.service
        load += job.demand
        here = job.location
    if vehicle.end_location is not None and (job_ids or vehicle.end_location != here):
        travel += float(dur[here, vehicle.end_location])
        distance += float(dist[here, vehicle.end_location])
        t += float(dur[here, vehicle.end_location])
    return Route(vehicle.vehicle_id, tuple(visits), travel, distance, t, load)


def evaluate(
    problem: Problem, sequences: Mapping[str, Sequence[str]]
) -> tuple[ObjectiveTerms, tuple[Route, ...]]:
    """Objective terms and timed routes of a set of sequences (vehicles not named: empty)."""
    routes = tuple(
        simulate_route(problem, v, tuple(sequences.get(v.vehicle_id, ()))) for v in problem.vehicles
    )
    served = {jid: r.vehicle_id for r in routes for jid in r.job_ids}
    unserved = [j for j in problem.jobs if j.job_id not in served]
    disruption = sum(
        1
        for j in problem.jobs
        if j.seen
        and j.current_vehicle is not None
        and served.get(j.job_id, j.current_vehicle) != j.current_vehicle
    )
    terms = ObjectiveTerms(
        travel_s=sum(r.travel for r in routes if r.visits),
        late_s=sum(v.late for r in routes for v in r.visits) + _overtime(problem, routes),
        unserved=len(unserved),
        disruption=disruption,
        vehicles=sum(1 for r in routes if r.visits),
        distance=sum(r.distance for r in routes if r.visits),
        unserved_weighted=float(sum(1 + max(0, j.priority) for j in unserved)),
    )
    return terms, routes


def _overtime(problem: Problem, routes: Sequence[Route]) -> float:
    """Seconds routes end past their shift (counted with lateness; Solomon has none)."""
    total = 0.0
    for vehicle, route in zip(problem.vehicles, routes, strict=True):
        if vehicle.shift_end is not None and route.visits:
            total += max(0.0, route.end_time - vehicle.shift_end)
    return total


def violations(problem: Problem, sequences: Mapping[str, Sequence[str]]) -> list[str]:
    """Every broken hard rule of a plan (empty when feasible)."""
    out: list[str] = []
    terms, routes = evaluate(problem, sequences)
    del terms
    placed: dict[str, str] = {}
    for route in routes:
        v = problem.vehicle(route.vehicle_id)
        for visit in route.visits:
            if visit.job_id in placed:
                out.append(f"job {visit.job_id} served twice")
            placed[visit.job_id] = v.vehicle_id
            hard = problem.hard_windows or problem.job(visit.job_id).hard_window
            if hard and visit.late > 1e-6:
                out.append(f"job {visit.job_id} starts {visit.late:.3f} after its window end")
        if v.capacity is not None and route.load > v.capacity:
            out.append(f"vehicle {v.vehicle_id} load {route.load} over capacity {v.capacity}")
        if v.shift_end is not None and route.visits and route.end_time > v.shift_end + 1e-6:
            out.append(f"vehicle {v.vehicle_id} ends {route.end_time:.3f} after {v.shift_end}")
        first = v.first_job
        if first is not None and problem.has_job(first) and route.job_ids[:1] != (first,):
            out.append(f"vehicle {v.vehicle_id}: approached stop {v.first_job} not first")
        locked_now = [(p, j) for p, j in enumerate(v.route) if problem.job(j).locked]
        locked_after = [(p, j) for p, j in enumerate(route.job_ids) if problem.job(j).locked]
        if locked_after != locked_now:
            out.append(f"vehicle {v.vehicle_id}: locked stops {locked_now} moved: {locked_after}")
    for job in problem.jobs:
        if job.required and job.job_id not in placed:
            out.append(f"required job {job.job_id} not served")
    return out
