"""A fleet simulator: N drivers driving their routes, publishing contract pings to Kafka.

python -m load_tests.simulator --drivers 200 --duration 120 --interval 1.0
"""

from __future__ import annotations

import argparse
import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import msgspec
from confluent_kafka import Producer

from fleet.clients import confluent_config
from fleet.clock import now_ms
from fleet.records import Ping
from fleet.settings import Settings, get_settings
from fleet.topics import PINGS, topic_name

CENTER = (52.52, 13.405)  # Berlin
METRES_PER_DEG_LAT = 111_320.0


def producer_config(bootstrap: str, settings: Settings | None = None) -> dict[str, object]:
    """A throughput-oriented producer; murmur2 puts keys where Java/Faust would. Security
    (SASL_SSL) comes from ``settings`` (default: the environment's)."""
    return confluent_config(settings or get_settings(), {
        "bootstrap.servers": bootstrap,
        "linger.ms": 20,
        "batch.num.messages": 10_000,
        "queue.buffering.max.messages": 1_000_000,
        "compression.type": "lz4",
        "partitioner": "murmur2_random",
        "log_level": 3,
    })  # fmt: skip


@dataclass
class SimDriver:
    """One simulated driver moving along a polyline at a constant speed."""

    driver_id: str
    route_id: str
    path: list[tuple[float, float]]
    speed_mps: float
    seq: int = 0
    leg: int = 0
    leg_done_m: float = 0.0
    pos: tuple[float, float] = field(default=(0.0, 0.0))

    def __post_init__(self) -> None:
        self.pos = self.path[0]

    def advance(self, dt_s: float) -> None:
        remaining = self.speed_mps * dt_s
        while remaining > 0:
            a, b = self.path[self.leg], self.path[(self.leg + 1) % len(self.path)]
            leg_len = _dist_m(a, b)
            if self.leg_done_m + remaining < leg_len:
                self.leg_done_m += remaining
                remaining = 0
            else:
                remaining -= leg_len - self.leg_done_m
                self.leg = (self.leg + 1) % len(self.path)
                self.leg_done_m = 0.0
        a, b = self.path[self.leg], self.path[(self.leg + 1) % len(self.path)]
        leg_len = _dist_m(a, b) or 1.0
        t = self.leg_done_m / leg_len
        self.pos = (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t)

    def ping(self, ts_ms: int, rng: random.Random, noise_m: float = 5.0) -> Ping:
        self.seq += 1
        lat = self.pos[0] + rng.gauss(0, noise_m) / METRES_PER_DEG_LAT
        lon = self.pos[1] + rng.gauss(0, noise_m) / (
            METRES_PER_DEG_LAT * math.cos(math.radians(self.pos[0]))
        )
        return Ping(
            driver_id=self.driver_id,
            ts_ms=ts_ms,
            lat=round(lat, 6),
            lon=round(lon, 6),
            seq=self.seq,
            accuracy_m=noise_m,
            speed_mps=self.speed_mps,
            route_id=self.route_id,
        )


def _dist_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    dy = (b[0] - a[0]) * METRES_PER_DEG_LAT
    dx = (b[1] - a[1]) * METRES_PER_DEG_LAT * math.cos(math.radians(a[0]))
    return math.hypot(dx, dy)


def make_fleet(n: int, seed: int = 7, prefix: str = "drv") -> list[SimDriver]:
    """n drivers, each on a random closed route of 6-12 points within ~10 km of the centre."""
    rng = random.Random(seed)
    fleet = []
    for i in range(n):
        points = []
        for _ in range(rng.randint(6, 12)):
            r = rng.uniform(500, 10_000)
            a = rng.uniform(0, 2 * math.pi)
            points.append(
                (
                    CENTER[0] + r * math.sin(a) / METRES_PER_DEG_LAT,
                    CENTER[1]
                    + r * math.cos(a) / (METRES_PER_DEG_LAT * math.cos(math.radians(CENTER[0]))),
                )
            )
        fleet.append(
            SimDriver(f"{prefix}-{i:05d}", f"rt-{prefix}-{i:05d}", points, rng.uniform(6, 14))
        )
    return fleet


def pings_for_tick(
    fleet: list[SimDriver], ts_ms: int, dt_s: float, rng: random.Random
) -> Iterator[Ping]:
    for d in fleet:
        d.advance(dt_s)
        yield d.ping(ts_ms, rng)


def run(
    drivers: int,
    duration_s: float,
    interval_s: float,
    bootstrap: str,
    topic: str,
    seed: int = 7,
    prefix: str = "drv",
) -> int:
    """Publish one ping per driver every interval_s for duration_s; return pings sent."""
    producer = Producer(producer_config(bootstrap))
    encoder = msgspec.json.Encoder()
    rng = random.Random(seed)
    fleet = make_fleet(drivers, seed, prefix)
    sent = 0
    start = time.monotonic()
    tick = 0
    while time.monotonic() - start < duration_s:
        ts = now_ms()
        for p in pings_for_tick(fleet, ts, interval_s, rng):
            _produce(producer, topic, p.driver_id.encode(), encoder.encode(p))
            sent += 1
        producer.poll(0)
        tick += 1
        delay = start + tick * interval_s - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    producer.flush(30)
    return sent


def _produce(producer: Producer, topic: str, key: bytes, value: bytes) -> None:
    while True:
        try:
            producer.produce(topic, value=value, key=key)
            return
        except BufferError:  # local queue full: let librdkafka drain it
            producer.poll(0.05)


def main() -> None:
    settings = get_settings()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--drivers", type=int, default=200)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between pings")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    sent = run(
        args.drivers,
        args.duration,
        args.interval,
        settings.kafka_bootstrap,
        topic_name(settings, PINGS),
        args.seed,
    )
    print(f"sent {sent} pings")


if __name__ == "__main__":
    main()
