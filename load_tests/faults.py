"""Fault scenario (issue 9): a world of drivers whose end state follows from the input, and
the long run of it (``python -m load_tests.faults``).

The short version is ``tests/integration/test_faults.py`` (in ``make test``). The long one
starts a worker on topics of its own, runs rounds of fresh drivers while SIGKILLing the
worker during pings, events and commands and flushing Redis (only on a Redis DB other than
0), then keeps the worker up for ``--uptime-min`` minutes (default 15) with traffic and
checks that a last round of plans, events and commands, without kills, is applied in full.
Every check compares with values computed from the input. Prints one line per round.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
import redis

from fleet.clock import now_ms
from fleet.live import ALERTS_OPEN_KEY
from fleet.records import DeliveryEvent, DispatchCommand, Ping, RoutePlan, encode
from fleet.settings import Settings, get_settings
from fleet.topics import ALERTS, COMMANDS, EVENTS, PINGS, ROUTE_UPDATES, ROUTES, topic_name
from fleet.tracking.alerts import alert_id
from fleet.tracking.tracker import failed_delivery_key
from load_tests.scenarios import build_plan

PINGS_EACH = 150
# Decisions would re-plan a failed stop: the fault checks cover tracking alone. The drivers'
# pings end minutes before the checks: a stale alert would open at a time set by the clock,
# not by the input, so the silence that opens it is set beyond the run.
QUIET_DECISIONS = {
    **{
        f"FLEET_DECISION_ON_{cause}": "false"
        for cause in ("FAILED_DELIVERY", "BEHIND_SCHEDULE", "ETA_WINDOW_RISK", "OFF_ROUTE", "STALE")
    },
    "FLEET_STALE_AFTER_S": "86400",
}
Messages = list[tuple[bytes, bytes]]


class World:
    """The input of one round and what it implies."""

    def __init__(self, run: str, drivers: int) -> None:
        self.run = run
        self.t0 = now_ms() - 600_000
        self.drivers = [f"fresh-{run}-{d}" for d in range(drivers)]
        self.plans: dict[str, RoutePlan] = {
            driver: build_plan(f"rt-{run}-{d}", driver, n_stops=4, start_ms=self.t0)
            for d, driver in enumerate(self.drivers)
        }
        self.last_ping: dict[str, Ping] = {}

    def plan_messages(self) -> Messages:
        return [(p.route_id.encode(), encode(p)) for p in self.plans.values()]

    def pings(self) -> Messages:
        out = []
        for driver, plan in self.plans.items():
            lat, lon = plan.path[0] if plan.path else (52.5, 13.4)
            for k in range(PINGS_EACH):
                ping = Ping(driver, self.t0 + k * 100, lat + k * 1e-6, lon, seq=k + 1)
                out.append((driver.encode(), encode(ping)))
                self.last_ping[driver] = ping
        return out

    def event(self, driver: str, kind: str, stop: str | None, at: int) -> tuple[bytes, bytes]:
        plan = self.plans[driver]
        event = DeliveryEvent(
            f"ev-{driver}-{kind}-{stop}", driver, kind, self.t0 + at,  # type: ignore[arg-type]
            route_id=plan.route_id, stop_id=stop, reason="not_home" if kind == "failed" else None,
        )  # fmt: skip
        return driver.encode(), encode(event)

    def shifts(self) -> Messages:
        return [self.event(d, "shift_start", None, 0) for d in self.drivers]

    def outcomes(self) -> Messages:
        out = [self.event(d, "delivered", "st-1", 60_000) for d in self.drivers]
        return out + [self.event(d, "failed", "st-2", 70_000) for d in self.drivers]

    def last_outcomes(self) -> Messages:
        return [self.event(d, "delivered", "st-3", 90_000) for d in self.drivers]

    def command_id(self, driver: str) -> str:
        return f"cmd-{driver}"

    def commands(self) -> Messages:
        out = []
        for driver, plan in self.plans.items():
            cmd = DispatchCommand(
                self.command_id(driver), plan.route_id, "remove_stop", self.t0 + 80_000,
                stop_id="st-4",
            )  # fmt: skip
            out.append((plan.route_id.encode(), encode(cmd)))
        return out

    def open_alert_ids(self) -> dict[str, str]:
        """Driver -> the id of its one open alert (the failed stop st-2)."""
        return {
            driver: alert_id(driver, failed_delivery_key(plan.route_id, "st-2"), self.t0 + 70_000)
            for driver, plan in self.plans.items()
        }

    def route_updates(self) -> set[tuple[str, int, str]]:
        return {(p.route_id, 2, f"command:{self.command_id(d)}") for d, p in self.plans.items()}


def routed(r: Any, world: World) -> bool:
    """Every plan of the world is tracked under its driver (``r``: decode_responses=True)."""
    return all(
        r.hget(f"fleet:driver:{p.driver_id}", "route_id") == p.route_id
        for p in world.plans.values()
    )


def read_model(r: Any, world: World) -> dict[str, Any]:
    """What the dashboards read for this world's drivers (``r``: decode_responses=True)."""
    drivers: dict[str, dict[str, Any]] = {}
    fields = ("route_id", "stops_total", "stops_delivered", "stops_failed", "next_stop_id")
    for driver in world.drivers:
        h = r.hgetall(f"fleet:driver:{driver}")
        drivers[driver] = {k: h.get(k) for k in (*fields, "ts_ms", "seq")}
        drivers[driver]["pos_ts"] = r.zscore("fleet:pos:ts", driver)
    alerts = {}
    for k, v in r.hgetall(ALERTS_OPEN_KEY).items():
        driver = json.loads(v)["driver_id"]
        if driver in world.plans:
            alerts[driver] = k
    completion: dict[str, str] = {}
    for key in r.scan_iter("fleet:completion:zone:*"):
        for member, state in r.hgetall(key).items():
            if member.startswith(f"rt-{world.run}-"):
                completion[member] = state
    return {"drivers": drivers, "open_alerts": alerts, "completion": completion}


