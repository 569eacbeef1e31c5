"""Simulated drivers through the real pipeline (Kafka, a `fleet worker`, Redis); their alerts."""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import msgspec
import redis
from confluent_kafka import Consumer, Producer

from fleet import services
from fleet.clients import confluent_config, redis_client
from fleet.clock import now_ms
from fleet.records import Alert, DeliveryEvent, Ping, encode
from fleet.settings import Settings
from fleet.topics import ALERTS, EVENTS, PINGS, ROUTES, topic_name
from load_tests.harness import WorkerProcess, free_port
from load_tests.scenarios import SimulatedDriver

READY_S = 120.0
QUIET_S = 10.0  # alerts topic silent this long after the last position landed: done


@contextmanager
def isolated_worker(base: Settings) -> Iterator[tuple[Settings, WorkerProcess]]:
    """A `fleet worker` on its own topics and consumer group; killed on exit."""
    run = uuid.uuid4().hex[:8]
    var = Path(tempfile.mkdtemp(prefix="score-"))
    env = {
        **os.environ,
        "FLEET_TOPIC_PREFIX": f"score{run}.",
        "FLEET_APP_ID": f"score-{run}",
        "FLEET_VAR_DIR": str(var),
        "FLEET_METRICS_PORT": str(free_port()),
        "FLEET_WORKER_WEB_PORT": str(free_port()),
    }
    settings = base.model_copy(
        update={"topic_prefix": env["FLEET_TOPIC_PREFIX"], "app_id": env["FLEET_APP_ID"]}
    )
    services.ensure_topics(settings)
    worker = WorkerProcess(env, var / "worker.log", ready_s=READY_S).start()
    try:
        yield settings, worker
    finally:
        worker.kill()


def _produce(settings: Settings, topic: str, messages: list[tuple[str, bytes]]) -> None:
    producer = Producer(
        confluent_config(settings, {"partitioner": "murmur2_random", "linger.ms": 20,
                                    "log_level": 3})
    )  # fmt: skip
    for key, value in messages:
        while True:
            try:
                producer.produce(topic, key=key.encode(), value=value)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    producer.flush(60)


def _wait_for(
    r: redis.Redis,
    field: str,
    expected: dict[str, str],
    timeout_s: float,
    worker: WorkerProcess,
    required: bool = True,
) -> None:
    """Until every fleet:driver:{id} hash has ``field`` at the expected value.

    For ``ts_ms`` a value within a minute is enough: the ingest may hold back a last fix
    that looks like a jump.
    """
    deadline = time.monotonic() + timeout_s
    pending = dict(expected)
    while pending and time.monotonic() < deadline:
        worker.ensure_alive()
        pipe = r.pipeline(transaction=False)
        ids = list(pending)
        for d in ids:
            pipe.hget(f"fleet:driver:{d}", field)
        for d, value in zip(ids, pipe.execute(), strict=True):
            if value is not None and _reached(field, value.decode(), pending[d]):
                del pending[d]
        time.sleep(0.5)
    if pending and required:
        raise RuntimeError(f"{len(pending)} drivers never reached {field}")


def _reached(field: str, value: str, expected: str) -> bool:
    if field == "ts_ms":
        return int(value) >= int(expected) - 60_000
    return value == expected


def _read_alerts(settings: Settings) -> list[Alert]:
    consumer = Consumer(
        confluent_config(settings, {"group.id": f"score-{uuid.uuid4().hex}",
                                    "auto.offset.reset": "earliest", "enable.auto.commit": False,
                                    "log_level": 3})
    )  # fmt: skip
    consumer.subscribe([topic_name(settings, ALERTS)])
    alerts, quiet = [], time.monotonic()
    try:
        while time.monotonic() - quiet < QUIET_S:
            msg = consumer.poll(0.5)
            value = msg.value() if msg is not None and not msg.error() else None
            if not value:
                continue
            alerts.append(msgspec.json.decode(value, type=Alert))
            quiet = time.monotonic()
    finally:
        consumer.close()
    return alerts


@dataclass(slots=True)
class PipelineRun:
    """Alerts per driver, and when each silent driver's last ping was sent (wall clock)."""

    alerts: dict[str, list[Alert]]
    silent_since_ms: dict[str, int]


def _go_silent(settings: Settings, tag: str, n: int) -> dict[str, int]:
    """``n`` drivers start a shift, send one ping now, then nothing: they must go stale.

    The silence is counted from before the ping was sent, so the delay is not flattered.
    """
    t = now_ms()
    drivers = [f"drv-{tag}silent-{i}" for i in range(n)]
    starts = [(d, encode(DeliveryEvent(f"ev-{d}", d, "shift_start", t))) for d in drivers]
    _produce(settings, topic_name(settings, EVENTS), starts)
    t = now_ms()
    _produce(
        settings,
        topic_name(settings, PINGS),
        [(d, encode(Ping(d, t, 52.5, 13.4))) for d in drivers],
    )
    return dict.fromkeys(drivers, t)


def run_through_pipeline(
    sims: list[SimulatedDriver], base: Settings, tag: str, silent: int = 50
) -> PipelineRun:
    """Plans, then every ping in time order, through Kafka and a worker; alerts per driver.

    Delivery events are not sent: at replay speed they would overtake the pings on their
    own topic and end routes early, so routes are scored for off_route only. Then
    ``silent`` drivers go quiet in real time for the stale timer of the worker.
    """
    r = redis_client(base)
    with isolated_worker(base) as (settings, worker):
        plans = [(s.scenario.plan.route_id, encode(s.scenario.plan)) for s in sims]
        _produce(settings, topic_name(settings, ROUTES), plans)
        routes = {s.scenario.driver_id: s.scenario.plan.route_id for s in sims}
        _wait_for(r, "route_id", routes, 120, worker)
        pings = sorted((p for s in sims for p in s.pings), key=lambda p: p.ts_ms)
        started = time.monotonic()
        _produce(settings, topic_name(settings, PINGS), [(p.driver_id, encode(p)) for p in pings])
        last = {s.scenario.driver_id: str(s.pings[-1].ts_ms) for s in sims if s.pings}
        _wait_for(r, "ts_ms", last, 1800, worker)
        print(f"pipeline: {len(pings)} pings in {time.monotonic() - started:.1f} s")
        silent_since = _go_silent(settings, tag, silent)
        _wait_for(r, "status", dict.fromkeys(silent_since, "stale"), 600, worker, required=False)
        print(f"worker restarts: {worker.restarts}")
        alerts = _read_alerts(settings)
    by_driver: dict[str, list[Alert]] = {s.scenario.driver_id: [] for s in sims}
    for alert in alerts:
        by_driver.setdefault(alert.driver_id, []).append(alert)
    return PipelineRun(by_driver, silent_since)
