"""History's own consumer on real Kafka: commits follow stored rows; a refusing store waits."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import pytest
from confluent_kafka import Consumer

from fleet.history.access import OwnerLock, history_dir
from fleet.history.consumer import HistoryConsumer, consumer_config, contract_sinks
from fleet.history.sink import HistoryWriter
from fleet.records import DeadLetter, Ping, encode
from fleet.retry import RetryPolicy
from fleet.topics import DLQ, PINGS
from tests.conftest import FleetEnv, produce, wait_until
from tests.integration.test_history_exactly_once import committed_and_end_offsets

pytestmark = pytest.mark.integration


def test_a_refusing_store_holds_commits_back_and_the_batch_lands_once_it_is_back(
    fleet_env: FleetEnv,
) -> None:
    settings = fleet_env.settings
    start = int(time.time() * 1000) - 60_000
    pings = [Ping(f"drv-{i % 5}", start + i, 52.5, 13.4, seq=i) for i in range(200)]
    produce(
        settings.kafka_bootstrap,
        fleet_env.topic(PINGS),
        [(p.driver_id.encode(), encode(p)) for p in pings],
    )
    skipped: list[tuple[str, str]] = []
    invalid = [(None, b"not json"), (None, json.dumps({"reason": 1}).encode())]
    letter = DeadLetter("fleet.pings", "lat_out_of_range", "lat=123.4", start, "{}", "utf-8")
    produce(settings.kafka_bootstrap, fleet_env.topic(DLQ), [*invalid, (None, encode(letter))])

    blocker = OwnerLock(history_dir(settings))  # another process owns the embedded store
    retries: list[str] = []
    writer = HistoryWriter(settings)
    consumer = HistoryConsumer(
        settings,
        writer,
        contract_sinks(settings, on_skip=lambda table, reason: skipped.append((table, reason))),
        policy=RetryPolicy(0.05, 0.2),
        config=consumer_config(settings),
        on_retry=lambda table, _exc, _delay: retries.append(table),
    )
    thread = consumer.start()
    try:
        assert wait_until(lambda: len(retries) >= 5, timeout=60)
        committed, ends = committed_and_end_offsets(settings, fleet_env.topic(PINGS))
        assert sum(ends) == 200 and sum(committed) == 0  # nothing committed while unstored
        assert thread.is_alive()

        blocker.release()
        for base in (PINGS, DLQ):
            topic = fleet_env.topic(base)

            def caught_up(t: str = topic) -> bool:
                committed, ends = committed_and_end_offsets(settings, t)
                return committed == ends

            assert wait_until(caught_up), committed_and_end_offsets(settings, topic)

        def count(table: str) -> int:
            out = asyncio.run(writer.query(f"SELECT count() AS n FROM fleet.{table}"))
            return int(json.loads(out)["n"])

        assert count("pings") == 200
        assert count("dead_letters") == 1
        assert sorted(t for t, _ in skipped) == ["dead_letters", "dead_letters"]
    finally:
        consumer.stop()
        thread.join(30)
        asyncio.run(writer.close())
    assert not thread.is_alive()


def test_a_batch_revoked_while_the_store_refuses_is_not_committed_and_lands_later(
    fleet_env: FleetEnv, caplog: pytest.LogCaptureFixture
) -> None:
    settings = fleet_env.settings
    topic = fleet_env.topic(PINGS)
    start = int(time.time() * 1000) - 60_000
    pings = [Ping(f"drv-{i % 7}", start + i, 52.5, 13.4, seq=i) for i in range(300)]
    produce(settings.kafka_bootstrap, topic, [(p.driver_id.encode(), encode(p)) for p in pings])

    blocker = OwnerLock(history_dir(settings))
    retries: list[str] = []
    writer = HistoryWriter(settings)
    consumer = HistoryConsumer(
        settings,
        writer,
        contract_sinks(settings),
        policy=RetryPolicy(0.05, 0.5),
        config=consumer_config(settings),
        on_retry=lambda table, _exc, _delay: retries.append(table),
    )
    caplog.set_level(logging.INFO, logger="fleet.history.consumer")
    thread = consumer.start()
    try:
        assert wait_until(lambda: len(retries) >= 3, timeout=60)
        # A second member joins the group: the retrying member's partitions are revoked.
        other = Consumer({**consumer_config(settings), "log_level": 3})
        other.subscribe([topic])
        deadline = time.monotonic() + 60
        while not other.assignment() and time.monotonic() < deadline:
            other.poll(0.2)
        assert other.assignment()
        assert "revoked" in caplog.text
        assert sum(committed_and_end_offsets(settings, topic)[0]) == 0
        other.close()  # the first member takes every partition back

        blocker.release()

        def caught_up() -> bool:
            committed, ends = committed_and_end_offsets(settings, topic)
            return committed == ends

        assert wait_until(caught_up, timeout=60), committed_and_end_offsets(settings, topic)
        out = asyncio.run(writer.query("SELECT count() AS n FROM fleet.pings"))
        assert int(json.loads(out)["n"]) == 300
        assert thread.is_alive()
    finally:
        consumer.stop()
        thread.join(30)
        asyncio.run(writer.close())
