"""The ETA agent end to end: train -> promote -> a running worker publishes with the model,
switches to a newly promoted one without restart, sets eta_next_ms, raises and resolves
eta_window_risk, and history joins its predictions to the actual arrivals."""

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
from fleet.records import Alert, DeliveryEvent, EtaUpdate, RoutePlan, encode
from fleet.topics import ALERTS, ETAS, EVENTS, PINGS, ROUTES
from load_tests.history_sim import DAY_MS, WorldParams, write_days
from load_tests.scenarios import DriverScenario, build_plan, simulate
from tests.conftest import consume_all, produce, wait_until

pytestmark = pytest.mark.integration

START_MS = 1_791_158_400_000  # 2026-10-05 00:00 UTC: simulated history to train on


def _fleet(env: dict[str, str], *args: str) -> Any:
    """`fleet eta ... --json` in the test's environment; its JSON output."""
    done = subprocess.run([sys.executable, "-m", "fleet.cli", "eta", *args, "--json"], env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def _train_and_promote(env: dict[str, str], first_day: int) -> str:
    """Train on 7 simulated days, evaluate on the 2 after, promote (the checks must pass)."""
    since, until = START_MS + first_day * DAY_MS, START_MS + (first_day + 7) * DAY_MS
    version = str(_fleet(env, "train", "--since", str(since), "--until", str(until))["version"])
    _fleet(env, "evaluate", version, "--since", str(until), "--until", str(until + 2 * DAY_MS))
    assert _fleet(env, "promote", version)["promoted"] is True
    return version


def _send(env: Any, base: str, items: list[tuple[str, msgspec.Struct]]) -> None:
    produce(env["FLEET_KAFKA_BOOTSTRAP"], env.topic(base),
            [(key.encode(), encode(value)) for key, value in items])  # fmt: skip


def _etas(env: Any, route_id: str) -> list[EtaUpdate]:
    raw = consume_all(env["FLEET_KAFKA_BOOTSTRAP"], env.topic(ETAS), 10)
    updates = [msgspec.json.decode(v, type=EtaUpdate) for _, v in raw if v]
    return [u for u in updates if u.route_id == route_id]


def _risk_alerts(env: Any, driver_id: str) -> list[Alert]:
    raw = consume_all(env["FLEET_KAFKA_BOOTSTRAP"], env.topic(ALERTS), 10)
    alerts = [msgspec.json.decode(v, type=Alert) for _, v in raw if v]
    return [a for a in alerts if a.driver_id == driver_id and a.kind == "eta_window_risk"]


def _live_plan(run: str) -> RoutePlan:
    """A route that started 10 minutes ago; its first stop's window closed 2 min after."""
    start = now_ms() - 10 * 60_000
    plan = build_plan(f"rt-{run}", f"drv-{run}", origin=(52.52, 13.40), n_stops=6,
                      start_ms=start)  # fmt: skip
    first = msgspec.structs.replace(plan.stops[0], window_end_ms=start + 2 * 60_000)
    return msgspec.structs.replace(plan, stops=[first, *plan.stops[1:]])


def test_worker_publishes_etas_and_follows_a_newly_promoted_model(fleet_env, worker) -> None:
    write_days(fleet_env.settings, WorldParams(drivers=16), START_MS, 10)
    first = _train_and_promote(fleet_env, 0)
    worker(fleet_env)

    run = uuid.uuid4().hex[:8]
    plan = _live_plan(run)
    driver = plan.driver_id
    _send(fleet_env, ROUTES, [(plan.route_id, plan)])
    r = redis.Redis.from_url(fleet_env["FLEET_REDIS_URL"], decode_responses=True)
    assert wait_until(lambda: r.hget(f"fleet:driver:{driver}", "route_id") == plan.route_id, 60)
    sim = simulate(DriverScenario(driver, plan, sigma_m=5.0, ping_every_s=5.0, seed=1))
    # Three minutes of driving: on the way to the first stop, past its window's end.
    pings = [p for p in sim.pings if p.ts_ms < plan.shift_start_ms + 3 * 60_000]  # type: ignore[operator]
    _send(fleet_env, PINGS, [(driver, p) for p in pings])

    updates = wait_until(lambda: [u for u in _etas(fleet_env, plan.route_id)
                                  if u.model_version == first], 90)  # fmt: skip
    assert updates, "no EtaUpdate with the promoted model"
    latest = updates[-1]
    assert [s.stop_id for s in latest.stops] == [s.stop_id for s in plan.stops]
    assert all(s.p10_ms <= s.p50_ms <= s.p90_ms for s in latest.stops)
    assert latest.stops[0].p50_ms >= pings[-1].ts_ms  # anchored at the latest fix
    next_eta = wait_until(lambda: r.hget(f"fleet:driver:{driver}", "eta_next_ms"), 30)
    assert next_eta is not None and int(next_eta) > 0
    opened = wait_until(lambda: [a for a in _risk_alerts(fleet_env, driver) if a.state == "open"])
    assert len(opened) == 1 and opened[0].details["stop_id"] == plan.stops[0].stop_id

    second = _train_and_promote(fleet_env, 1)  # while the worker runs
    assert second != first
    switched = wait_until(lambda: [u for u in _etas(fleet_env, plan.route_id)
                                   if u.model_version == second], 90)  # fmt: skip
    assert switched, "the worker did not switch to the newly promoted model"

    arrived = now_ms()
    stop_id = plan.stops[0].stop_id
    event = DeliveryEvent(f"ev-{run}-1", driver, "arrived", arrived, route_id=plan.route_id,
                          stop_id=stop_id)  # fmt: skip
    _send(fleet_env, EVENTS, [(driver, event)])
    resolved = wait_until(lambda: [a for a in _risk_alerts(fleet_env, driver)
                                   if a.state == "resolved"], 60)  # fmt: skip
    assert [a.alert_id for a in resolved] == [opened[0].alert_id]
    assert len([a for a in _risk_alerts(fleet_env, driver) if a.state == "open"]) == 1

    def joined() -> list[dict[str, Any]]:
        rows = _fleet(fleet_env, "accuracy", "--since", str(plan.shift_start_ms),
                      "--by", "model_version,horizon_min")  # fmt: skip
        return rows if {row["model_version"] for row in rows} >= {first, second} else []

    rows = wait_until(joined, 60, interval=2.0)
    assert rows, "predictions of both models joined to the arrival in history"
    assert all(row["predictions"] >= 1 and row["mae_s"] >= 0 for row in rows)
