"""The compiled ruin-and-recreate search: built by set-up, never returns a worse or broken plan."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from decision import sisr, sisr_build, sisr_kernel
from decision.distance_first import servable
from decision.solomon import (
    SolomonInstance,
    parse_solomon,
    read_solomon,
    sisr_instance,
    to_problem,
)
from decision.solution import violations
from tests.unit.test_decision_solomon import customer, layout

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "solomon"


def test_set_up_built_the_compiled_search_from_the_current_kernel() -> None:
    assert sisr.available(), "decision._sisr is missing: `make setup` builds it"
    assert sisr_build.current(), "decision._sisr is older than sisr_kernel.py: build again"


def one_route_each(inst: SolomonInstance) -> tuple[sisr.Instance, list[list[int]], list[int]]:
    """The search's instance over the servable customers, and the plan of one route each."""
    order = servable(inst)
    return sisr_instance(inst, order), [[i + 1] for i in range(len(order))], order


def checked(inst: SolomonInstance, order: list[int], routes: list[list[int]]) -> list[str]:
    """The violations of ``routes`` (search nodes) in the solver's own exact check."""
    numbers = [inst.customers[i].number for i in order]
    seqs = {f"v{k}": [str(numbers[n - 1]) for n in r] for k, r in enumerate(routes)}
    return [str(v) for v in violations(to_problem(inst, vehicles=max(1, len(routes))), seqs)]


@settings(max_examples=25, deadline=None)
@given(st.lists(customer, min_size=2, max_size=30), st.integers(0, 2**31))
def test_the_answer_is_feasible_serves_the_same_customers_and_is_never_longer(
    rows: list, seed: int
) -> None:
    rows = [(50, 50, 0, 0, 1000, 0), *rows[1:]]
    rows = [(x, y, d, r, max(due, r), s) for x, y, d, r, due, s in rows]
    inst = parse_solomon(layout("S1", len(rows), 60, rows))
    problem, start, order = one_route_each(inst)
    if not start:
        return
    out = sisr.improve(problem, start, time.perf_counter() + 0.05, seed)
    assert sorted(c for r in out for c in r) == sorted(c for r in start for c in r)
    assert sisr.feasible(problem, out) and checked(inst, order, out) == []
    assert sisr.length(problem, out) <= sisr.length(problem, start) + 1e-9


def test_a_benchmark_instance_from_one_route_per_customer_gets_much_shorter() -> None:
    inst = read_solomon(DATA / "C101.txt")
    problem, start, order = one_route_each(inst)
    problem = sisr.Instance(
        problem.dist, problem.ready, problem.due, problem.service, problem.demand,
        problem.capacity, len(start),
    )  # fmt: skip
    out = sisr.improve(problem, start, time.perf_counter() + 0.5, seed=1)
    assert checked(inst, order, out) == []
    assert sisr.length(problem, out) < 0.5 * sisr.length(problem, start)
    assert len(out) < len(start)


def test_windows_are_kept_with_room_to_spare() -> None:
    """Two customers whose only joint order is feasible by less than the search's margin
    stay on separate routes: a plan the search returns holds in any exact arithmetic."""
    room = sisr_kernel.EPSILON / 10
    rows = [(0, 0, 0, 0, 100, 0), (10, 0, 1, 0, 15, 0), (20, 0, 1, 0, 20 + room, 0)]
    inst = parse_solomon(layout("W1", 2, 10, rows))
    problem, start, _ = one_route_each(inst)
    assert problem.due[2] > 20
    out = sisr.improve(problem, start, time.perf_counter() + 0.05)
    assert sorted(map(sorted, out)) == [[1], [2]]


def test_without_the_compiled_module_the_start_comes_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sisr, "_kernel", lambda: None)
    inst = read_solomon(DATA / "C101.txt")
    problem, start, _ = one_route_each(inst)
    assert not sisr.available()
    assert sisr.improve(problem, start, time.perf_counter() + 0.05) == start


def test_the_vehicles_first_finish_keeps_the_fleet_and_every_customer() -> None:
    """The last phase of ``--objective vehicles`` shortens on the routes it was given."""
    from decision.solomon import _distance, _shorter_on_fleet, greedy_plan

    inst = read_solomon(DATA / "R101.txt")
    problem = to_problem(inst)
    greedy = iter(greedy_plan(inst).routes)
    start = {v.vehicle_id: [str(c) for c in next(greedy, ())] for v in problem.vehicles}
    numbers = [str(c.number) for c in inst.customers]
    assert violations(problem, start) == [], "the start itself must be feasible"
    out = _shorter_on_fleet(inst, start, time.perf_counter() + 0.3, seed=0)
    assert set(out) == set(start)
    assert sorted(j for seq in out.values() for j in seq) == sorted(numbers)
    assert violations(problem, out) == []
    assert sum(1 for seq in out.values() if seq) <= sum(1 for seq in start.values() if seq)
    assert _distance(problem, out) < _distance(problem, start)


def test_a_short_limit_still_gets_the_search_not_just_the_greedy_plan(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Below IN_PROCESS_BELOW_S the CLI searches in its own process from the greedy plan
    (no OR-Tools to load): the answer is feasible and shorter than the greedy plan."""
    import json

    from decision.solomon import greedy_plan
    from fleet.cli import main

    path = DATA / "R101.txt"
    assert main(["decision", "solve", str(path), "--time-limit", "0.3", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    inst = read_solomon(path)
    seqs = {f"v{k}": [str(c) for c in r] for k, r in enumerate(answer["routes"])}
    assert violations(to_problem(inst, vehicles=max(1, len(seqs))), seqs) == []
    assert sorted(c for r in answer["routes"] for c in r) == [c.number for c in inst.customers]
    assert answer["distance"] < greedy_plan(inst).distance
