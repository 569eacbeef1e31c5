"""Solomon VRPTW instances: read the standard text layout, solve vehicles-first, repair, report."""

from __future__ import annotations

import itertools
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from decision import sisr
from decision.errors import InvalidInstance
from decision.params import ObjectiveWeights, SolveParams
from decision.problem import Job, Problem, Vehicle
from decision.solution import Solution, evaluate
from decision.travel import euclidean_matrix

_NUMBER = re.compile(r"^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$")
_INTEGER = re.compile(r"^\+?\d+$")
# The largest Homberger instances have 1,000 customers; a distance matrix for this many
# still fits in memory, and a file of this size is read in well under a second.
MAX_CUSTOMERS = 5000
MAX_FILE_BYTES = 4_000_000
# Coordinates, times, demands and capacity beyond this are not a routing instance (and would
# overflow the solver's integer times at 1,000 steps per unit).
MAX_VALUE = 1e9


@dataclass(frozen=True)
class Customer:
    """One row of the customer block (number 0 is the depot)."""

    number: int
    x: float
    y: float
    demand: float
    ready: float
    due: float
    service: float


@dataclass(frozen=True)
class SolomonInstance:
    """A parsed instance: fleet size, capacity, depot and customers."""

    name: str
    vehicles: int
    capacity: float
    depot: Customer
    customers: tuple[Customer, ...]


@dataclass(frozen=True)
class SolomonResult:
    """Routes as customer numbers, with the fleet used and the Euclidean distance."""

    routes: tuple[tuple[int, ...], ...]
    distance: float
    solver_ms: int

    @property
    def vehicles(self) -> int:
        """Routes with at least one customer."""
        return sum(1 for r in self.routes if r)

    def as_json(self) -> dict[str, object]:
        """The CLI's JSON answer."""
        return {
            "vehicles": self.vehicles,
            "distance": self.distance,
            "routes": [list(r) for r in self.routes if r],
            "solver_ms": self.solver_ms,
        }


def _numbers(line: str) -> list[float] | None:
    parts = line.split()
    if not parts or not all(_NUMBER.match(p) for p in parts):
        return None
    return [float(p) for p in parts]


def parse_solomon(text: str, name: str = "") -> SolomonInstance:
    """Parse the standard layout: a VEHICLE block (number, capacity), then the CUSTOMER rows."""
    lines = text.splitlines()
    upper = [ln.strip().upper() for ln in lines]
    try:
        v_at = next(i for i, ln in enumerate(upper) if ln.startswith("VEHICLE"))
        c_at = next(i for i, ln in enumerate(upper) if ln.startswith("CUSTOMER"))
    except StopIteration:
        raise InvalidInstance(f"{name or 'instance'}: no VEHICLE or CUSTOMER block") from None
    fleet = next((n for ln in lines[v_at + 1 : c_at] if (n := _numbers(ln)) and len(n) >= 2), None)
    if fleet is None:
        raise InvalidInstance(f"{name or 'instance'}: no 'number capacity' row after VEHICLE")
    label = name or "instance"
    rows: list[Customer] = []
    for lineno, ln in enumerate(lines[c_at + 1 :], start=c_at + 2):
        nums = _numbers(ln)
        if nums is None:
            if ln.strip() and rows:
                raise InvalidInstance(
                    f"{label}: line {lineno} is not a customer row of 7 numbers:"
                    f" {ln.strip()[:60]!r}"
                )
            continue
        if len(nums) < 7:
            raise InvalidInstance(f"{label}: line {lineno} has {len(nums)} of 7 fields")
        first = ln.split()[0]
        if not _INTEGER.match(first) or int(first) >= 2**63:
            raise InvalidInstance(
                f"{label}: line {lineno}: customer number {first[:30]} is not"
                " an integer in 0..2^63-1"
            )
        if len(rows) > MAX_CUSTOMERS:
            raise InvalidInstance(f"{label}: more than {MAX_CUSTOMERS} customers")
        rows.append(Customer(int(first), *nums[1:7]))
    if not rows:
        raise InvalidInstance(f"{label}: no depot row after CUSTOMER")
    numbers = [r.number for r in rows]
    if len(set(numbers)) != len(numbers):
        twice = sorted({n for n in numbers if numbers.count(n) > 1})[:5]
        raise InvalidInstance(f"{label}: customer numbers repeat: {twice}")
    for r in rows:
        values = (r.x, r.y, r.demand, r.ready, r.due, r.service)
        if any(abs(v) > MAX_VALUE for v in values):
            raise InvalidInstance(
                f"{label}: customer {r.number} has a value beyond {MAX_VALUE:g} (out of range)"
            )
        if not all(math.isfinite(v) for v in values) or r.demand < 0 or r.service < 0:
            raise InvalidInstance(
                f"{label}: customer {r.number} has invalid values (demand and service must"
                " be finite and >= 0)"
            )
        if r.ready > r.due:
            raise InvalidInstance(
                f"{label}: customer {r.number}: ready time {r.ready:g} after due date {r.due:g}"
            )
    if not fleet[0].is_integer() or not 1 <= fleet[0] < 2**31 or not 0 < fleet[1] <= MAX_VALUE:
        raise InvalidInstance(f"{label}: fleet {fleet[0]:g} x capacity {fleet[1]:g}")
    # Every used route serves a customer: a larger fleet line is capped (the models stay small).
    vehicles, capacity = min(int(fleet[0]), max(1, len(rows) - 1)), float(fleet[1])
    return SolomonInstance(name, vehicles, capacity, rows[0], tuple(rows[1:]))


