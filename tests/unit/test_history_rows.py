"""Records -> history rows: column order of the DDL, identity values, exact coordinates."""

from __future__ import annotations

import re
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from fleet.history import rows
from fleet.history.schema import DDL_DIR
from fleet.records import (
    Alert,
    DeadLetter,
    DeliveryEvent,
    EtaUpdate,
    LatLon,
    Ping,
    RoutePlan,
    Stop,
    StopEta,
)


def ddl_columns(table: str) -> list[str]:
    """Column names of a table, in DDL order, read from infra/clickhouse."""
    text = next(DDL_DIR.glob(f"*_{table}.sql")).read_text()
    body = text.split("(", 1)[1].split("\n)\n", 1)[0]
    return [m.group(1) for m in re.finditer(r"^\s{4}(\w+)\s", body, re.MULTILINE)]


def test_every_converter_emits_the_ddl_columns_in_order() -> None:
    ping = Ping("d", 1, 52.5, 13.4)
    event = DeliveryEvent("e", "d", "delivered", 1)
    alert = Alert("a", "stale", "open", "d", 1, 1)
    eta = EtaUpdate("r", "d", "m", 1, [StopEta("s", 1, 2, 3)])
    plan = RoutePlan("r", "d", 1, [Stop("s", 52.5, 13.4)])
    letter = DeadLetter("t", "empty", "x", 1, "")
    cases = {
        "pings": rows.ping_rows([ping], 9),
        "events": rows.event_rows([event], 9),
        "alerts": rows.alert_rows([alert], 9),
        "etas": rows.eta_rows([eta], 9),
        "route_plans": rows.route_plan_rows([plan], 9),
        "dead_letters": rows.dead_letter_rows([letter], 9),
    }
    for table, batch in cases.items():
        assert batch.column_names == ddl_columns(table), table
        assert batch.column("ingested_ms").to_pylist() == [9]


def test_missing_seq_becomes_minus_one_in_the_identity() -> None:
    batch = rows.ping_rows([Ping("d", 1, 0.0, 0.0), Ping("d", 2, 0.0, 0.0, seq=7)], 0)
    assert batch.column("seq").to_pylist() == [-1, 7]


def test_eta_updates_flatten_to_one_row_per_stop() -> None:
    update = EtaUpdate("r", "d", "m", 5, [StopEta("a", 1, 2, 3), StopEta("b", 4, 5, 6)])
    batch = rows.eta_rows([update, update], 0)
    assert batch.num_rows == 4
    assert batch.column("stop_id").to_pylist() == ["a", "b", "a", "b"]
    assert batch.column("p50_ms").to_pylist() == [2, 5, 2, 5]


def test_nested_parts_are_stored_as_json_text() -> None:
    plan = RoutePlan("r", "d", 3, [Stop("s", 52.5, 13.4)], depot=LatLon(1.0, 2.0), path=[(1, 2)])
    batch = rows.route_plan_rows([plan], 0)
    assert batch.column("stops").to_pylist() == ['[{"stop_id":"s","lat":52.5,"lon":13.4}]']
    assert batch.column("depot").to_pylist() == ['{"lat":1.0,"lon":2.0}']
    assert batch.column("path").to_pylist() == ["[[1,2]]"]


@given(st.lists(st.integers(-1_800_000_000, 1_800_000_000), min_size=1, max_size=50))
def test_coordinates_with_seven_decimals_survive_fixed_point_exactly(units: list[int]) -> None:
    degrees = [u / 1e7 for u in units]
    stored = rows.fixed_point(degrees).to_pylist()
    assert stored == [Decimal(u).scaleb(-7) for u in units]
    assert [float(d) for d in stored] == degrees


@given(st.floats(-180, 180))
def test_fixed_point_rounds_to_the_nearest_centimetre(value: float) -> None:
    (stored,) = rows.fixed_point([value]).to_pylist()
    assert abs(float(stored) - value) <= 0.5e-7 + 1e-12
