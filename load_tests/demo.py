"""`make demo`: the pipeline on a simulated fleet, with a live terminal summary.

Starts the local services (those not running yet), a `fleet worker`, and the simulator;
shows drivers seen, pings/s, dead letters and a few drivers; stops everything it started
at the end or on Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import msgspec
import redis
from confluent_kafka import Producer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from fleet import secure_profile, services
from fleet.clients import redis_client
from fleet.clock import now_ms
from fleet.settings import Settings, get_settings
from fleet.topics import PINGS, topic_name
from load_tests.harness import WorkerProcess, metric_totals
from load_tests.simulator import make_fleet, producer_config

BROKEN = [
    b'{"driver_id":"drv-x","ts_ms":1,"lat":123.4,"lon":13.4}',
    b'{"driver_id":"drv-x","lat":52.1,"lon":13.4}',
    b'{"driver_id":"drv-x","ts_ms":1,"lat":true,"lon":13.4}',
    b"not json",
]


class Simulation(threading.Thread):
    """The fleet simulator in a thread, with a small share of broken messages."""

    def __init__(self, settings: Settings, drivers: int, duration_s: float, invalid_rate: float):
        super().__init__(daemon=True)
        self.settings = settings
        self.drivers = drivers
        self.duration_s = duration_s
        self.invalid_rate = invalid_rate
        self.stop_event = threading.Event()
        self.sent = 0

    def run(self) -> None:
        producer = Producer(producer_config(self.settings.kafka_bootstrap, self.settings))
        topic = topic_name(self.settings, PINGS)
        encoder = msgspec.json.Encoder()
        rng = random.Random(11)
        fleet = make_fleet(self.drivers)
        start = time.monotonic()
        tick = 0
        while not self.stop_event.is_set() and time.monotonic() - start < self.duration_s:
            ts = now_ms()
            for d in fleet:
                d.advance(1.0)
                value = encoder.encode(d.ping(ts, rng))
                if rng.random() < self.invalid_rate:
                    value = rng.choice(BROKEN)
                producer.produce(topic, key=d.driver_id.encode(), value=value)
                self.sent += 1
            producer.poll(0)
            tick += 1
            self.stop_event.wait(max(0.0, start + tick - time.monotonic()))
        producer.flush(10)


def summary_table(r: redis.Redis, metrics: dict[str, float], rate: float, sim: Simulation,
                  elapsed: float, rate_label: str = "pings/s (last second)") -> Table:  # fmt: skip
    table = Table(title=f"fleet demo — {elapsed:.0f} s", show_lines=False)
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("drivers seen (fleet:pos)", str(r.zcard("fleet:pos")))
    table.add_row("pings sent", str(sim.sent))
    table.add_row("pings accepted", f"{metrics.get('fleet_pings_accepted_total', 0):.0f}")
    table.add_row(rate_label, f"{rate:.0f}")
    table.add_row("dead letters", f"{metrics.get('fleet_pings_rejected_total', 0):.0f}")
    table.add_row("duplicates", f"{metrics.get('fleet_pings_duplicate_total', 0):.0f}")
    table.add_row("open alerts", str(r.hlen("fleet:alerts:open")))
    drivers = Table(show_header=True)
    for col in ("driver", "lat", "lon", "age s", "status", "h3"):
        drivers.add_column(col)
    now = now_ms()
    for i in range(5):
        row: dict[str, str] = r.hgetall(f"fleet:driver:drv-{i:05d}")  # type: ignore[assignment]
        if row:
            age = (now - int(row["ts_ms"])) / 1000
            drivers.add_row(f"drv-{i:05d}", row["lat"], row["lon"], f"{age:.1f}",
                            row.get("status", ""), row.get("h3", ""))  # fmt: skip
    outer = Table.grid()
    outer.add_row(table)
    outer.add_row(drivers)
    return outer


def run(drivers: int, duration_s: float, invalid_rate: float, secure: bool = False) -> int:
    base = get_settings()
    console = Console()
    log: Callable[[str], None] = console.print
    kind = secure_profile.secure_services(base) if secure else services.services(base)
    started = [s for s in kind if s.status().state == "stopped"]
    worker_env, settings, reader = dict(os.environ), base, base
    if secure:  # each part with its own role: worker, simulated phones, the summary's reads
        profile = secure_profile.up(base, log)
        worker_env |= profile.env("pipeline")
        settings, reader = profile.settings(base, "gateway"), profile.settings(base, "reader")
    else:
        services.up(base, log)
    worker_log = Path(settings.var_dir) / "demo-worker.log"
    worker = WorkerProcess(worker_env, worker_log).start()
    sim = Simulation(settings, drivers, duration_s, invalid_rate)
    r = redis_client(reader, decode_responses=True)
    interrupted = False
    try:
        log(f"worker pid {worker.pid} (log: {worker_log}); simulating {drivers} drivers "
            f"for {duration_s:.0f} s — Ctrl-C stops")  # fmt: skip
        sim.start()
        start = time.monotonic()
        last = (start, 0.0)
        interactive = console.is_terminal
        with Live(console=console, refresh_per_second=2, auto_refresh=False) as live:
            while sim.is_alive() or time.monotonic() - start < 5:
                time.sleep(1.0)
                if not worker.alive():
                    log(f"[red]worker exited; see {worker_log}")
                    return 1
                metrics = metric_totals(settings.metrics_port)
                now = time.monotonic()
                accepted = metrics.get("fleet_pings_accepted_total", 0.0)
                rate = (accepted - last[1]) / max(1e-6, now - last[0])
                last = (now, accepted)
                view = summary_table(r, metrics, rate, sim, now - start)
                if interactive:
                    live.update(view, refresh=True)
                elif int(now - start) % 10 == 0 and sim.is_alive():
                    console.print(view)
                if not sim.is_alive() and now - start > duration_s + 5:
                    break
            metrics = metric_totals(settings.metrics_port)
            elapsed = time.monotonic() - start
            average = metrics.get("fleet_pings_accepted_total", 0.0) / max(elapsed, 1e-6)
            console.print("[bold]final summary")
            console.print(summary_table(r, metrics, average, sim, elapsed, "pings/s (average)"))
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted: stopping")
    finally:
        sim.stop_event.set()
        sim.join(15)
        worker.stop()
        for service in reversed(started):
            service.down(log)
    return 130 if interrupted else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--drivers", type=int, default=200)
    parser.add_argument("--duration", type=float, default=180.0, help="seconds")
    parser.add_argument("--invalid-rate", type=float, default=0.002,
                        help="share of deliberately broken messages")  # fmt: skip
    parser.add_argument("--secure", action="store_true",
                        help="SASL_SSL, ACLs, TLS Redis (docs/security.md)")  # fmt: skip
    args = parser.parse_args()
    sys.exit(run(args.drivers, args.duration, args.invalid_rate, args.secure))


if __name__ == "__main__":
    main()
