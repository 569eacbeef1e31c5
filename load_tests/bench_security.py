"""What TLS and SASL cost: the same pings through the plain and the secure profile, one run.

python -m load_tests.bench_security --pings 300000 --rounds 5

Two private brokers start for the run on free ports and stop at the end, alike but for the
listener: a PLAINTEXT one (as `fleet infra up`) and the secure profile's SASL_SSL one
(SCRAM-SHA-512, StandardAuthorizer, ACLs); neither serves the shared development broker's
clients. Each round publishes the pings with the simulator's producer settings (lz4,
acks=all), reads them back from the beginning with one consumer, and times 300 pings sent
one at a time; rounds alternate between the profiles so background load hits both alike.
Prints one JSON line per profile.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import msgspec
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from fleet import services
from fleet.clients import confluent_config
from fleet.clock import now_ms
from fleet.secure_profile import SecureProfile, free_port_pair, running
from fleet.settings import Settings, get_settings
from load_tests.simulator import make_fleet, pings_for_tick, producer_config

PARTITIONS = 4


def encoded_pings(n: int, drivers: int = 1000) -> list[tuple[bytes, bytes]]:
    """n (key, value) contract pings of a simulated fleet."""
    import random

    rng, fleet, enc = random.Random(5), make_fleet(drivers, 5), msgspec.json.Encoder()
    out: list[tuple[bytes, bytes]] = []
    ts = now_ms()
    while len(out) < n:
        out += [(p.driver_id.encode(), enc.encode(p)) for p in pings_for_tick(fleet, ts, 1.0, rng)]
        ts += 1000
    return out[:n]


def _create_topic(settings: Settings, name: str) -> None:
    admin = AdminClient(confluent_config(settings, {"log_level": 0}))
    admin.create_topics([NewTopic(name, PARTITIONS, 1)])[name].result(30)


def connect_s(settings: Settings) -> float:
    """Seconds from a new client to its first metadata (TCP, then TLS and SASL if secure)."""
    t0 = time.perf_counter()
    AdminClient(confluent_config(settings, {"log_level": 0})).list_topics(timeout=30)
    return time.perf_counter() - t0


def ack_latency_ms(settings: Settings, topic: str, pings: list[tuple[bytes, bytes]]) -> float:
    """Median milliseconds from sending one ping alone to its acknowledgement."""
    producer = Producer(confluent_config(settings, {"linger.ms": 0, "log_level": 0}))
    producer.list_topics(topic, timeout=30)
    waits = []
    for key, value in pings:
        t0 = time.perf_counter()
        producer.produce(topic, value, key)
        producer.flush(30)
        waits.append(time.perf_counter() - t0)
    return statistics.median(waits) * 1000


def produce_s(settings: Settings, topic: str, pings: list[tuple[bytes, bytes]]) -> float:
    """Seconds to publish every ping and have each acknowledged."""
    producer = Producer(producer_config(settings.kafka_bootstrap, settings))
    producer.list_topics(topic, timeout=30)  # connected before the clock starts
    t0 = time.perf_counter()
    for key, value in pings:
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.01)
    if producer.flush(120):
        raise RuntimeError("producer did not drain in 120 s")
    return time.perf_counter() - t0


def consume_s(settings: Settings, topic: str, expect: int) -> float:
    """Seconds to read ``expect`` messages from the beginning, from the first one on."""
    consumer = Consumer(
        confluent_config(settings, {"group.id": f"fleet-reader-bench-{uuid.uuid4().hex[:8]}",
                                    "auto.offset.reset": "earliest", "enable.auto.commit": False,
                                    "fetch.max.bytes": 52_428_800, "log_level": 0})
    )  # fmt: skip
    consumer.subscribe([topic])
    got, t0 = 0, 0.0
    deadline = time.monotonic() + 120
    try:
        while got < expect and time.monotonic() < deadline:
            batch = consumer.consume(10_000, 1.0)
            if batch and not got:
                t0 = time.perf_counter()
            got += sum(1 for m in batch if m.error() is None)
        if got < expect:
            raise RuntimeError(f"read {got} of {expect} in 120 s")
        return time.perf_counter() - t0
    finally:
        consumer.close()


@contextmanager
def private_plain_broker(base: Settings, var_dir: Path) -> Iterator[Settings]:
    """A PLAINTEXT broker of its own under ``var_dir`` (the jars of ``base``), stopped after."""
    var_dir.mkdir(parents=True)
    (var_dir / "kafka-libs").symlink_to(Path(base.var_dir).resolve() / "kafka-libs")
    settings = base.model_copy(
        update={"var_dir": var_dir, "kafka_bootstrap": f"127.0.0.1:{free_port_pair()}"}
    )
    broker = services.Kafka(settings)
    try:
        broker.up(lambda _msg: None)
        yield settings
    finally:
        broker.down(lambda _msg: None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pings", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    base = get_settings()
    pings = encoded_pings(args.pings)
    mean_bytes = statistics.fmean(len(v) for _, v in pings)
    run = uuid.uuid4().hex[:8]
    topic = f"bench-security-{run}"
    results: dict[str, dict[str, list[float]]] = {}  # profile -> measure -> one per round
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        plain = stack.enter_context(private_plain_broker(base, Path(tmp) / "plain"))
        ports = (free_port_pair(), free_port_pair(), free_port_pair())
        profile = SecureProfile(Path(tmp) / "secure", *ports)
        stack.enter_context(running(base, profile))
        sides = {"plain": plain, "secure": profile.settings(base, "admin")}
        for round_ in range(args.rounds):
            for name, settings in sides.items():
                side = results.setdefault(name, {})
                this = f"{topic}-{round_}"
                _create_topic(settings, this)
                cpu = time.process_time()
                side.setdefault("connect", []).append(connect_s(settings))
                side.setdefault("produce", []).append(produce_s(settings, this, pings))
                side.setdefault("consume", []).append(consume_s(settings, this, len(pings)))
                side.setdefault("cpu", []).append(time.process_time() - cpu)
                side.setdefault("ack", []).append(ack_latency_ms(settings, this, pings[:300]))
    for name, side in results.items():
        rate = {m: sorted(args.pings / t for t in side[m]) for m in ("produce", "consume")}
        print(json.dumps({
            "profile": name, "pings": args.pings, "rounds": args.rounds,
            "mean_ping_bytes": round(mean_bytes),
            "produce_pings_per_s_median": round(statistics.median(rate["produce"])),
            "produce_pings_per_s_best": round(rate["produce"][-1]),
            "consume_pings_per_s_median": round(statistics.median(rate["consume"])),
            "consume_pings_per_s_best": round(rate["consume"][-1]),
            "connect_ms_median": round(statistics.median(side["connect"]) * 1000, 1),
            "ack_ms_median": round(statistics.median(side["ack"]), 2),
            # this process's CPU (producer and consumer) per ping, median over rounds
            "client_cpu_us_per_ping": round(statistics.median(side["cpu"]) / args.pings * 1e6, 2),
        }))  # fmt: skip


if __name__ == "__main__":
    main()
