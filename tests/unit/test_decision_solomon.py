"""Solomon instances: the reader takes any standard layout, the solver always answers feasibly."""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from decision.cli import register
from decision.distance_first import servable
from decision.errors import InvalidInstance
from decision.solomon import parse_solomon, read_solomon, solve_solomon, to_problem
from decision.solution import violations

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "solomon"

customer = st.tuples(
    st.integers(0, 100),
    st.integers(0, 100),
    st.integers(0, 30),
    st.integers(0, 500),
    st.integers(0, 400),
    st.integers(0, 90),
)


def layout(name: str, vehicles: int, capacity: int, rows: Sequence[tuple[int, ...]]) -> str:
    """An instance text in the standard layout."""
    head = f"{name}\n\nVEHICLE\nNUMBER     CAPACITY\n  {vehicles}         {capacity}\n\nCUSTOMER\n"
    head += "CUST NO.  XCOORD.   YCOORD.    DEMAND   READY TIME  DUE DATE   SERVICE   TIME\n \n"
    body = "".join("  ".join(f"{v:>6}" for v in (i, *row)) + "   \n" for i, row in enumerate(rows))
    return head + body


@given(st.integers(1, 30), st.integers(1, 300), st.lists(customer, min_size=2, max_size=30))
def test_any_standard_layout_reads_back_its_numbers(v: int, cap: int, rows: list) -> None:
    rows = [(x, y, d, r, max(due, r), s) for x, y, d, r, due, s in rows]
    inst = parse_solomon(layout("X1", v, cap, rows))
    fleet = min(v, len(rows) - 1)  # a fleet line beyond one route per customer is capped
    assert (inst.vehicles, inst.capacity, len(inst.customers)) == (fleet, cap, len(rows) - 1)
    assert [(c.x, c.y, c.demand) for c in (inst.depot, *inst.customers)] == [r[:3] for r in rows]


@given(
    st.text(max_size=300)
    | st.builds(lambda head, tail: head + tail, st.just(layout("J", 2, 9, [(0,) * 6])), st.text())
)
def test_garbage_raises_invalid_instance_never_anything_else(text: str) -> None:
    with contextlib.suppress(InvalidInstance):
        parse_solomon(text, "junk")


@settings(max_examples=8, deadline=None)
@given(st.integers(2, 6), st.lists(customer, min_size=3, max_size=25), st.integers(0, 5))
def test_random_instances_get_a_feasible_answer(v: int, rows: list, seed: int) -> None:
    rows = [(50, 50, 0, 0, 1000, 0), *rows[1:]]
    rows = [(x, y, d, r, max(due, r), s) for x, y, d, r, due, s in rows]
    inst = parse_solomon(layout("R9", v, 100, rows))
    result = solve_solomon(inst, 0.3, seed)
    problem = to_problem(inst)
    seqs = {f"v{k}": [str(c) for c in r] for k, r in enumerate(result.routes)}
    assert violations(problem, seqs) == [] and result.vehicles <= inst.vehicles
    served = [c for r in result.routes for c in r]
    assert len(served) == len(set(served))


@pytest.mark.parametrize("name", ["C101", "R101", "RC105"])
def test_benchmark_instances_are_served_completely_within_windows(name: str) -> None:
    inst = read_solomon(DATA / f"{name}.txt")
    result = solve_solomon(inst, 1.0)
    served = sorted(c for r in result.routes for c in r)
    assert served == sorted(c.number for c in inst.customers)
    problem = to_problem(inst)
    assert (
        violations(problem, {f"v{k}": [str(c) for c in r] for k, r in enumerate(result.routes)})
        == []
    )
    pts = {c.number: (c.x, c.y) for c in (inst.depot, *inst.customers)}
    total = sum(
        math.dist(pts[a], pts[b])
        for r in result.routes
        for a, b in zip([0, *r], [*r, 0], strict=True)
    )
    assert result.distance == pytest.approx(total)


def test_cli_prints_the_contracted_json(capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from fleet.settings import get_settings

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="cmd"))
    args = parser.parse_args(
        ["decision", "solve", str(DATA / "C101.txt"), "--time-limit", "1", "--json"]
    )
    assert args.handler(args, get_settings()) == 0
    answer = json.loads(capsys.readouterr().out)
    assert set(answer) == {"vehicles", "distance", "routes", "solver_ms"}
    assert answer["vehicles"] == len(answer["routes"]) <= 25
    assert sorted(c for r in answer["routes"] for c in r) == list(range(1, 101))


@pytest.mark.parametrize("objective", ["distance", "vehicles"])
def test_a_customer_nobody_can_reach_is_left_out_and_the_rest_served(objective: str) -> None:
    rows = [(50, 50, 0, 0, 200, 0), (60, 50, 5, 0, 100, 10), (40, 50, 5, 0, 100, 10)]
    rows += [(45, 55, 5, 0, 100, 10), (99, 99, 5, 0, 20, 10)]  # 69 away, due at 20
    inst = parse_solomon(layout("X2", 3, 50, rows))
    result = solve_solomon(inst, 0.5, objective=objective)
    assert sorted(c for r in result.routes for c in r) == [1, 2, 3]
    assert servable(inst) == [0, 1, 2]


def test_long_horizon_instances_get_complete_feasible_distance_plans() -> None:
    # C2/R2-like: long horizon, large capacity, few routes.
    rows = [(40, 50, 0, 0, 3390, 0)]
    rows += [(5 * (i % 19), 7 * (i // 19 % 14), 10, 30 * i, 30 * i + 400, 90) for i in range(1, 60)]
    inst = parse_solomon(layout("R201", 25, 1000, rows))
    result = solve_solomon(inst, 1.0)
    seqs = {f"v{k}": [str(c) for c in r] for k, r in enumerate(result.routes)}
    assert violations(to_problem(inst), seqs) == []
    assert sorted(c for r in result.routes for c in r) == list(range(1, 60))
