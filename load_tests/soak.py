"""Soak benchmark (issue 9): waves of drivers whose routes start and finish, compressed in
time, on a worker of its own; prints the worker's RSS and the stale timer's duration over
time (``python -m load_tests.soak``; figures in docs/benchmarks.md).

Each wave brings ``--wave`` new drivers: a plan of two stops, shift start, a few pings, both
stops delivered, shift end. With FLEET_IDLE_FORGET_S short (``--forget-s``), a finished
driver leaves the state soon after its wave, so RSS and the timer's walk must level off
instead of growing with every driver ever seen.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid

from confluent_kafka import Producer

from fleet.clock import now_ms
from fleet.records import DeliveryEvent, Ping, encode
from fleet.topics import EVENTS, PINGS, ROUTES, topic_name
from load_tests.faults import private_run
from load_tests.harness import WorkerProcess, metric_value, scrape
from load_tests.scenarios import build_plan


def rss_mb(pid: int) -> float:
    """Resident set size of a process, MiB (Linux /proc)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def wave_messages(run: str, wave: int, size: int) -> dict[str, list[tuple[bytes, bytes]]]:
    """Plans, events and pings of one wave of drivers that start and finish their routes."""
    t0 = now_ms() - 300_000
    out: dict[str, list[tuple[bytes, bytes]]] = {ROUTES: [], EVENTS: [], PINGS: []}
    finish: list[tuple[bytes, bytes]] = []
    for d in range(size):
        driver = f"soak-{run}-{wave}-{d}"
        plan = build_plan(f"rt-{driver}", driver, n_stops=2, start_ms=t0)
        key = driver.encode()
        out[ROUTES].append((plan.route_id.encode(), encode(plan)))
        out[EVENTS].append((key, encode(DeliveryEvent(f"s-{driver}", driver, "shift_start", t0))))
        lat, lon = plan.path[0] if plan.path else (52.5, 13.4)
        for k in range(3):
            out[PINGS].append((key, encode(Ping(driver, t0 + k * 1000, lat, lon, seq=k + 1))))
        for i, stop in enumerate(("st-1", "st-2")):
            event = DeliveryEvent(
                f"d{i}-{driver}", driver, "delivered", t0 + 5000 + i, stop_id=stop
            )
            finish.append((key, encode(event)))
        finish.append((key, encode(DeliveryEvent(f"e-{driver}", driver, "shift_end", t0 + 9000))))
    out[EVENTS] += finish
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drivers", type=int, default=20_000, help="drivers over all waves")
    parser.add_argument("--wave", type=int, default=2_000, help="drivers per wave")
    parser.add_argument("--every-s", type=float, default=45.0, help="seconds between waves")
    parser.add_argument("--forget-s", type=float, default=30.0, help="FLEET_IDLE_FORGET_S")
    parser.add_argument("--tail-s", type=float, default=90.0, help="sampling after the last wave")
    args = parser.parse_args(argv)

    run = uuid.uuid4().hex[:6]
    env, settings, var = private_run(
        "soak", run,
        {"FLEET_IDLE_FORGET_S": str(args.forget_s), "FLEET_STALE_AFTER_S": "10",
         "FLEET_STALE_CHECK_INTERVAL_S": "2"},
    )  # fmt: skip
    from fleet import services

    producer = Producer(
        {"bootstrap.servers": settings.kafka_bootstrap, "partitioner": "murmur2_random",
         "linger.ms": 20, "queue.buffering.max.messages": 1_000_000}
    )  # fmt: skip
    worker = WorkerProcess(env, var / "worker.log", ready_s=180).start()
    assert worker.pid is not None
    port = int(env["FLEET_METRICS_PORT"])
    waves = -(-args.drivers // args.wave)
    began = time.monotonic()
    last = (0.0, 0.0)
    print(
        "   t_s  drivers_sent  rss_mib  timer_mean_ms  timer_due  forgotten_drivers"
        "  forgotten_routes"
    )
    try:
        wave = 0
        next_wave = began
        end = None
        while end is None or time.monotonic() < end:
            if wave < waves and time.monotonic() >= next_wave:
                for topic, messages in wave_messages(run, wave, args.wave).items():
                    for key, value in messages:
                        producer.produce(topic_name(settings, topic), key=key, value=value)
                        producer.poll(0)
                producer.flush(60)
                wave += 1
                next_wave += args.every_s
                if wave == waves:
                    end = time.monotonic() + args.tail_s
            time.sleep(5)
            samples = scrape(port)
            total = metric_value(samples, "fleet_stale_timer_seconds_sum")
            count = metric_value(samples, "fleet_stale_timer_seconds_count")
            mean = (total - last[0]) / (count - last[1]) * 1000 if count > last[1] else 0.0
            last = (total, count)
            print(
                f"{time.monotonic() - began:6.0f}  {min(wave * args.wave, args.drivers):12d}  "
                f"{rss_mb(worker.pid):7.0f}  {mean:13.1f}  "
                f"{metric_value(samples, 'fleet_stale_timer_due_drivers'):9.0f}  "
                f"{metric_value(samples, 'fleet_tracking_forgotten_total', what='driver'):17.0f}"
                f"  {metric_value(samples, 'fleet_tracking_forgotten_total', what='route'):16.0f}",
                flush=True,
            )
    finally:
        worker.kill()
        services.delete_topics(
            settings.kafka_bootstrap, (settings.topic_prefix, f"{settings.app_id}-")
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