def expected_read_model(world: World) -> dict[str, Any]:
    """The read model the input implies once every message is applied."""
    drivers = {}
    completion = {}
    for driver, plan in world.plans.items():
        last = world.last_ping[driver]
        drivers[driver] = {
            "route_id": plan.route_id, "stops_total": "3", "stops_delivered": "2",
            "stops_failed": "1", "next_stop_id": "", "ts_ms": str(last.ts_ms),
            "seq": str(last.seq), "pos_ts": float(last.ts_ms),
        }  # fmt: skip
        for stop, state in (("st-1", "delivered"), ("st-2", "failed"), ("st-3", "delivered")):
            completion[f"{plan.route_id}:{stop}"] = state
    return {"drivers": drivers, "open_alerts": world.open_alert_ids(), "completion": completion}


def differences(got: dict[str, Any], want: dict[str, Any]) -> dict[str, Any]:
    """Entries of the read model that differ from the expected ones (for failure messages)."""
    out: dict[str, Any] = {}
    for part in want:
        g, w = got.get(part, {}), want[part]
        out.update({f"{part}:{k}": (g.get(k), w.get(k)) for k in {*g, *w} if g.get(k) != w.get(k)})
    return out


def alert_changes(messages: list[tuple[bytes | None, bytes | None]], world: World) -> Counter:
    """(alert_id, state) -> count, for this world's drivers."""
    alerts = [msgspec.json.decode(v) for _k, v in messages if v]
    return Counter((a["alert_id"], a["state"]) for a in alerts if a["driver_id"] in world.plans)


def expected_alert_changes(world: World) -> Counter:
    return Counter((i, "open") for i in world.open_alert_ids().values())


def route_update_keys(messages: list[tuple[bytes | None, bytes | None]], world: World) -> set:
    updates = [msgspec.json.decode(v) for _k, v in messages if v]
    return {
        (u["route_id"], u["version"], u["caused_by"])
        for u in updates
        if u["driver_id"] in world.plans
    }


# --- the long run ---------------------------------------------------------------------------


def _wait(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.5)
    return bool(predicate())


def private_run(
    name: str, run: str, extra: dict[str, str]
) -> tuple[dict[str, str], Settings, Path]:
    """Environment, settings and directory of a worker on topics of its own (created)."""
    from fleet import services
    from load_tests.harness import free_port

    base = get_settings()
    var = Path(tempfile.mkdtemp(prefix=f"fleet-{name}-"))
    env = {
        **os.environ, **QUIET_DECISIONS, "FLEET_TOPIC_PREFIX": f"{name[0]}{run}.",
        "FLEET_APP_ID": f"{name}-{run}", "FLEET_VAR_DIR": str(var / "var"),
        "FLEET_METRICS_PORT": str(free_port()), "FLEET_WORKER_WEB_PORT": str(free_port()),
        **extra,
    }  # fmt: skip
    settings = Settings(
        topic_prefix=env["FLEET_TOPIC_PREFIX"], app_id=env["FLEET_APP_ID"],
        var_dir=Path(env["FLEET_VAR_DIR"]), kafka_bootstrap=base.kafka_bootstrap,
        redis_url=base.redis_url, partitions=base.partitions,
    )  # fmt: skip
    services.ensure_topics(settings)
    return env, settings, var


