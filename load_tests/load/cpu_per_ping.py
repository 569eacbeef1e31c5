"""CPU time per processed ping of each process of a load-test run, from its samples.

    python -m load_tests.load.cpu_per_ping load_tests/reports/10x-... [more runs]

Throughput on a shared machine moves with what else runs; the CPU a process spends per
ping it helped process does much less, so runs made at different times compare. Only the
seconds in which pings were processed count.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path


def cpu_per_ping(samples: list[dict[str, object]]) -> tuple[float, dict[str, float]]:
    """(pings processed, microseconds of CPU per ping by process) over the samples."""
    cpu_s: dict[str, float] = {}
    pings = 0.0
    for before, after in itertools.pairwise(samples):
        done = float(after["processed"]) - float(before["processed"])  # type: ignore[arg-type]
        if done <= 0:
            continue
        seconds = float(after["t"]) - float(before["t"])  # type: ignore[arg-type]
        pings += done
        for name, percent in after["cpu"].items():  # type: ignore[attr-defined]
            cpu_s[name] = cpu_s.get(name, 0.0) + percent / 100 * seconds
    return pings, {name: 1e6 * s / pings for name, s in cpu_s.items()} if pings else {}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="report directories (samples.json)")
    args = parser.parse_args(argv)
    for run in args.runs:
        samples = json.loads((run / "samples.json").read_text())
        pings, per_ping = cpu_per_ping(samples)
        print(f"{run.name}: {pings:,.0f} pings processed")
        for name, us in sorted(per_ping.items()):
            print(f"  {name:<45} {us:8.0f} us CPU per ping")


if __name__ == "__main__":
    main()
