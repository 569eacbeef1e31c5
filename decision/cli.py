"""`fleet decision solve FILE`: solve a Solomon-format VRPTW instance and print the plan."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from fleet.errors import ConfigError
from fleet.settings import Settings


def _cmd_solve(args: argparse.Namespace, settings: Settings) -> int:
    # The limit is wall clock from here: loading OR-Tools, reading the file, solving,
    # repairing. The `fleet` command's own start-up before this point is not counted.
    began = time.perf_counter()
    from decision.solomon import read_solomon, solve_solomon  # OR-Tools loads here, on the clock

    if not args.time_limit > 0:
        raise ConfigError(f"--time-limit={args.time_limit} must be > 0 seconds")
    instance = read_solomon(Path(args.file))
    # Headroom for building the model, the last repair and the output on a loaded machine.
    headroom = max(0.1, 0.08 * args.time_limit)
    remaining = args.time_limit - (time.perf_counter() - began) - headroom
    result = solve_solomon(instance, max(0.05, remaining), seed=args.seed, objective=args.objective)
    answer = dict(result.as_json(), solver_ms=int((time.perf_counter() - began) * 1000))
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
