"""`fleet decision solve FILE`: solve a Solomon-format VRPTW instance and print the plan."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import select
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fleet.errors import ConfigError
from fleet.settings import Settings

if TYPE_CHECKING:
    from decision.solomon import SolomonInstance, SolomonResult


# Kept back from the time limit for printing the answer after the solver's child is done.
OUTPUT_S = 0.1
# Below this much time left after the greedy plan, no solver child is started.
CHILD_MIN_S = 0.15
CHILD_HEADROOM = 0.3
# Below this much time left, the distance search runs in this process from the greedy plan.
IN_PROCESS_BELOW_S = 1.5


def _cmd_solve(args: argparse.Namespace, settings: Settings) -> int:
    # The limit is wall clock from here: reading the file, the greedy plan, the solver (in a
    # child process killed at the deadline), the output. The `fleet` command's own start-up
    # before this point is not counted.
    began = time.perf_counter()
    if not (args.time_limit > 0 and math.isfinite(args.time_limit)):
        raise ConfigError(f"--time-limit={args.time_limit} must be a number of seconds > 0")
    if args.seed < 0:
        raise ConfigError(f"--seed={args.seed} must be an integer >= 0")
    from decision.solomon import greedy_plan, improve_greedy, read_solomon, unservable

    instance = read_solomon(Path(args.file))
    deadline = began + args.time_limit - min(OUTPUT_S, 0.15 * args.time_limit)
    result = greedy_plan(instance)
    left = deadline - time.perf_counter()
    if _in_process(instance, left, args.objective):
        improved = improve_greedy(instance, deadline, args.seed, greedy=result)
        if _rank(improved, args.objective) <= _rank(result, args.objective):
            result = improved
    elif left > CHILD_MIN_S and instance.customers:
        solved = _solve_in_child(instance, deadline, args.seed, args.objective)
        if solved is not None and _rank(solved, args.objective) <= _rank(result, args.objective):
            result = solved
    answer: dict[str, object] = dict(result.as_json())
    served = {c for r in result.routes for c in r}
    cannot = unservable(instance)
    left_out = {
        c.number: cannot.get(c.number)
        or f"no room left in the fleet of {instance.vehicles} vehicles in this plan"
        for c in instance.customers
        if c.number not in served
    }
    if left_out:
        answer["unserved"] = [{"customer": n, "reason": r} for n, r in left_out.items()]
        shown = "; ".join(f"{n}: {r}" for n, r in list(left_out.items())[:10])
        more = f" (and {len(left_out) - 10} more)" if len(left_out) > 10 else ""
        print(
            f"fleet: warning: {len(left_out)} customer(s) cannot be served: {shown}{more}",
            file=sys.stderr,
        )
    answer["solver_ms"] = int((time.perf_counter() - began) * 1000)
    if args.json:
        print(json.dumps(answer))
        return 0
    print(
        f"{instance.name}: {answer['vehicles']} vehicles, distance {answer['distance']:.2f},"
        f" {answer['solver_ms']} ms"
    )
    for k, route in enumerate(result.routes, start=1):
        print(f"  route {k}: {' '.join(str(c) for c in route)}")
    return 0


def _in_process(instance: SolomonInstance, left_s: float, objective: str) -> bool:
    """Whether the distance search runs here, from the greedy plan, instead of in a child:
    when the compiled ruin-and-recreate search is built and the budget is short (loading
    OR-Tools and the child's headroom would take much of it) or too short for OR-Tools'
    first plan of this instance. That search stops within a chunk of the deadline."""
    from decision import sisr
    from decision.solomon import fits

    if objective != "distance" or not instance.customers or not sisr.available():
        return False
    return left_s < IN_PROCESS_BELOW_S or not fits(len(instance.customers), left_s)


def _rank(result: SolomonResult, objective: str) -> tuple[float, ...]:
    served = sum(len(r) for r in result.routes)
    if objective == "vehicles":
        return (-served, result.vehicles, result.distance)
    return (-served, result.distance)


def _solve_in_child(
    instance: SolomonInstance, deadline: float, seed: int, objective: str
) -> SolomonResult | None:
    """The OR-Tools answer from a forked child, or None when it is not there by the deadline.

    OR-Tools keeps the GIL and cannot be interrupted while it builds a model or searches, so
    only a child process that is killed at the deadline keeps the time limit on any instance.
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: solve, write the routes as JSON, leave without clean-up
        os.close(read_fd)
        try:
            from decision.solomon import solve_solomon  # OR-Tools loads here, on the clock

            # Headroom: the solver overruns its budget on large instances (the last
            # model build and repair, about 0.3 s at 1,000 customers on a loaded box).
            left = deadline - time.perf_counter()
            budget = left - max(0.15, min(CHILD_HEADROOM * left, 1.0))
            if budget > 0.05:
                solved = solve_solomon(instance, budget, seed=seed, objective=objective)
                payload = json.dumps([solved.distance, [list(r) for r in solved.routes]])
                os.write(write_fd, payload.encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    chunks: list[bytes] = []
    try:
        while (wait := deadline - time.perf_counter()) > 0:
            ready, _, _ = select.select([read_fd], [], [], wait)
            if not ready:
                break
            chunk = os.read(read_fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
        else:
            chunks = []
    finally:
        os.close(read_fd)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, os.WNOHANG)  # a killed child is reaped when this process exits
    from decision.solomon import SolomonResult

    try:
        distance, routes = json.loads(b"".join(chunks))
    except ValueError:
        return None  # nothing in time, or cut off mid-answer
    return SolomonResult(tuple(tuple(r) for r in routes), distance, 0)


def register(subparsers: Any) -> None:
    """Add `fleet decision solve` to the `fleet` command's subparsers."""
    decision = subparsers.add_parser("decision", help="route optimisation tools")
    dsub = decision.add_subparsers(dest="decision_command", required=True)
    solve = dsub.add_parser(
        "solve",
        help="solve a Solomon VRPTW instance (shortest distance serving every customer)",
    )
    solve.add_argument("file", help="instance in the standard Solomon text layout")
    solve.add_argument("--time-limit", type=float, required=True, help="seconds, wall clock")
    solve.add_argument("--seed", type=int, default=0, help="order of customers in the model")
    solve.add_argument(
        "--objective",
        choices=["distance", "vehicles"],
        default="distance",
        help="distance: shortest total distance (default); vehicles: fewest routes, then distance",
    )
    solve.add_argument("--json", action="store_true", help="one JSON object on stdout")
    solve.set_defaults(handler=_cmd_solve)
