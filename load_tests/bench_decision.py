"""Decision benchmark: every Solomon instance at fixed budgets, this solver and VROOM side by side.

python -m load_tests.bench_decision --budgets 1 10 [--objective distance|vehicles]
    [--instances C101 R101] [--out FILE.json]

Both solvers get the same wall-clock budget, one thread, and the same objective: distance
alone (``fleet decision solve``'s default; VROOM without a vehicle fixed cost), or fewer
routes first (``--objective vehicles``: our route elimination, VROOM with a vehicle fixed
cost). Each answer is checked with exact Euclidean times (windows, capacity, depot due date,
every customer once) and its distance is compared with both best-known solutions of
BKS.json: the vehicles-first ranking (``gap %``) and the distance-only one (``gap dist %``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from decision.solomon import SolomonInstance, read_solomon, solve_solomon, to_problem
from decision.solution import violations

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "solomon"
VROOM_SCALE = 100  # VROOM takes integer durations: hundredths of a unit


@dataclass(frozen=True)
class Outcome:
    """One solver's answer on one instance at one budget."""

    instance: str
    solver: str
    budget_s: float
    vehicles: int
    distance: float
    wall_ms: int
    feasible: bool
    gap_pct: float  # to the vehicles-first best-known solution
    gap_distance_pct: float  # to the distance-only best-known solution


def solve_vroom(inst: SolomonInstance, budget_s: float, objective: str) -> list[list[int]]:
    """VROOM (pyvroom) with exploration level 5, one thread, a timeout; a vehicle fixed cost
    for the vehicles-first objective."""
    import vroom

    pts = np.array([(inst.depot.x, inst.depot.y)] + [(c.x, c.y) for c in inst.customers])
    dist = np.sqrt(((pts[:, None, :] - pts[None, :, :]) ** 2).sum(axis=2))
    problem = vroom.Input()
    # Durations rounded up keep VROOM's plan feasible in exact times; costs rounded to nearest.
    durations = np.ceil(dist * VROOM_SCALE - 1e-9).astype(np.uint32)
    problem.set_durations_matrix(profile="car", matrix_input=durations)
    problem.set_costs_matrix(
        profile="car", matrix_input=np.round(dist * VROOM_SCALE).astype(np.uint32)
    )
    fixed = int(2 * (dist[0].max() * 2 + max(c.service for c in inst.customers)) * VROOM_SCALE)
    fixed = fixed if objective == "vehicles" else 0
    window = vroom.TimeWindow(
        math.ceil(inst.depot.ready * VROOM_SCALE), math.floor(inst.depot.due * VROOM_SCALE)
    )
    for k in range(inst.vehicles):
        problem.add_vehicle(
            vroom.Vehicle(
                id=k + 1,
                start=0,
                end=0,
                capacity=[int(inst.capacity)],
                time_window=window,
                costs=vroom.VehicleCosts(fixed=fixed),
            )
        )
    for i, c in enumerate(inst.customers):
        tw = vroom.TimeWindow(math.ceil(c.ready * VROOM_SCALE), math.floor(c.due * VROOM_SCALE))
        problem.add_job(
            vroom.Job(
                id=c.number,
                location=i + 1,
                default_service=math.ceil(c.service * VROOM_SCALE),
                delivery=[int(c.demand)],
                time_windows=[tw],
            )
        )
    solution = problem.solve(exploration_level=5, nb_threads=1, timeout=timedelta(seconds=budget_s))
    frame = solution.routes
    jobs = frame[frame["type"] == "job"]
    return [
        [int(x) for x in group["id"].tolist()] for _, group in jobs.groupby("vehicle_id", sort=True)
    ]


def check(inst: SolomonInstance, routes: list[list[int]]) -> tuple[bool, float]:
    """Feasible (every customer once, windows, capacity, depot due) and the exact distance."""
    problem = to_problem(inst, vehicles=max(1, len(routes)))
    seqs = {f"v{k}": [str(c) for c in r] for k, r in enumerate(routes)}
    served = sorted(c for r in routes for c in r)
    complete = served == sorted(c.number for c in inst.customers)
    ok = complete and len(routes) <= inst.vehicles and not violations(problem, seqs)
    dist = problem.travel.distances
    loc = {c.number: i + 1 for i, c in enumerate(inst.customers)}
    total = 0.0
    for r in routes:
        path = [0] + [loc[c] for c in r] + [0]
        total += float(sum(dist[a, b] for a, b in itertools.pairwise(path)))
    return ok, total


