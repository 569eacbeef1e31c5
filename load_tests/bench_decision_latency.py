"""Decision latency through the real pipeline (Kafka, a `fleet worker`, Redis).

python -m load_tests.bench_decision_latency [--routes 8] [--stops 100] [--orders 20] [--failures 20]
    [--edits 100] [--budget 1.0]

Routes of ``--stops`` stops each; their drivers start at the depot. Measured from the moment
the input is produced to the moment its RouteUpdate is read back from fleet.route-updates:
(1) an order -> its assignment (cause ``assign``), one order at a time; (2) a failed
delivery on a route -> its re-plan (cause ``failed_delivery``), one at a time; (3)
dispatcher edits (``add_stop``) -> their RouteUpdate, while orders keep the solver busy.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import msgspec
import numpy as np
import redis
from confluent_kafka import Consumer, Producer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from fleet import services
from fleet.clock import now_ms
from fleet.records import DeliveryEvent, DispatchCommand, Order, Ping, RouteUpdate, Stop, encode
from fleet.settings import Settings
from fleet.topics import COMMANDS, EVENTS, ORDERS, PINGS, ROUTE_UPDATES, ROUTES, topic_name
from load_tests.harness import WorkerProcess, free_port
from load_tests.scenarios import build_plan, offset


@contextmanager
def decision_worker(base: Settings, budget_s: float) -> Iterator[tuple[Settings, WorkerProcess]]:
    """A worker on its own topics with the decision agent; topics deleted on exit."""
    run = uuid.uuid4().hex[:8]
    var = Path(tempfile.mkdtemp(prefix="decision-"))
    env = {
        **os.environ,
        "FLEET_TOPIC_PREFIX": f"dec{run}.",
        "FLEET_APP_ID": f"dec-{run}",
        "FLEET_VAR_DIR": str(var),
        "FLEET_METRICS_PORT": str(free_port()),
        "FLEET_WORKER_WEB_PORT": str(free_port()),
        "FLEET_DECISION_TIME_LIMIT_S": str(budget_s),
        "FLEET_DECISION_RETRY_AFTER_S": "300",
        "FLEET_DECISION_ON_BEHIND_SCHEDULE": "false",
        "FLEET_DECISION_ON_OFF_ROUTE": "false",
        "FLEET_DECISION_ON_STALE": "false",
    }
    settings = base.model_copy(
        update={"topic_prefix": env["FLEET_TOPIC_PREFIX"], "app_id": env["FLEET_APP_ID"]}
    )
    services.ensure_topics(settings)
    worker = WorkerProcess(env, var / "worker.log", ready_s=180.0).start()
    try:
        yield settings, worker
    finally:
        worker.kill()
        services.delete_topics(settings.kafka_bootstrap, (env["FLEET_TOPIC_PREFIX"], f"dec-{run}-"))


class UpdateWatch:
    """Reads fleet.route-updates on a thread; remembers when each (cause, caused_by) arrived."""

    def __init__(self, settings: Settings) -> None:
        self.seen: dict[tuple[str, str], float] = {}
        self._stop = threading.Event()
        self._consumer = Consumer(
            {
                "bootstrap.servers": settings.kafka_bootstrap,
                "group.id": f"watch-{uuid.uuid4()}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "log_level": 3,
            }
        )
        self._consumer.subscribe([topic_name(settings, ROUTE_UPDATES)])
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        decoder = msgspec.json.Decoder(RouteUpdate)
        while not self._stop.is_set():
            msg = self._consumer.poll(0.05)
            value = msg.value() if msg is not None and not msg.error() else None
            if value is None:
                continue
            update = decoder.decode(value)
            self.seen.setdefault((update.cause, update.caused_by or ""), time.perf_counter())

    def wait(self, cause: str, caused_by: str, timeout: float = 20.0) -> float | None:
        """When the update arrived (perf_counter), or None after ``timeout``."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            at = self.seen.get((cause, caused_by))
            if at is not None:
                return at
            time.sleep(0.005)
        return None

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._consumer.close()


def _producer(settings: Settings) -> Producer:
    return Producer({"bootstrap.servers": settings.kafka_bootstrap, "linger.ms": 0, "log_level": 3})


def _send(producer: Producer, settings: Settings, base: str, key: str, value: bytes) -> float:
    """Produce and wait for the broker's ack; returns when it was handed to the producer."""
    sent = time.perf_counter()
    producer.produce(topic_name(settings, base), key=key.encode(), value=value)
    producer.flush(10)
    return sent


