"""`fleet decision solve` from outside: layouts, unservable customers, bad files, the deadline."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from decision.cli import _solve_in_child
from decision.solomon import MAX_FILE_BYTES, greedy_plan, parse_solomon, read_solomon, to_problem
from decision.solution import violations
from fleet.cli import main
from tests.unit.test_decision_solomon import customer, layout

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "solomon"
ROWS = [(40, 50, 0, 0, 1236, 0), (45, 68, 10, 0, 967, 90), (42, 66, 10, 65, 146, 90)]
ROWS += [(30, 50, 10, 0, 300, 10), (20, 20, 20, 0, 900, 10)]


def run(path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of `fleet decision solve PATH --json ...`."""
    code = main(["decision", "solve", str(path), "--json", *extra])
    out, err = capsys.readouterr()
    return code, out, err


def variants(text: str) -> dict[str, bytes]:
    """The same instance as other tools and editors write it."""
    return {
        "crlf": text.replace("\n", "\r\n").encode(),
        "tabs": text.replace("  ", "\t").encode(),
        "trailing spaces": text.replace("\n", "  \n").encode(),
        "blank lines": text.replace("\n", "\n\n").encode(),
        "no final newline": text.rstrip("\n").encode(),
        "lower case": text.replace("VEHICLE", "vehicle").replace("CUSTOMER", "Customer").encode(),
        "bom": b"\xef\xbb\xbf" + text.encode(),
    }


@settings(max_examples=20, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(customer, min_size=1, max_size=12))
def test_layout_variants_read_as_the_standard_layout(tmp_path: Path, rows: list) -> None:
    rows = [(x, y, d, r, max(due, r), s) for x, y, d, r, due, s in rows]
    text = layout("V1", 5, 100, rows)
    want = parse_solomon(text, "V1")
    for kind, data in variants(text).items():
        path = tmp_path / "V1.txt"
        path.write_bytes(data)
        assert read_solomon(path) == want, kind


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 6), st.lists(customer, min_size=1, max_size=40))
def test_the_greedy_plan_is_feasible_and_serves_each_customer_once(v: int, rows: list) -> None:
    rows = [(50, 50, 0, 0, 1000, 0), *rows[1:]]
    rows = [(x, y, d, r, max(due, r), s) for x, y, d, r, due, s in rows]
    inst = parse_solomon(layout("G1", v, 60, rows))
    plan = greedy_plan(inst)
    served = [c for r in plan.routes for c in r]
    assert len(served) == len(set(served)) and plan.vehicles <= inst.vehicles
    seqs = {f"v{k}": [str(c) for c in r] for k, r in enumerate(plan.routes)}
    assert violations(to_problem(inst), seqs) == []


def test_an_instance_without_customers_gets_an_empty_plan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (path := tmp_path / "E0.txt").write_text(layout("E0", 3, 100, ROWS[:1]))
    code, out, _ = run(path, capsys, "--time-limit", "0.5")
    answer = json.loads(out)
    assert code == 0 and (answer["vehicles"], answer["routes"], answer["distance"]) == (0, [], 0)


def test_unservable_customers_are_listed_with_reasons_and_the_rest_served(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [*ROWS, (99, 99, 5, 0, 20, 10), (41, 51, 500, 0, 900, 10)]  # too late; too heavy
    (path := tmp_path / "U1.txt").write_text(layout("U1", 3, 100, rows))
    code, out, err = run(path, capsys, "--time-limit", "0.3")
    answer = json.loads(out)
    assert code == 0
    assert sorted(c for r in answer["routes"] for c in r) == [1, 2, 3, 4]
    reasons = {u["customer"]: u["reason"] for u in answer["unserved"]}
    assert set(reasons) == {5, 6} and "capacity" in reasons[6] and "due at 20" in reasons[5]
    assert "2 customer(s) cannot be served" in err and len(err.splitlines()) == 1


def test_too_few_vehicles_serve_what_fits_and_list_the_rest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (path := tmp_path / "F1.txt").write_text(layout("F1", 1, 25, ROWS))  # 2 loads of 25
    code, out, _ = run(path, capsys, "--time-limit", "0.3")
    answer = json.loads(out)
    assert code == 0 and answer["vehicles"] == 1
    left = [u["customer"] for u in answer["unserved"]]
    assert all("fleet of 1 vehicles" in u["reason"] for u in answer["unserved"])
    assert sorted(left + answer["routes"][0]) == [1, 2, 3, 4]


BAD = {
    "garbage": "\x00\x01hello\n",
    "empty": "",
    "number beyond 64 bits": layout("B", 3, 100, ROWS).replace(
        "     1      45", "123456789012345678901234567890      45"
    ),
    "huge value": layout("B", 3, 100, [*ROWS, ("1e300", 1, 5, 0, 50, 0)]),  # type: ignore[list-item]
    "nan": layout("B", 3, 100, [*ROWS, ("nan", 1, 5, 0, 50, 0)]),  # type: ignore[list-item]
    "negative demand": layout("B", 3, 100, [*ROWS, (1, 1, -5, 0, 100, 0)]),
    "duplicate customer": layout("B", 3, 100, ROWS) + "     1   1   1   1   0  50   0\n",
    "ready after due": layout("B", 3, 100, [*ROWS, (1, 1, 5, 90, 50, 0)]),
    "fractional fleet": layout("B", 3, 100, ROWS).replace("  3         100", "  2.5   100"),
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_malformed_files_exit_2_with_one_line(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (path := tmp_path / "bad.txt").write_text(BAD[kind])
    code, out, err = run(path, capsys, "--time-limit", "1")
    assert (code, out) == (2, "") and err.startswith("fleet: error: ") and err.count("\n") == 1


@pytest.mark.parametrize(
    "extra", [("--seed", "-1"), ("--time-limit", "0"), ("--time-limit", "nan")]
)
def test_bad_options_exit_2(
    extra: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (path := tmp_path / "O1.txt").write_text(layout("O1", 3, 100, ROWS))
    code, _, err = run(path, capsys, "--time-limit", "1", *extra)
    assert code == 2 and err.startswith("fleet: error: --")


def test_a_file_too_large_is_refused_before_reading(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with (path := tmp_path / "big.txt").open("wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)
    code, _, err = run(path, capsys, "--time-limit", "1")
    assert code == 2 and "bytes at most" in err


def test_a_child_not_done_by_the_deadline_gives_no_answer() -> None:
    inst = read_solomon(DATA / "C101.txt")
    assert _solve_in_child(inst, time.perf_counter(), 0, "distance") is None


def test_seeds_beyond_64_bits_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (path := tmp_path / "S1.txt").write_text(layout("S1", 3, 100, ROWS))
    code, out, _ = run(path, capsys, "--time-limit", "1", "--seed", str(2**70))
    assert code == 0 and sorted(c for r in json.loads(out)["routes"] for c in r) == [1, 2, 3, 4]
