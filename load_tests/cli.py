"""`fleet load ...`: load-test scenarios against the real stack, with SLO verdicts and a report."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from fleet.settings import Settings


def _cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    from load_tests.load.config import load_config

    config = load_config(Path(args.config)) if args.config else load_config()
    for name in config.names():
        sc = config.scenario(name)
        print(f"{name:<15} {sc.description}")
    return 0


def _cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from load_tests.load.config import load_config
    from load_tests.load.session import run_scenario

    config = load_config(Path(args.config)) if args.config else load_config()
    scenario = config.scenario(
        args.scenario, short=args.short, drivers=args.drivers, duration_s=args.duration,
        workers=args.workers,
    )  # fmt: skip
    command = "fleet load " + shlex.join(sys.argv[2:] if len(sys.argv) > 2 else ["run"])
    out = Path(args.out) if args.out else None
    report, verdict = run_scenario(
        scenario, config.slo, settings, out=out, command=command, progress=not args.no_progress
    )
    print(f"{scenario.name}: {verdict} ({report})")
    return 0 if verdict == "PASS" else 1


def register(subparsers: Any) -> None:
    """Add `fleet load {run,list}` to the `fleet` command's subparsers."""
    load = subparsers.add_parser("load", help="load tests with SLO verdicts and a report")
    lsub = load.add_subparsers(dest="load_command", required=True)

    run = lsub.add_parser("run", help="run a scenario against the real stack; exit 1 on FAIL")
    run.add_argument("--scenario", required=True, help="a name from `fleet load list`")
    run.add_argument("--short", action="store_true", help="the scenario's short version")
    run.add_argument("--config", default=None, help="scenarios TOML (default: the shipped one)")
    run.add_argument("--drivers", type=int, default=None, help="override the fleet size")
    run.add_argument("--duration", type=float, default=None, help="override seconds of traffic")
    run.add_argument("--workers", type=int, default=None, help="override the worker count")
    run.add_argument("--out", default=None, help="report directory (default: load_tests/reports/"
                     "<scenario>-<UTC time>)")  # fmt: skip
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.set_defaults(handler=_cmd_run)

    listing = lsub.add_parser("list", help="the scenarios of the config")
    listing.add_argument("--config", default=None)
    listing.set_defaults(handler=_cmd_list)
