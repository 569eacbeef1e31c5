"""Every reporting query over history written by the pipeline, for a small known scenario."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h3
import pyarrow.parquet as pq
import pytest

from fleet.history.access import open_reader
from fleet.history.errors import StoreBusy
from fleet.history.queries import REPORTS, run_report
from fleet.records import Alert, DeliveryEvent, EtaUpdate, Ping, RoutePlan, Stop, StopEta, encode
from fleet.settings import PROJECT_ROOT, Settings
from fleet.topics import ALERTS, ETAS, EVENTS, PINGS, ROUTES
from tests.conftest import FleetEnv, WorkerHandle, produce, wait_until

pytestmark = pytest.mark.integration

MIN = 60_000
HOUR = 3_600_000
CITY = (52.52, 13.405)  # zone A: every stop but one
SUBURB = (52.40, 13.06)  # zone B: one stop, never served


def scenario(base: int) -> dict[str, list[Any]]:
    """Two drivers, their plans, outcomes, ETAs, pings and alerts (see the expectations)."""
    s = lambda sid, at, planned: Stop(sid, at[0], at[1], planned_arrival_ms=planned)  # noqa: E731
    plans = [
        RoutePlan("rt-a", "drv-a", 1, [s("s1", CITY, base + 10 * MIN)]),  # superseded
        RoutePlan(
            "rt-a",
            "drv-a",
            2,
            [
                s("s1", CITY, base + 10 * MIN),
                s("s2", CITY, base + 20 * MIN),
                s("s3", SUBURB, base + 70 * MIN),
            ],
        ),
        RoutePlan(
            "rt-b", "drv-b", 1, [s("t1", CITY, base + 15 * MIN), s("t2", CITY, base + 80 * MIN)]
        ),
    ]
    ev = lambda i, d, r, st, t, at, **kw: DeliveryEvent(  # noqa: E731
        f"ev-{i}", d, t, base + at * MIN, route_id=r, stop_id=st, **kw
    )
    events = [
        ev(1, "drv-a", "rt-a", "s1", "arrived", 12),
        ev(2, "drv-a", "rt-a", "s1", "delivered", 13),
        ev(3, "drv-a", "rt-a", "s2", "failed", 20, reason="not_home"),
        ev(4, "drv-b", "rt-b", "t1", "arrived", 16),
        ev(5, "drv-b", "rt-b", "t1", "delivered", 17),
        ev(6, "drv-b", "rt-b", "t2", "failed", 85, reason="refused"),
        ev(7, "drv-b", "rt-b", "t2", "delivered", 90),  # the last outcome counts
    ]
    m = lambda minutes: base + int(minutes * MIN)  # noqa: E731
    etas = [
        EtaUpdate(
            "rt-a", "drv-a", "eta-t", m(5),
            [StopEta("s1", m(10), m(11), m(13)), StopEta("s2", m(21), m(22), m(25))],
        ),
        EtaUpdate(  # s1 has arrived by now: only s2 counts
            "rt-a", "drv-a", "eta-t", m(15),
            [StopEta("s1", m(14), m(15), m(16)), StopEta("s2", m(18), m(19), m(21))],
        ),
        EtaUpdate(
            "rt-b", "drv-b", "eta-t", m(5),
            [StopEta("t1", m(14), m(16.5), m(18)), StopEta("t2", m(75), m(80), m(82))],
        ),
    ]  # fmt: skip
    pings = [
        Ping("drv-a", m(5) + 1000, *CITY, seq=1),
        Ping("drv-a", m(5) + 2000, *CITY, seq=2),
        Ping("drv-b", m(5) + 3000, *CITY, seq=1),
        Ping("drv-b", m(6) + 1000, *CITY, seq=2),
        Ping("drv-b", m(6) + 2000, *CITY),
    ]
    day_before = base - 24 * HOUR  # apart from any alert the tracking agents raise
    alerts = [
        Alert("al-1", "off_route", "open", "drv-a", day_before + 10 * MIN, day_before + 10 * MIN),
        Alert("al-1", "off_route", "resolved", "drv-a", day_before + 10 * MIN, day_before + HOUR),
        Alert("al-2", "stale", "open", "drv-b", day_before + 30 * MIN, day_before + 30 * MIN),
        Alert("al-3", "off_route", "open", "drv-a", day_before + 70 * MIN, day_before + 70 * MIN),
    ]
    return {"plans": plans, "events": events, "etas": etas, "pings": pings, "alerts": alerts}


INVALID_PINGS = [
    b'{"driver_id": "drv-a", "ts_ms": 1, "lat": 123.4, "lon": 13.4}',
    b'{"driver_id": "drv-b", "ts_ms": 1, "lat": -91.0, "lon": 13.4}',
    b'{"driver_id": "drv-a", "ts_ms": ',
    b'{"driver_id": "drv-a", "ts_ms": ',  # the same rejected input again: counted once
]


DECISION_TRIGGERS = ("FAILED_DELIVERY", "BEHIND_SCHEDULE", "ETA_WINDOW_RISK", "OFF_ROUTE", "STALE")


def publish(env: FleetEnv, data: dict[str, list[Any]]) -> None:
    bootstrap = env.settings.kafka_bootstrap
    twice = lambda msgs: msgs + msgs  # noqa: E731  every message redelivered
    produce(
        bootstrap,
        env.topic(ROUTES),
        twice([(p.route_id.encode(), encode(p)) for p in data["plans"]]),
    )
    produce(
        bootstrap,
        env.topic(EVENTS),
        twice([(e.driver_id.encode(), encode(e)) for e in data["events"]]),
    )
    produce(
        bootstrap, env.topic(ETAS), twice([(u.route_id.encode(), encode(u)) for u in data["etas"]])
    )
    produce(
        bootstrap,
        env.topic(ALERTS),
        twice([(a.driver_id.encode(), encode(a)) for a in data["alerts"]]),
    )
    produce(
        bootstrap,
        env.topic(PINGS),
        twice([(p.driver_id.encode(), encode(p)) for p in data["pings"]])
        + [(b"drv-x", raw) for raw in INVALID_PINGS],
    )  # fmt: skip


def counts(settings: Settings) -> dict[str, int]:
    sql = (
        "SELECT (SELECT count() FROM fleet.route_plans) AS route_plans,"
        " (SELECT count() FROM fleet.events) AS events, (SELECT count() FROM fleet.etas) AS etas,"
        " (SELECT count() FROM fleet.pings) AS pings,"
        # Only the scenario's alerts: the tracking agents raise their own (failed deliveries).
        " (SELECT count() FROM fleet.alerts WHERE alert_id IN ('al-1', 'al-2', 'al-3')) AS alerts,"
        " (SELECT count() FROM fleet.dead_letters) AS dead_letters"
    )
    try:
        store = open_reader(settings)
    except StoreBusy:
        return {}
    try:
        return {k: int(v) for k, v in json.loads(store.query(sql)).items()}
    except StoreBusy:
        return {}
    finally:
        store.close()


def fleet_history(env: FleetEnv, *args: str) -> bytes:
    """Run `fleet history ...` as a user would, in the test's environment."""
    command = [sys.executable, "-m", "fleet.cli", "history", *args]
    done = subprocess.run(command, env=env, cwd=PROJECT_ROOT, capture_output=True, check=True)
    return done.stdout