def read_solomon(path: Path) -> SolomonInstance:
    """Read an instance file."""
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise InvalidInstance(
                f"{path}: {path.stat().st_size} bytes, more than a Solomon instance"
                f" ({MAX_FILE_BYTES} bytes at most)"
            )
        text = path.read_text(encoding="utf-8-sig", errors="replace")
    except OSError as exc:
        raise InvalidInstance(f"cannot read {path}: {exc.strerror or exc}") from None
    return parse_solomon(text, path.stem)


SOLOMON_SCALE = 1000  # solver steps per distance unit: costs exact to 1e-3, windows checked exactly


def demand_unit(customers: Sequence[Customer]) -> int:
    """Demands and capacity may be fractional in odd files: the factor making them integers."""
    return 1 if all(float(c.demand).is_integer() for c in customers) else 1000


def to_problem(inst: SolomonInstance, vehicles: int | None = None) -> Problem:
    """The routing problem: all vehicles at the depot, hard windows, every customer droppable."""
    pts = [(inst.depot.x, inst.depot.y)] + [(c.x, c.y) for c in inst.customers]
    unit = demand_unit(inst.customers)
    jobs = tuple(
        Job(
            job_id=str(c.number),
            location=i + 1,
            window_start=c.ready,
            window_end=c.due,
            service=c.service,
            demand=round(c.demand * unit),
        )
        for i, c in enumerate(inst.customers)
    )
    fleet = tuple(
        Vehicle(
            vehicle_id=f"v{k}",
            start_location=0,
            end_location=0,
            start_time=inst.depot.ready,
            latest_start=inst.depot.due,
            shift_end=inst.depot.due,
            capacity=math.floor(inst.capacity * unit + 1e-9),
        )
        for k in range(vehicles if vehicles is not None else inst.vehicles)
    )
    return Problem(
        fleet, jobs, euclidean_matrix(np.array(pts)), hard_windows=True, scale=SOLOMON_SCALE
    )


# Shares of the budget: the first plan with a vehicle fixed cost, then route elimination
# (up to ELIMINATE_UNTIL of the budget), then distance with the fleet fixed.
FIRST_SHARE = 0.2
ELIMINATE_UNTIL = 0.55
ELIMINATION_SLICE = 0.12


OBJECTIVES = ("distance", "vehicles")
SISR_FIELDS = ("ready", "due", "service", "demand")


# Closing the OR-Tools model and a first plan take about this long per customer squared
# (1.8 s for 1,000 customers on the 2-core reference box): with less than twice that, the
# distance search does not start (decision.distance_first).
FIRST_PLAN_S_PER_N2 = 1.8e-6


def fits(customers: int, time_limit_s: float) -> bool:
    """Whether the budget leaves OR-Tools time for a first plan and some improvement."""
    return 2 * FIRST_PLAN_S_PER_N2 * customers**2 <= time_limit_s