def run(
    name: str, solver: str, budget: float, bks: dict[str, dict[str, float]], objective: str
) -> Outcome:
    """Solve one instance with one solver and score it."""
    inst = read_solomon(DATA / f"{name}.txt")
    began = time.perf_counter()
    if solver == "ortools":
        routes = [list(r) for r in solve_solomon(inst, budget, objective=objective).routes]
    else:
        routes = solve_vroom(inst, budget, objective)
    wall_ms = int((time.perf_counter() - began) * 1000)
    ok, distance = check(inst, routes)
    best = bks[name]["best_known_cost"]
    best_distance = bks.get(f"{name}_distance", bks[name])["best_known_cost"]
    return Outcome(
        name,
        solver,
        budget,
        len(routes),
        distance,
        wall_ms,
        ok,
        100.0 * (distance / best - 1.0),
        100.0 * (distance / best_distance - 1.0),
    )


def class_of(name: str) -> str:
    """C1, R1 or RC1."""
    return name.rstrip("0123456789")[:2] + "1" if name.startswith("RC") else name[0] + "1"


def report(outcomes: list[Outcome], bks: dict[str, dict[str, float]], console: Console) -> None:
    """Per-instance table and class means per solver and budget."""
    table = Table(title="per instance (distance gap to BKS, vehicles vs BKS vehicles)")
    for col in (
        "instance",
        "budget s",
        "solver",
        "vehicles",
        "BKS veh",
        "distance",
        "gap %",
        "gap dist %",
        "wall ms",
        "feasible",
    ):
        table.add_column(col)
    for o in outcomes:
        table.add_row(
            o.instance,
            f"{o.budget_s:g}",
            o.solver,
            str(o.vehicles),
            str(int(bks[o.instance]["solved_with_vehicles"])),
            f"{o.distance:.2f}",
            f"{o.gap_pct:+.2f}",
            f"{o.gap_distance_pct:+.2f}",
            str(o.wall_ms),
            "yes" if o.feasible else "NO",
        )
    console.print(table)
    means = Table(title="class means")
    for col in (
        "budget s",
        "solver",
        "class",
        "mean vehicles",
        "mean veh over BKS",
        "mean gap %",
        "mean gap dist %",
        "feasible",
    ):
        means.add_column(col)
    keys = sorted({(o.budget_s, o.solver) for o in outcomes})
    for budget, solver in keys:
        rows = [o for o in outcomes if o.budget_s == budget and o.solver == solver]
        for cls in [*sorted({class_of(o.instance) for o in rows}), "all"]:
            sel = [o for o in rows if cls == "all" or class_of(o.instance) == cls]
            over = [o.vehicles - bks[o.instance]["solved_with_vehicles"] for o in sel]
            means.add_row(
                f"{budget:g}",
                solver,
                cls,
                f"{statistics.fmean(o.vehicles for o in sel):.2f}",
                f"{statistics.fmean(over):+.2f}",
                f"{statistics.fmean(o.gap_pct for o in sel):+.2f}",
                f"{statistics.fmean(o.gap_distance_pct for o in sel):+.2f}",
                f"{sum(o.feasible for o in sel)}/{len(sel)}",
            )
    console.print(means)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--budgets", type=float, nargs="+", default=[1.0, 10.0])
    parser.add_argument("--instances", nargs="*", help="instance names (default: all)")
    parser.add_argument("--solvers", nargs="+", default=["ortools", "vroom"])
    parser.add_argument("--objective", choices=["distance", "vehicles"], default="distance")
    parser.add_argument("--out", type=Path, help="write the outcomes as JSON here")
    args = parser.parse_args()
    bks = json.loads((DATA / "BKS.json").read_text())
    names = args.instances or sorted(p.stem for p in DATA.glob("*.txt") if p.stem in bks)
    console = Console()
    console.print(f"objective: {args.objective}")
    outcomes: list[Outcome] = []
    jobs = [(b, n, s) for b in args.budgets for n in names for s in args.solvers]
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("solving", total=len(jobs))
        for budget, name, solver in jobs:
            progress.update(task, description=f"{name} {solver} {budget:g}s")
            outcomes.append(run(name, solver, budget, bks, args.objective))
            progress.advance(task)
    report(outcomes, bks, console)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps([o.__dict__ for o in outcomes], indent=1))


if __name__ == "__main__":
    main()
