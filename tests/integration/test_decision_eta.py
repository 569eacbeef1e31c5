"""The eta_window_risk trigger end to end: a promoted ETA model predicts a window miss, the
alert opens, and the decision worker re-plans the route (RouteUpdate, cause eta_window_risk).

Real Kafka, Redis, chDB history and a real `fleet worker`; the model is trained on simulated
days and promoted through the CLI, as in tests/integration/test_eta_stream.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from typing import Any

import msgspec
import pytest
import redis

from fleet.clock import now_ms
from fleet.records import Alert, RouteUpdate, encode
from fleet.topics import ALERTS, PINGS, ROUTE_UPDATES, ROUTES
from load_tests.history_sim import DAY_MS, WorldParams, write_days
from load_tests.scenarios import DriverScenario, build_plan, simulate
from tests.conftest import consume_all, produce, wait_until

pytestmark = pytest.mark.integration

START_MS = 1_791_158_400_000  # 2026-10-05 00:00 UTC: simulated history to train on
ONLY_ETA_RISK = {
    "FLEET_DECISION_TIME_LIMIT_S": 0.5,
    "FLEET_DECISION_ON_BEHIND_SCHEDULE": "false",
    "FLEET_DECISION_ON_OFF_ROUTE": "false",
    "FLEET_DECISION_ON_STALE": "false",
    "FLEET_DECISION_ON_FAILED_DELIVERY": "false",
    "FLEET_DECISION_ON_ETA_WINDOW_RISK": "true",
    "FLEET_DECISION_DEBOUNCE_S": 0,
    "FLEET_DECISION_COOLDOWN_S": 0,
    "FLEET_DECISION_MARGIN_S": 0,
    "FLEET_DECISION_MARGIN_RATIO": 0,
}


def _eta_cli(env: dict[str, str], *args: str) -> Any:
    done = subprocess.run([sys.executable, "-m", "fleet.cli", "eta", *args, "--json"], env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def _read(env: Any, base: str, kind: type[Any]) -> list[Any]:
    raw = consume_all(env["FLEET_KAFKA_BOOTSTRAP"], env.topic(base), 10)
    return [msgspec.json.decode(v, type=kind) for _, v in raw if v]


def test_an_eta_window_risk_alert_replans_the_route(fleet_env, worker) -> None:
    write_days(fleet_env.settings, WorldParams(drivers=16), START_MS, 9)
    until = START_MS + 7 * DAY_MS
    version = str(_eta_cli(fleet_env, "train", "--since", str(START_MS), "--until",
                           str(until))["version"])  # fmt: skip
    _eta_cli(fleet_env, "evaluate", version, "--since", str(until), "--until",
             str(until + 2 * DAY_MS))  # fmt: skip
    assert _eta_cli(fleet_env, "promote", version)["promoted"] is True
    worker(fleet_env, **ONLY_ETA_RISK)

    # A route that started 10 minutes ago, its first stop's window closing 2 minutes after
    # the start, the later stops zig-zagging (a re-plan gains).
    run = uuid.uuid4().hex[:8]
    start = now_ms() - 10 * 60_000
    plan = build_plan(f"rt-{run}", f"drv-{run}", origin=(52.52, 13.40), n_stops=8,
                      start_ms=start)  # fmt: skip
    first = msgspec.structs.replace(plan.stops[0], window_end_ms=start + 2 * 60_000)
    rest = plan.stops[1:]
    zigzag = [*rest[1::2], *rest[0::2]]
    driven = msgspec.structs.replace(plan, stops=[first, *rest])  # the pings drive this
    plan = msgspec.structs.replace(plan, stops=[first, *zigzag], path=None)
    produce(fleet_env["FLEET_KAFKA_BOOTSTRAP"], fleet_env.topic(ROUTES),
            [(plan.route_id.encode(), encode(plan))])  # fmt: skip
    r = redis.Redis.from_url(fleet_env["FLEET_REDIS_URL"], decode_responses=True)
    driver = plan.driver_id
    assert wait_until(lambda: r.hget(f"fleet:driver:{driver}", "route_id") == plan.route_id, 60)
    sim = simulate(DriverScenario(driver, driven, sigma_m=5.0, ping_every_s=5.0, seed=1))
    pings = [p for p in sim.pings if p.ts_ms < plan.shift_start_ms + 3 * 60_000]  # type: ignore[operator]
    produce(fleet_env["FLEET_KAFKA_BOOTSTRAP"], fleet_env.topic(PINGS),
            [(driver.encode(), encode(p)) for p in pings])  # fmt: skip

    def risk() -> list[Alert]:
        alerts = _read(fleet_env, ALERTS, Alert)
        mine = [a for a in alerts if a.driver_id == driver and a.kind == "eta_window_risk"]
        return [a for a in mine if a.state == "open"]

    opened = wait_until(risk, 120, 1.0)
    assert opened, "no eta_window_risk alert opened"

    def replans() -> list[RouteUpdate]:
        return [u for u in _read(fleet_env, ROUTE_UPDATES, RouteUpdate)
                if u.route_id == plan.route_id and u.cause == "eta_window_risk"]  # fmt: skip

    updates = wait_until(replans, 120, 1.0)
    assert updates, "no RouteUpdate for the eta_window_risk alert"
    update = updates[0]
    assert update.caused_by == f"alert:{opened[0].alert_id}"
    rationale = update.rationale or {}
    assert rationale["objective_after"] < rationale["objective_before"]
    assert {s.stop_id for s in update.plan.stops} <= {s.stop_id for s in plan.stops}
    assert update.plan.stops[0].stop_id == first.stop_id  # the stop being approached stays
