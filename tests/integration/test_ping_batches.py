"""The batch ping consumer (FLEET_PING_CONSUMER=batch): offsets in its own group, committed
only after the driver states are saved; a clean stop hands over every processed ping."""

from __future__ import annotations

import uuid

import msgspec
import pytest
from confluent_kafka import Consumer, TopicPartition

from fleet.clock import now_ms
from fleet.records import Ping
from fleet.topics import PINGS
from load_tests.harness import metric_totals
from tests.conftest import TEST_PARTITIONS, produce, wait_until

pytestmark = pytest.mark.integration

enc = msgspec.json.Encoder()


def _committed(env: dict[str, str], group: str) -> int:
    consumer = Consumer({"bootstrap.servers": env["FLEET_KAFKA_BOOTSTRAP"], "group.id": group,
                         "enable.auto.commit": False, "log_level": 0})  # fmt: skip
    try:
        tps = [TopicPartition(env["FLEET_TOPIC_PREFIX"] + PINGS, p) for p in range(TEST_PARTITIONS)]
        return sum(max(tp.offset, 0) for tp in consumer.committed(tps, timeout=10))
    finally:
        consumer.close()


def test_clean_stop_commits_every_processed_ping_and_restart_reads_none_again(fleet_env, worker):
    """200 pings of 20 drivers: the ping group commits all of them (after the states are
    saved), Faust's own group commits no ping offsets; a restarted worker accepts none again,
    and new pings after the restart are accepted once each."""
    env = {**fleet_env, "FLEET_STATE_FLUSH_S": "1.0"}
    w = worker(env)
    port = int(env["FLEET_METRICS_PORT"])
    run = uuid.uuid4().hex[:6]
    t0 = now_ms() - 60_000
    drivers = [f"pb-{run}-{i}" for i in range(20)]

    def pings(first_seq: int) -> list[tuple[bytes, bytes]]:
        return [
            (
                d.encode(),
                enc.encode(Ping(d, t0 + k * 1000, 52.5 + i * 0.01, 13.4 + k * 1e-4, seq=k + 1)),
            )
            for i, d in enumerate(drivers)
            for k in range(first_seq, first_seq + 10)
        ]

    bootstrap, topic = env["FLEET_KAFKA_BOOTSTRAP"], fleet_env.topic(PINGS)
    produce(bootstrap, topic, pings(0))
    group = f"{env['FLEET_APP_ID']}-pings"
    assert wait_until(lambda: _committed(env, group) == 200, 60), _committed(env, group)
    assert metric_totals(port).get("fleet_pings_accepted_total") == 200
    assert _committed(env, env["FLEET_APP_ID"]) == 0  # pings are not Faust's any more

    w.restart()
    produce(bootstrap, topic, pings(10))
    assert wait_until(lambda: _committed(env, group) == 400, 60), _committed(env, group)
    totals = metric_totals(port)
    assert totals.get("fleet_pings_accepted_total") == 200  # only the new ones
    assert totals.get("fleet_pings_duplicate_total", 0) == 0