def main(argv: list[str] | None = None) -> int:
    from confluent_kafka import Producer

    from fleet import services
    from load_tests.harness import WorkerProcess
    from tests.conftest import consume_all  # the same reader as the tests

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drivers", type=int, default=50, help="drivers per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds with kills and a flush")
    parser.add_argument("--uptime-min", type=float, default=15.0, help="worker uptime to check")
    args = parser.parse_args(argv)

    base = get_settings()
    run = uuid.uuid4().hex[:8]
    env, settings, var = private_run("faults", run, {"FLEET_READ_MODEL_CHECK_S": "1"})
    producer = Producer(
        {"bootstrap.servers": base.kafka_bootstrap, "partitioner": "murmur2_random"}
    )
    r = redis.Redis.from_url(base.redis_url, decode_responses=True)
    db = r.connection_pool.connection_kwargs.get("db", 0)
    worker = WorkerProcess(env, var / "worker.log", ready_s=180).start()
    ok = True

    def send(topic: str, messages: Messages) -> None:
        for key, value in messages:
            producer.produce(topic_name(settings, topic), key=key, value=value)
            producer.poll(0)
        producer.flush(30)

    def check(world: World, label: str, began: float) -> bool:
        want = expected_read_model(world)
        good = _wait(lambda: read_model(r, world) == want, 300)
        alerts = alert_changes(
            consume_all(base.kafka_bootstrap, topic_name(settings, ALERTS)), world
        )
        updates = route_update_keys(
            consume_all(base.kafka_bootstrap, topic_name(settings, ROUTE_UPDATES)), world
        )
        alerts_ok = alerts == expected_alert_changes(world)
        updates_ok = updates == world.route_updates()
        print(
            f"{label}: read model {'ok' if good else differences(read_model(r, world), want)}; "
            f"alerts {'ok' if alerts_ok else dict(alerts)}; route updates "
            f"{'ok' if updates_ok else sorted(updates)}; {time.monotonic() - began:.0f} s",
            flush=True,
        )
        return good and alerts_ok and updates_ok

    worlds: list[World] = []
    try:
        for n in range(args.rounds):
            began = time.monotonic()
            world = World(f"{run}{n}", args.drivers)
            worlds.append(world)
            send(ROUTES, world.plan_messages())
            send(EVENTS, world.shifts())
            # A command before its route's plan is dead-lettered unknown_route (the contract):
            # the kills start once every plan is tracked.
            _wait(lambda w=world: routed(r, w), 300)  # type: ignore[misc]
            for topic, messages in (
                (PINGS, world.pings()), (EVENTS, world.outcomes()), (COMMANDS, world.commands()),
            ):  # fmt: skip
                send(topic, messages)
                time.sleep(0.2 + 0.3 * n)  # another point of the processing each round
                worker.kill()
                worker.start()
            send(EVENTS, world.last_outcomes())
            ok &= check(world, f"round {n} (3 SIGKILLs)", began)
            if db != 0:
                r.flushdb()
                began = time.monotonic()
                for w in worlds:
                    ok &= check(w, f"round {n} after FLUSHDB, world {w.run}", began)
        up_since = time.monotonic()
        filler = 0
        while time.monotonic() - up_since < args.uptime_min * 60:
            # Traffic while the worker stays up: fresh drivers' pings every few seconds.
            world = World(f"{run}u{filler}", 5)
            send(PINGS, world.pings())
            filler += 1
            time.sleep(10)
        began = time.monotonic()
        world = World(f"{run}last", args.drivers)
        send(ROUTES, world.plan_messages())
        send(EVENTS, world.shifts())
        _wait(lambda: routed(r, world), 300)
        send(PINGS, world.pings())
        send(EVENTS, world.outcomes())
        send(COMMANDS, world.commands())
        send(EVENTS, world.last_outcomes())
        ok &= check(world, f"after {args.uptime_min:g} min up (no kill)", began)
    finally:
        worker.kill()
        services.delete_topics(base.kafka_bootstrap, (settings.topic_prefix, f"{settings.app_id}-"))
    print("faults:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
