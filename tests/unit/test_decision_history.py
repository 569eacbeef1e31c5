"""Decisions in history: RouteUpdates and proposals become `fleet.decisions` rows."""

from __future__ import annotations

import json
import re

from fleet.history import rows
from fleet.history.schema import DDL_DIR, TABLES
from fleet.records import RoutePlan, RouteUpdate, Stop


def _ddl_columns() -> list[str]:
    text = (DDL_DIR / "70_decisions.sql").read_text()
    body = text.split("(", 1)[1].split("\n)\n", 1)[0]
    return [m.group(1) for m in re.finditer(r"^\s{4}(\w+)\s", body, re.MULTILINE)]


def test_decision_rows_carry_cause_rationale_and_moved_stops_in_ddl_order() -> None:
    plan = RoutePlan("rt-1", "drv-1", 4, [Stop("st-1", 52.5, 13.4), Stop("st-2", 52.6, 13.5)])
    rationale = {"objective_before": 5120, "objective_after": 4630.5, "moved_stops": ["st-2"]}
    applied = RouteUpdate("rt-1", "drv-1", 4, "off_route", 7, plan, "alert:al-1", rationale)
    proposed = RouteUpdate("rt-1", "drv-1", 4, "optimize", 8, plan, None, None, "prop-1")
    a = rows.decision_rows([applied], 9, applied=True)
    p = rows.decision_rows([proposed], 9, applied=False)
    assert "decisions" in TABLES
    assert a.column_names == _ddl_columns() == p.column_names
    assert a.to_pylist()[0] | {"rationale": None, "stops": None} == {
        "route_id": "rt-1", "driver_id": "drv-1", "version": 4, "applied": 1, "proposal_id": "",
        "cause": "off_route", "caused_by": "alert:al-1", "issued_ms": 7,
        "moved_stops": ["st-2"], "objective_before": 5120.0, "objective_after": 4630.5,
        "rationale": None, "stops": None, "ingested_ms": 9,
    }  # fmt: skip
    assert json.loads(a.column("rationale")[0].as_py()) == rationale
    assert [s["stop_id"] for s in json.loads(a.column("stops")[0].as_py())] == ["st-1", "st-2"]
    row = p.to_pylist()[0]
    assert (row["applied"], row["proposal_id"], row["moved_stops"]) == (0, "prop-1", [])
    assert row["objective_before"] is None and row["rationale"] is None
