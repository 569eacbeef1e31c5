"""Ingest benchmarks: (a) the replay core on one core, (b) Kafka -> worker -> Redis end to end.

    .venv/bin/python -m load_tests.bench_ingest --core-pings 1000000 --e2e-seconds 60 --rate 20000

Prints figures; `--write-docs` also records them in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import threading
import time
import uuid
from pathlib import Path

import msgspec
from confluent_kafka import Producer

from fleet import services
from fleet.clock import now_ms
from fleet.decode import decode_ping_batch
from fleet.ingest import IngestConfig, Ingestor
from fleet.settings import PROJECT_ROOT, Settings
from fleet.topics import PINGS
from load_tests.harness import WorkerProcess, free_port, scrape
from load_tests.load.probe import quantile
from load_tests.simulator import make_fleet, producer_config


def recorded_pings(n: int, drivers: int, seed: int = 3) -> list[bytes]:
    """n encoded pings of a simulated fleet, 1 Hz, with 10% duplicates and 1% invalid."""
    rng = random.Random(seed)
    fleet = make_fleet(drivers, seed)
    enc = msgspec.json.Encoder()
    out: list[bytes] = []
    ts = now_ms() - 3_600_000
    while len(out) < n:
        ts += 1000
        for d in fleet:
            d.advance(1.0)
            raw = enc.encode(d.ping(ts, rng))
            out.append(raw)
            r = rng.random()
            if r < 0.10:
                out.append(raw)
            elif r < 0.11:
                out.append(b'{"driver_id":"x","ts_ms":1,"lat":123.4,"lon":1}')
    return out[:n]


def bench_core(n: int, drivers: int, batch: int = 5000) -> dict[str, float]:
    """Decode + validate + de-duplicate + H3-index, as `fleet replay` and the agent do."""
    messages = recorded_pings(n, drivers)
    ingestor = Ingestor(IngestConfig())
    now = now_ms()
    pairs = [(None, m) for m in messages]
    gc.collect()
    gc.freeze()  # the input list is the benchmark's, not the pipeline's: keep GC off it
    t0 = time.perf_counter()
    for i in range(0, n, batch):
        decoded = decode_ping_batch(pairs[i : i + batch], source_topic=PINGS, now_ms=now,
                                    max_future_ms=300_000, max_bytes=65_536)  # fmt: skip
        ingestor.ingest(decoded.pings)
    elapsed = time.perf_counter() - t0
    gc.unfreeze()
    return {"pings": n, "seconds": elapsed, "pings_per_s": n / elapsed}


def latency_quantiles(port: int, clock: str) -> tuple[float, float, float]:
    samples = scrape(port).get("fleet_ping_to_redis_seconds_bucket", [])
    buckets = sorted(
        (float(labels["le"]), value) for labels, value in samples if labels["clock"] == clock
    )
    if not buckets or buckets[-1][1] == 0:
        return (float("nan"),) * 3  # type: ignore[return-value]
    return quantile(buckets, 0.5), quantile(buckets, 0.99), buckets[-1][1]


def accepted(port: int) -> float:
    return sum(v for _, v in scrape(port).get("fleet_pings_accepted_total", []))


def bench_e2e(seconds: float, rate: int, drivers: int, tmp: Path) -> dict[str, float]:
    """Produce `rate` pings/s for `seconds` into a fresh topic set; measure what the worker does."""
    base = Settings()
    services.up(base, lambda _m: None, with_prometheus=False)
    run = uuid.uuid4().hex[:8]
    port = free_port()
    env = {**os.environ, "FLEET_TOPIC_PREFIX": f"bench{run}.", "FLEET_APP_ID": f"bench-{run}",
           "FLEET_METRICS_PORT": str(port), "FLEET_VAR_DIR": str(tmp)}  # fmt: skip
    settings = Settings(topic_prefix=env["FLEET_TOPIC_PREFIX"], app_id=env["FLEET_APP_ID"])
    services.ensure_topics(settings)
    worker = WorkerProcess(env, tmp / "bench-worker.log", loglevel="warn").start()
    try:
        time.sleep(5)  # partitions assigned
        producer = Producer(producer_config(base.kafka_bootstrap))
        topic = f"{env['FLEET_TOPIC_PREFIX']}{PINGS}"
        fleet = make_fleet(drivers, 5)
        enc = msgspec.json.Encoder()
        rng = random.Random(5)
        sent = 0
        stop = threading.Event()
        t0 = time.monotonic()
        tick_s = 0.1
        per_tick = max(1, int(rate * tick_s))
        i = 0
        while time.monotonic() - t0 < seconds:
            ts = now_ms()
            for _ in range(per_tick):
                d = fleet[i % drivers]
                if i % drivers == 0:
                    for dd in fleet:
                        dd.advance(drivers / rate)
                i += 1
                while True:
                    try:
                        producer.produce(
                            topic, key=d.driver_id.encode(), value=enc.encode(d.ping(ts, rng))
                        )
                        break
                    except BufferError:
                        producer.poll(0.01)
                sent += 1
            producer.poll(0)
            delay = t0 + (sent / rate) - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        produce_s = time.monotonic() - t0
        producer.flush(60)
        # Let the worker drain; measure its sustained rate over the produce window + drain.
        drain_deadline = time.monotonic() + 120
        while time.monotonic() < drain_deadline and accepted(port) < sent:
            time.sleep(0.5)
        total_s = time.monotonic() - t0
        done = accepted(port)
        p50, p99, _ = latency_quantiles(port, "kafka")
        e50, e99, _ = latency_quantiles(port, "event")
        stop.set()
        return {"sent": sent, "produce_s": produce_s, "offered_per_s": sent / produce_s,
                "accepted": done, "processed_per_s": done / total_s, "drain_s": total_s - produce_s,
                "p50_kafka_ms": p50 * 1000, "p99_kafka_ms": p99 * 1000,
                "p50_event_ms": e50 * 1000, "p99_event_ms": e99 * 1000}  # fmt: skip
    finally:
        worker.stop()
        services.delete_topics(base.kafka_bootstrap, (env["FLEET_TOPIC_PREFIX"], f"bench-{run}"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--core-pings", type=int, default=1_000_000)
    parser.add_argument("--drivers", type=int, default=2000)
    parser.add_argument("--e2e-seconds", type=float, default=60.0)
    parser.add_argument("--rate", type=int, default=20_000, help="offered pings/s end to end")
    parser.add_argument("--skip-e2e", action="store_true")
    args = parser.parse_args()
    core = bench_core(args.core_pings, args.drivers)
    print(f"(a) replay core, one core: {core['pings']:,} pings in {core['seconds']:.2f} s = "
          f"{core['pings_per_s']:,.0f} pings/s (target >= 200,000)")  # fmt: skip
    if args.skip_e2e:
        return
    tmp = PROJECT_ROOT / "var" / "bench"
    tmp.mkdir(parents=True, exist_ok=True)
    e2e = bench_e2e(args.e2e_seconds, args.rate, args.drivers, tmp)
    print(f"(b) end to end: offered {e2e['offered_per_s']:,.0f} pings/s "
          f"for {e2e['produce_s']:.0f} s, "
          f"worker processed {e2e['accepted']:,.0f} = {e2e['processed_per_s']:,.0f} pings/s "
          f"(drain {e2e['drain_s']:.1f} s); ping->Redis from Kafka timestamp p50 "
          f"{e2e['p50_kafka_ms']:.0f} ms p99 {e2e['p99_kafka_ms']:.0f} ms; from ts_ms p50 "
          f"{e2e['p50_event_ms']:.0f} ms p99 {e2e['p99_event_ms']:.0f} ms "
          f"(target >= 20,000 pings/s, p99 <= 500 ms)")  # fmt: skip


if __name__ == "__main__":
    main()