def report(settings: Settings, name: str, since: int, until: int) -> list[dict[str, Any]]:
    store = open_reader(settings)
    try:
        return run_report(store, name, since, until, zone_resolution=7)
    finally:
        store.close()


def test_every_report_gives_the_known_answers_for_pipeline_written_history(
    fleet_env: FleetEnv, worker: Callable[..., WorkerHandle], tmp_path: Path
) -> None:
    settings = fleet_env.settings
    base = (int(time.time() * 1000) // HOUR) * HOUR - 3 * HOUR
    data = scenario(base)
    # The reports must give the known answers for exactly this input: the decision agent's own
    # re-plans (new plan versions, re-attempted stops) are tested in test_decision_pipeline.
    no_triggers = {f"FLEET_DECISION_ON_{t}": "false" for t in DECISION_TRIGGERS}
    handle = worker(fleet_env, **no_triggers)
    publish(fleet_env, data)
    expected_counts = {
        "route_plans": 3, "events": 7, "etas": 6, "pings": 5, "alerts": 4, "dead_letters": 3,
    }  # fmt: skip
    landed = wait_until(lambda: counts(settings) == expected_counts, timeout=120)
    assert landed, (counts(settings), handle.tail())

    zone_a, zone_b = (h3.latlng_to_cell(*at, 7) for at in (CITY, SUBURB))
    period = (base, base + 3 * HOUR)
    completion = lambda key, value, planned, delivered, failed, pct: {  # noqa: E731
        key: value, "planned": planned, "delivered": delivered, "failed": failed,
        "completion_pct": pct,
    }  # fmt: skip
    assert report(settings, "completion_by_driver", *period) == [
        completion("driver_id", "drv-a", 3, 1, 1, 33.3),
        completion("driver_id", "drv-b", 2, 2, 0, 100.0),
    ]
    assert report(settings, "completion_by_zone", *period) == sorted(
        [completion("zone", zone_a, 4, 3, 1, 75.0), completion("zone", zone_b, 1, 0, 0, 0.0)],
        key=lambda r: r["zone"],
    )
    hour0 = time.gmtime(base / 1000).tm_hour
    assert report(settings, "completion_by_hour_of_day", *period) == sorted(
        [
            completion("hour_of_day", hour0, 3, 2, 1, 66.7),
            completion("hour_of_day", (hour0 + 1) % 24, 2, 1, 0, 50.0),
        ],
        key=lambda r: r["hour_of_day"],
    )
    assert report(settings, "pings_per_minute", *period) == [
        {"minute_ms": base + 5 * MIN, "pings": 3, "drivers": 2},
        {"minute_ms": base + 6 * MIN, "pings": 2, "drivers": 1},
    ]
    day_before = base - 24 * HOUR
    assert report(settings, "alerts_per_hour_by_kind", day_before, day_before + 3 * HOUR) == [
        {"hour_ms": day_before, "kind": "off_route", "opened": 1},
        {"hour_ms": day_before, "kind": "stale", "opened": 1},
        {"hour_ms": day_before + HOUR, "kind": "off_route", "opened": 1},
    ]
    letters = report(settings, "dead_letters_by_reason", 0, 2**62)
    assert [r for r in letters if r["source_topic"] == fleet_env.topic(PINGS)] == [
        {"source_topic": fleet_env.topic(PINGS), "reason": "lat_out_of_range", "dead_letters": 2},
        {"source_topic": fleet_env.topic(PINGS), "reason": "invalid_json", "dead_letters": 1},
    ]
    assert report(settings, "eta_error_by_hour_and_zone", *period) == [
        {"hour_ms": base, "zone": zone_a, "predictions": 4, "mae_s": 67.5, "bias_s": 7.5,
         "coverage_pct": 75.0},
        {"hour_ms": base + HOUR, "zone": zone_a, "predictions": 1, "mae_s": 300.0,
         "bias_s": -300.0, "coverage_pct": 0.0},
    ]  # fmt: skip
    assert set(REPORTS) == {
        "completion_by_driver", "completion_by_zone", "completion_by_hour_of_day",
        "pings_per_minute", "alerts_per_hour_by_kind", "dead_letters_by_reason",
        "eta_error_by_hour_and_zone",
    }  # fmt: skip

    # The CLI reads what the running worker wrote, through the worker.
    out = fleet_history(fleet_env, "sql", "SELECT max(version) AS v FROM fleet.route_plans")
    assert json.loads(out) == {"v": 2}
    target = tmp_path / "pings.parquet"
    fleet_history(fleet_env, "export", "pings", "--since", str(base), "--to", str(target))
    exported = pq.read_table(target).to_pylist()
    assert sorted((r["driver_id"], r["ts_ms"], r["seq"]) for r in exported) == sorted(
        (p.driver_id, p.ts_ms, -1 if p.seq is None else p.seq) for p in data["pings"]
    )
    assert {(r["lat"], r["lon"]) for r in exported} == {CITY}