def solve_solomon(
    inst: SolomonInstance, time_limit_s: float, seed: int = 0, objective: str = "distance"
) -> SolomonResult:
    """The shortest plan serving everyone (``distance``), or the fewest routes first.

    Whatever the objective, the answer serves every customer the instance lets anyone
    serve: when no plan serves them all, or the budget is too short for the distance search
    on a large instance, the vehicles-first path (greedy repair) answers.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective {objective!r}: expected one of {', '.join(OBJECTIVES)}")
    if objective == "distance":
        from decision.distance_first import solve_distance_first

        began = time.perf_counter()
        if not fits(len(inst.customers), time_limit_s):
            if sisr.available():  # no time for OR-Tools' first plan: the greedy one instead
                result = improve_greedy(inst, began + time_limit_s, seed)
                if sum(map(len, result.routes)) + len(unservable(inst)) == len(inst.customers):
                    return result
                time_limit_s = max(0.05, time_limit_s - (time.perf_counter() - began))
            return solve_vehicles_first(inst, time_limit_s, seed)
        routes = solve_distance_first(inst, time_limit_s, seed)
        if routes is not None:
            problem = to_problem(inst, vehicles=max(1, len(routes)))
            sequences = {f"v{k}": [str(c) for c in r] for k, r in enumerate(routes)}
            solver_ms = int((time.perf_counter() - began) * 1000)
            return SolomonResult(
                tuple(tuple(r) for r in routes), _distance(problem, sequences), solver_ms
            )
        time_limit_s = max(0.05, time_limit_s - (time.perf_counter() - began))
    return solve_vehicles_first(inst, time_limit_s, seed)


def solve_vehicles_first(
    inst: SolomonInstance, time_limit_s: float, seed: int = 0
) -> SolomonResult:
    """Minimise vehicles, then distance; always a plan that serves every reachable customer.

    Three phases share the wall-clock budget: (1) a first plan and a short guided local
    search with a vehicle fixed cost; (2) route elimination: the shortest route's customers
    are set free and the search, with one vehicle fewer, must place them all (else the
    attempt is abandoned); (3) guided local search on distance alone, fleet fixed at the
    count reached, warm-started. The fixed cost is left out of phase 3 on purpose: OR-Tools
    prices it on the first arc of each route, and guided local search would then spend its
    penalties on those arcs instead of the long ones. Whatever a phase leaves out is
    inserted greedily, so the answer is always complete when the instance allows it.
    """
    from decision.solver import solve  # OR-Tools: not needed to read or to plan greedily

    began = time.perf_counter()
    deadline = began + max(0.05, time_limit_s - 0.05)
    problem = to_problem(inst)
    dur = problem.travel.durations
    depot_round_trip = float(dur[0, :].max() + dur[:, 0].max())
    longest_service = max((c.service for c in inst.customers), default=0.0)
    fixed = 2 * (depot_round_trip + longest_service)
    # Parallel cheapest insertion builds the better first plans but grows as n^3: large
    # instances start from the cheapest arc instead, to leave time for the search.
    first = "PARALLEL_CHEAPEST_INSERTION" if len(inst.customers) <= 300 else "PATH_CHEAPEST_ARC"

    def params(share_s: float, vehicle_cost: float) -> SolveParams:
        weights = ObjectiveWeights(
            travel=1.0, late=0.0, unserved=1e6, disruption=0.0, vehicle=vehicle_cost
        )
        return SolveParams(
            time_limit_s=max(0.01, share_s),
            seed=seed,
            first_solution_strategy=first,
            local_search_metaheuristic="GUIDED_LOCAL_SEARCH",
            weights=weights,
            neighbour_operators=True,
        )

    total = deadline - began
    best = _complete(problem, solve(problem, params(FIRST_SHARE * total, fixed)))
    # Building a model costs about what the first phase cost beyond its search share: a
    # phase starts only with time for that and some search (large instances, short limits).
    overhead = max(0.02, time.perf_counter() - began - FIRST_SHARE * total)
    # Route elimination: free the shortest route's customers; keep going while it succeeds.
    stop_at = began + ELIMINATE_UNTIL * total
    while time.perf_counter() < stop_at:
        used = [seq for seq in best.values() if seq]
        if len(used) <= 1:
            break
        shortest = min(used, key=lambda seq: (len(seq), seq))
        trial = _fleet(problem, [seq for seq in used if seq is not shortest], len(used) - 1)
        placed = None
        while placed is None and stop_at - time.perf_counter() > 2 * overhead:
            slice_s = min(ELIMINATION_SLICE * total, stop_at - time.perf_counter())
            attempt = solve(trial, params(slice_s, fixed))
            if attempt.status != "solved":
                break
            sequences = repair(
                trial,
                {k: list(v) for k, v in attempt.sequences().items()},
                [d.job_id for d in attempt.dropped],
            )
            if _served(sequences) >= _served(best):
                placed = sequences
            else:  # go on from where this attempt got to
                trial = _fleet(problem, [v for v in sequences.values() if v], len(used) - 1)
        if placed is None:
            break
        best = placed
    # Distance with the fleet fixed.
    left = deadline - time.perf_counter()
    used = [seq for seq in best.values() if seq]
    if left > 0.02 and used and sisr.available():
        best = _shorter_on_fleet(inst, best, deadline, seed)
    elif left > 2 * overhead and used:
        final = solve(_fleet(problem, used, len(used)), params(left, 0.0))
        if final.status == "solved" and not final.dropped:
            candidate = {k: list(v) for k, v in final.sequences().items()}
            if _distance(problem, candidate) < _distance(problem, best):
                best = candidate
    solver_ms = int((time.perf_counter() - began) * 1000)
    routes = tuple(tuple(int(j) for j in seq) for seq in best.values() if seq)
    return SolomonResult(routes, _distance(problem, best), solver_ms)


def sisr_instance(
    inst: SolomonInstance, order: Sequence[int] | None = None, max_routes: int | None = None
) -> sisr.Instance:
    """The instance in the ruin-and-recreate search's arrays: node i is customer
    ``inst.customers[order[i - 1]]`` (every customer in file order by default), at most
    ``max_routes`` routes (the fleet by default)."""
    picked = inst.customers if order is None else [inst.customers[i] for i in order]
    nodes = [inst.depot, *picked]
    ready, due, service, demand = (
        np.array([float(getattr(c, f)) for c in nodes]) for f in SISR_FIELDS
    )
    return sisr.Instance(
        euclidean_matrix([(c.x, c.y) for c in nodes]).distances, ready, due, service, demand,
        float(inst.capacity), max_routes if max_routes is not None else inst.vehicles,
    )  # fmt: skip


def improve_routes(
    inst: SolomonInstance,
    routes: Sequence[Sequence[int]],
    deadline: float,
    seed: int = 0,
    max_routes: int | None = None,
) -> list[list[int]]:
    """``routes`` (customer numbers) made shorter by the compiled ruin-and-recreate search
    until ``deadline`` (``time.perf_counter()``), on at most ``max_routes`` routes (the
    fleet); ``routes`` unchanged when the search is not built or finds nothing shorter."""
    node = {c.number: i for i, c in enumerate(inst.customers, start=1)}
    start = [[node[c] for c in r] for r in routes if r]
    shorter = sisr.improve(sisr_instance(inst, max_routes=max_routes), start, deadline, seed)
    return [[inst.customers[n - 1].number for n in r] for r in shorter]


def improve_greedy(
    inst: SolomonInstance, deadline: float, seed: int = 0, greedy: SolomonResult | None = None
) -> SolomonResult:
    """The greedy plan (``greedy`` when the caller has it) improved by the ruin-and-recreate
    search until ``deadline``: no OR-Tools, so it starts at once and stops within a chunk of
    the deadline (short budgets and large instances, where OR-Tools' first plan would not
    fit)."""
    began = time.perf_counter()
    start = greedy if greedy is not None else greedy_plan(inst)
    routes = improve_routes(inst, start.routes, deadline, seed)
    problem = to_problem(inst, vehicles=max(1, len(routes)))
    sequences = {f"v{k}": [str(c) for c in r] for k, r in enumerate(routes)}
    solver_ms = int((time.perf_counter() - began) * 1000)
    return SolomonResult(tuple(tuple(r) for r in routes), _distance(problem, sequences), solver_ms)


def _shorter_on_fleet(
    inst: SolomonInstance, sequences: dict[str, list[str]], deadline: float, seed: int
) -> dict[str, list[str]]:
    """``sequences`` made shorter by the ruin-and-recreate search, on no more routes than they
    use."""
    used = [[int(j) for j in seq] for seq in sequences.values() if seq]
    shorter = iter(improve_routes(inst, used, deadline, seed, max_routes=len(used)))
    return {k: [str(c) for c in next(shorter, [])] for k in sequences}


def _complete(problem: Problem, solution: Solution) -> dict[str, list[str]]:
    """A solution's sequences with anything it left out inserted greedily."""
    if solution.status == "infeasible":
        sequences: dict[str, list[str]] = {v.vehicle_id: [] for v in problem.vehicles}
        return repair(problem, sequences, [j.job_id for j in problem.jobs])
    sequences = {k: list(v) for k, v in solution.sequences().items()}
    return repair(problem, sequences, [d.job_id for d in solution.dropped])


