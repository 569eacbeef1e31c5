"""JSON Schemas agree with the contract's examples; `fleet replay` runs the core over files."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fleet.cli import main

# The examples of shared/contract/README.md, verbatim.
CONTRACT_EXAMPLES = {
    "Ping": {"driver_id": "drv-0042", "ts_ms": 1763720103250, "lat": 52.5219, "lon": 13.4132,
             "seq": 1834, "accuracy_m": 8.0, "speed_mps": 11.2, "heading_deg": 271.0,
             "route_id": "rt-20261121-0042"},
    "DeliveryEvent": {"event_id": "ev-9f1c", "driver_id": "drv-0042",
                      "route_id": "rt-20261121-0042", "stop_id": "st-17", "type": "failed",
                      "reason": "not_home", "ts_ms": 1763720400000, "lat": 52.5301,
                      "lon": 13.4012, "pod": {"photo_uri": "s3://pod/ev-9f1c.jpg"}},
    "RoutePlan": {"route_id": "rt-20261121-0042", "driver_id": "drv-0042", "version": 3,
                  "depot": {"lat": 52.50, "lon": 13.40}, "shift_start_ms": 1763704800000,
                  "shift_end_ms": 1763733600000, "capacity": 120,
                  "stops": [{"stop_id": "st-17", "lat": 52.53, "lon": 13.40,
                             "window_start_ms": 1763719200000, "window_end_ms": 1763726400000,
                             "service_s": 120, "demand": 3, "priority": 0,
                             "planned_arrival_ms": 1763720350000}],
                  "path": [[52.50, 13.40], [52.51, 13.405], [52.53, 13.40]]},
    "DispatchCommand": {"command_id": "cmd-77", "route_id": "rt-20261121-0042",
                        "type": "add_stop", "issued_ms": 1763720500000,
                        "issued_by": "dispatcher:amira",
                        "stop": {"stop_id": "st-90", "lat": 52.52, "lon": 13.39,
                                 "window_end_ms": 1763730000000}},
    "Alert": {"alert_id": "al-5512", "kind": "off_route", "state": "open",
              "driver_id": "drv-0042", "route_id": "rt-20261121-0042",
              "opened_ms": 1763720490000, "changed_ms": 1763720490000, "severity": "warning",
              "details": {"distance_m": 412.0, "expected_stop_id": "st-17"}},
    "EtaUpdate": {"route_id": "rt-20261121-0042", "driver_id": "drv-0042",
                  "model_version": "eta-7", "computed_ms": 1763720505000,
                  "stops": [{"stop_id": "st-17", "p10_ms": 1763720600000,
                             "p50_ms": 1763720720000, "p90_ms": 1763720950000}]},
    "DeadLetter": {"source_topic": "fleet.pings", "reason": "lat_out_of_range",
                   "detail": "lat=123.4", "received_ms": 1763720505000, "raw": "{}",
                   "raw_encoding": "utf-8"},
    "Order": {"order_id": "ord-5521", "lat": 52.518, "lon": 13.376, "created_ms": 1763720400000,
              "window_start_ms": 1763722800000, "window_end_ms": 1763730000000,
              "service_s": 120, "demand": 2, "priority": 1, "zone_hint": None},
}  # fmt: skip


@pytest.fixture(scope="module")
def schemas(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    out = tmp_path_factory.mktemp("schemas")
    assert main(["schema", "export", str(out)]) == 0
    return {p.name.split(".")[0]: json.loads(p.read_text()) for p in out.glob("*.schema.json")}


def test_one_schema_per_contract_message(schemas):
    assert set(schemas) == {*CONTRACT_EXAMPLES, "RouteUpdate"}


@pytest.mark.parametrize("name", sorted(CONTRACT_EXAMPLES))
def test_contract_examples_validate(schemas, name):
    jsonschema.validate(CONTRACT_EXAMPLES[name], schemas[name])


def test_route_update_carries_a_full_plan(schemas):
    update = {"route_id": "rt-1", "driver_id": "drv-1", "version": 4, "cause": "off_route",
              "caused_by": "alert:al-5512", "issued_ms": 1763720505000,
              "plan": CONTRACT_EXAMPLES["RoutePlan"],
              "rationale": {"objective_before": 5120}}  # fmt: skip
    jsonschema.validate(update, schemas["RouteUpdate"])


@pytest.mark.parametrize(
    ("patch", "why"),
    [({"lat": True}, "boolean is not a number"), ({"driver_id": "a b"}, "identifier charset"),
     ({"ts_ms": 1.5}, "times are integers"), ({"driver_id": None}, "required")],
)  # fmt: skip
def test_schema_rejects_what_the_contract_rejects(schemas, patch, why):
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**CONTRACT_EXAMPLES["Ping"], **patch}, schemas["Ping"])


def test_unknown_fields_are_allowed_by_the_schema(schemas):
    jsonschema.validate({**CONTRACT_EXAMPLES["Ping"], "battery": 0.8}, schemas["Ping"])


def _replay(path: Path, capsys: pytest.CaptureFixture[str]) -> list[dict]:
    assert main(["replay", str(path), "--now-ms", "1763720200000"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_replay_of_json_lines_prints_live_state_and_dead_letters(tmp_path, capsys):
    lines = [
        {"driver_id": "a", "ts_ms": 1763720100000, "lat": 52.5, "lon": 13.4, "seq": 1},
        {"driver_id": "a", "ts_ms": 1763720101000, "lat": 52.5001, "lon": 13.4, "seq": 2},
        {"driver_id": "a", "ts_ms": 1763720100000, "lat": 52.5, "lon": 13.4, "seq": 1},
        {"driver_id": "a", "ts_ms": 1763720099000, "lat": 52.4999, "lon": 13.4, "seq": 0},
        {"driver_id": "b", "ts_ms": 1763720100000, "lat": 123.4, "lon": 13.4},
    ]
    path = tmp_path / "pings.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\nnot json\n")
    out = _replay(path, capsys)
    summary = out[0]["summary"]
    assert summary["messages"] == 6 and summary["accepted"] == 3
    assert summary["duplicates"] == 1 and summary["late"] == 1
    assert summary["dead_letters_by_reason"] == {"lat_out_of_range": 1, "invalid_json": 1}
    live = [x["live"] for x in out if "live" in x]
    assert [(x["driver_id"], x["ts_ms"], x["seq"]) for x in live] == [("a", 1763720101000, 2)]


def test_replay_of_parquet_matches_json_lines(tmp_path, capsys):
    rows = [{"driver_id": "p", "ts_ms": 1763720100000 + i * 1000, "lat": 52.5 + i * 1e-4,
             "lon": 13.4, "seq": i} for i in range(10)]  # fmt: skip
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "pings.parquet")
    (tmp_path / "pings.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    from_parquet = _replay(tmp_path / "pings.parquet", capsys)
    from_jsonl = _replay(tmp_path / "pings.jsonl", capsys)
    assert from_parquet == from_jsonl
    assert from_parquet[1]["live"]["seq"] == 9