def p(values: list[float], q: float) -> float:
    """The q-quantile (0..1), nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--routes", type=int, default=8)
    parser.add_argument("--stops", type=int, default=100)
    parser.add_argument("--orders", type=int, default=20)
    parser.add_argument("--failures", type=int, default=20)
    parser.add_argument("--edits", type=int, default=100)
    parser.add_argument("--budget", type=float, default=1.0, help="solver seconds per decision")
    args = parser.parse_args()
    console = Console()
    base = Settings()
    rng = np.random.default_rng(5)
    with decision_worker(base, args.budget) as (settings, _worker):
        producer = _producer(settings)
        watch = UpdateWatch(settings)
        start = now_ms()
        plans = [
            build_plan(
                f"rt-b{k}",
                f"drv-b{k}",
                n_stops=args.stops,
                leg_m=250.0,
                start_ms=start,
                origin=offset(52.5, 13.4, 1500.0 * k, 0.0),
                rng=rng,
            )
            for k in range(args.routes)
        ]
        # Roomy windows and shifts: the planned times of build_plan are tighter than the
        # decision's travel-time estimate (detour factor, rush-hour speed).
        plans = [
            msgspec.structs.replace(
                plan,
                shift_end_ms=start + 12 * 3_600_000,
                stops=[
                    msgspec.structs.replace(
                        stop, window_start_ms=start, window_end_ms=start + 10 * 3_600_000
                    )
                    for stop in plan.stops
                ],
            )
            for plan in plans
        ]
        for plan in plans:
            _send(producer, settings, ROUTES, plan.route_id, encode(plan))
        r = redis.Redis.from_url(settings.redis_url, decode_responses=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(
            r.hget(f"fleet:driver:{p.driver_id}", "route_id") == p.route_id for p in plans
        ):
            time.sleep(0.2)
        for plan in plans:
            assert plan.depot is not None
            event = DeliveryEvent(f"ev-{plan.driver_id}", plan.driver_id, "shift_start", now_ms())
            _send(producer, settings, EVENTS, plan.driver_id, encode(event))
            ping = Ping(plan.driver_id, now_ms(), plan.depot.lat, plan.depot.lon, seq=1)
            _send(producer, settings, PINGS, plan.driver_id, encode(ping))
        time.sleep(3)

        order_ms: list[float] = []
        failure_ms: list[float] = []
        edit_ms: list[float] = []
        missing = {"orders": 0, "failures": 0, "edits": 0}
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("orders", total=args.orders)
            for i in range(args.orders):
                plan = plans[i % len(plans)]
                near = plan.stops[int(rng.integers(0, len(plan.stops)))]
                lat, lon = offset(near.lat, near.lon, 100.0, -80.0)
                order = Order(
                    f"ord-{i}",
                    lat,
                    lon,
                    now_ms(),
                    window_start_ms=now_ms(),
                    window_end_ms=now_ms() + 8 * 3_600_000,
                    service_s=60,
                    demand=1,
                )
                sent = _send(producer, settings, ORDERS, order.order_id, encode(order))
                got = watch.wait("assign", f"order:{order.order_id}")
                if got is None:
                    missing["orders"] += 1
                else:
                    order_ms.append((got - sent) * 1000)
                progress.advance(task)
            task = progress.add_task("failed deliveries", total=args.failures)
            for i in range(args.failures):
                plan = plans[i % len(plans)]
                stop = plan.stops[1 + i // len(plans)]
                event = DeliveryEvent(
                    f"ev-f{i}",
                    plan.driver_id,
                    "failed",
                    now_ms(),
                    plan.route_id,
                    stop.stop_id,
                    reason="not_home",
                )
                sent = _send(producer, settings, EVENTS, plan.driver_id, encode(event))
                got = watch.wait("failed_delivery", f"stop:{plan.route_id}/{stop.stop_id}")
                if got is None:
                    missing["failures"] += 1
                else:
                    failure_ms.append((got - sent) * 1000)
                progress.advance(task)
            # dispatcher edits at 5/s while an order every second keeps the solver busy
            task = progress.add_task("dispatcher edits under load", total=args.edits)
            sent_at: dict[str, float] = {}
            for i in range(args.edits):
                plan = plans[i % len(plans)]
                if i % 5 == 0:
                    near = plan.stops[-1]
                    order = Order(
                        f"ord-load-{i}",
                        near.lat,
                        near.lon,
                        now_ms(),
                        window_end_ms=now_ms() + 8 * 3_600_000,
                    )
                    _send(producer, settings, ORDERS, order.order_id, encode(order))
                lat, lon = offset(plan.stops[-1].lat, plan.stops[-1].lon, 50.0, 50.0)
                cmd = DispatchCommand(
                    f"cmd-{i}", plan.route_id, "add_stop", now_ms(), stop=Stop(f"add-{i}", lat, lon)
                )
                sent_at[cmd.command_id] = _send(
                    producer, settings, COMMANDS, cmd.route_id, encode(cmd)
                )
                time.sleep(0.2)
                progress.advance(task)
            for command_id, sent in sent_at.items():
                got = watch.wait("dispatch:add_stop", f"command:{command_id}", timeout=30)
                if got is None:
                    missing["edits"] += 1
                else:
                    edit_ms.append((got - sent) * 1000)
        watch.close()

    table = Table(
        title=f"decision latency, {args.routes} routes x {args.stops} stops, "
        f"solver budget {args.budget:g} s"
    )
    for col in ("path", "n", "missing", "p50 ms", "p95 ms", "p99 ms", "max ms"):
        table.add_column(col)
    for name, values, key in (
        ("order -> assign", order_ms, "orders"),
        ("failed delivery -> re-plan", failure_ms, "failures"),
        ("add_stop -> RouteUpdate (solver busy)", edit_ms, "edits"),
    ):
        if values:
            table.add_row(
                name,
                str(len(values)),
                str(missing[key]),
                f"{statistics.median(values):.0f}",
                f"{p(values, 0.95):.0f}",
                f"{p(values, 0.99):.0f}",
                f"{max(values):.0f}",
            )
        else:
            table.add_row(name, "0", str(missing[key]), "-", "-", "-", "-")
    console.print(table)


if __name__ == "__main__":
    main()