def _fleet(problem: Problem, routes: list[list[str]], size: int) -> Problem:
    """The problem with ``size`` vehicles, the first ones warm-started on ``routes``."""
    template = problem.vehicles[0]
    vehicles = tuple(
        replace(template, vehicle_id=f"v{k}", route=tuple(routes[k]) if k < len(routes) else ())
        for k in range(size)
    )
    return replace(problem, vehicles=vehicles)


def _served(sequences: dict[str, list[str]]) -> int:
    return sum(len(v) for v in sequences.values())


def _distance(problem: Problem, sequences: dict[str, list[str]]) -> float:
    terms, _ = evaluate(problem, {k: v for k, v in sequences.items() if v})
    return terms.distance


def repair(
    problem: Problem, sequences: dict[str, list[str]], missing: list[str]
) -> dict[str, list[str]]:
    """Insert left-out jobs at their cheapest feasible place (exact times), else keep them out.

    Cheapest insertion, the most urgent job first, with the classic O(1) test per place:
    each route keeps its service start times and the latest start each stop tolerates, so a
    whole plan for a thousand customers is built in well under a second.
    """
    dur = problem.travel.durations.tolist()
    jobs = {j.job_id: j for j in problem.jobs}
    vehicles = {v.vehicle_id: v for v in problem.vehicles}
    state = {vid: _RouteTimes.of(vehicles[vid], seq, jobs, dur) for vid, seq in sequences.items()}
    for jid in sorted(missing, key=lambda j: jobs[j].window_end or 0.0):
        job = jobs[jid]
        best: tuple[float, str, int] | None = None
        opened = False
        for vid, seq in sequences.items():
            if not seq and opened:
                continue  # one empty vehicle is as good as another
            opened = opened or not seq
            found = state[vid].cheapest(job, jobs, dur)
            if found is not None:
                extra = found[0] + (0.0 if seq else 1e9)  # a new route only as a last resort
                if best is None or extra < best[0]:
                    best = (extra, vid, found[1])
        if best is not None:
            sequences[best[1]].insert(best[2], jid)
            state[best[1]] = _RouteTimes.of(vehicles[best[1]], sequences[best[1]], jobs, dur)
    return sequences


@dataclass(frozen=True)
class _RouteTimes:
    """A route's locations, service starts and latest tolerable starts, for insertion tests."""

    vehicle: Vehicle
    locations: list[int]  # start location, the stops' locations
    departs: list[float]  # when the vehicle leaves each of them
    latest: list[float]  # latest start at each stop (index 0 unused) keeping the rest feasible
    end_latest: float
    load: int

    @classmethod
    def of(
        cls, v: Vehicle, seq: list[str], jobs: dict[str, Job], dur: list[list[float]]
    ) -> _RouteTimes:
        locations, departs = [v.start_location], [v.start_time]
        t, here, load = v.start_time, v.start_location, 0
        for jid in seq:
            job = jobs[jid]
            t = max(t + dur[here][job.location], job.window_start or 0.0)
            here = job.location
            t += job.service
            locations.append(here)
            departs.append(t)
            load += job.demand
        horizon = v.shift_end if v.shift_end is not None else float("inf")
        end_latest = horizon
        latest = [0.0] * len(locations)
        nxt_latest, nxt_loc = end_latest, v.end_location
        for k in range(len(seq), 0, -1):
            job = jobs[seq[k - 1]]
            back = dur[job.location][nxt_loc] if nxt_loc is not None else 0.0
            due = job.window_end if job.window_end is not None else float("inf")
            latest[k] = min(due, nxt_latest - back - job.service)
            nxt_latest, nxt_loc = latest[k], job.location
        return cls(v, locations, departs, latest, end_latest, load)

    def cheapest(
        self, job: Job, jobs: dict[str, Job], dur: list[list[float]]
    ) -> tuple[float, int] | None:
        """(added distance, position) of the cheapest feasible insertion, or None."""
        v = self.vehicle
        if v.capacity is not None and self.load + job.demand > v.capacity:
            return None
        ready = job.window_start or 0.0
        due = job.window_end if job.window_end is not None else float("inf")
        n = len(self.locations) - 1
        best: tuple[float, int] | None = None
        for k in range(n + 1):  # insert after the k-th location (0 = the start)
            here = self.locations[k]
            begin = max(self.departs[k] + dur[here][job.location], ready)
            if begin > due + 1e-9:
                continue
            leave = begin + job.service
            if k < n:
                nxt = self.locations[k + 1]
                nxt_job_begin = leave + dur[job.location][nxt]
                if nxt_job_begin > self.latest[k + 1] + 1e-9:
                    continue
                extra = dur[here][job.location] + dur[job.location][nxt] - dur[here][nxt]
            else:
                end = v.end_location
                back = dur[job.location][end] if end is not None else 0.0
                if leave + back > self.end_latest + 1e-9:
                    continue
                old = dur[here][end] if end is not None and n > 0 else 0.0
                extra = dur[here][job.location] + back - old
            if best is None or extra < best[0]:
                best = (extra, k)
        return best


def unservable(inst: SolomonInstance) -> dict[int, str]:
    """Customers no vehicle can serve even alone, each with the reason (number -> reason)."""
    out: dict[int, str] = {}
    depot = inst.depot
    for c in inst.customers:
        there = math.dist((depot.x, depot.y), (c.x, c.y))
        begin = max(depot.ready + there, c.ready)
        if c.demand > inst.capacity:
            out[c.number] = f"demand {c.demand:g} above capacity {inst.capacity:g}"
        elif begin > c.due:
            out[c.number] = f"due at {c.due:g}, reached at {begin:.2f} at the earliest"
        elif begin + c.service + there > depot.due:
            back = begin + c.service + there
            out[c.number] = f"back at the depot at {back:.2f}, after it closes at {depot.due:g}"
    return out


def greedy_plan(inst: SolomonInstance) -> SolomonResult:
    """A quick feasible plan without OR-Tools: time-oriented nearest neighbour (numpy).

    Each route takes the customer that can be served next at the least cost (distance,
    waiting, and how soon its window closes) until none fits; at most the fleet's routes.
    The fallback when the time limit leaves no room for the solver (milliseconds for a
    thousand customers).
    """
    began = time.perf_counter()
    depot = inst.depot
    xy = np.array([(c.x, c.y) for c in inst.customers], dtype=float).reshape(-1, 2)
    dem = np.array([c.demand for c in inst.customers], dtype=float)
    ready = np.array([c.ready for c in inst.customers], dtype=float)
    due = np.array([c.due for c in inst.customers], dtype=float)
    service = np.array([c.service for c in inst.customers], dtype=float)
    home = np.hypot(xy[:, 0] - depot.x, xy[:, 1] - depot.y)
    left = np.ones(len(inst.customers), dtype=bool)
    bad = {c.number for c in inst.customers} & set(unservable(inst))
    for i, c in enumerate(inst.customers):
        left[i] = c.number not in bad
    routes: list[tuple[int, ...]] = []
    while left.any() and len(routes) < inst.vehicles:
        route: list[int] = []
        t, load, here = depot.ready, 0.0, np.array([depot.x, depot.y])
        while True:
            leg = np.hypot(xy[:, 0] - here[0], xy[:, 1] - here[1])
            begin = np.maximum(t + leg, ready)
            ok = (
                left
                & (begin <= due)
                & (begin + service + home <= depot.due)
                & (load + dem <= inst.capacity)
            )
            if not ok.any():
                break
            cost = np.where(ok, leg + (begin - t - leg) + 0.5 * (due - begin), np.inf)
            k = int(np.argmin(cost))
            route.append(k)
            left[k] = False
            t, load, here = float(begin[k] + service[k]), load + dem[k], xy[k]
        if not route:
            break
        routes.append(tuple(route))
    pts = [(c.x, c.y) for c in inst.customers]
    distance = 0.0
    for r in routes:
        stops = [(depot.x, depot.y), *(pts[k] for k in r), (depot.x, depot.y)]
        distance += sum(math.dist(a, b) for a, b in itertools.pairwise(stops))
    numbers = tuple(tuple(inst.customers[k].number for k in r) for r in routes)
    return SolomonResult(numbers, distance, int((time.perf_counter() - began) * 1000))
