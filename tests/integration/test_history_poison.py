"""Poison for history on real Kafka and chDB: nothing blocks the consumer, valid rows all land."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import msgspec
import pytest
from confluent_kafka import KafkaException

from fleet.history import rows
from fleet.history.consumer import HistoryConsumer, consumer_config, contract_sinks
from fleet.history.sink import HistoryWriter
from fleet.history.topic_sinks import CONVERSION_ERROR, Received, TopicSink
from fleet.records import Ping, encode
from fleet.retry import RetryPolicy
from fleet.settings import Settings
from fleet.topics import DLQ, PINGS
from tests.conftest import FleetEnv, consume_all, produce, wait_until
from tests.integration.test_history_exactly_once import committed_and_end_offsets

pytestmark = pytest.mark.integration
DAY_MS = 86_400_000


@contextmanager
def running_consumer(
    settings: Settings, sinks: Sequence[TopicSink]
) -> Iterator[tuple[HistoryWriter, list[str]]]:
    """A real history consumer over the embedded store; yields the writer and retried tables."""
    retries: list[str] = []
    writer = HistoryWriter(settings)
    consumer = HistoryConsumer(
        settings,
        writer,
        sinks,
        policy=RetryPolicy(0.05, 0.5),
        config=consumer_config(settings),
        on_retry=lambda table, _exc, _delay: retries.append(table),
    )
    thread = consumer.start()
    try:
        yield writer, retries
    finally:
        consumer.stop()
        thread.join(30)
        asyncio.run(writer.close())
    assert not thread.is_alive()


def stored(writer: HistoryWriter, sql: str) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(asyncio.run(writer.query(sql)))
    return out


def caught_up(settings: Settings, topic: str) -> bool:
    try:
        committed, ends = committed_and_end_offsets(settings, topic)
    except KafkaException:  # a metadata hiccup (leader moving): ask again
        return False
    return committed == ends


def fresh_pings(drivers: int, per_driver: int, start_ms: int, step_ms: int) -> list[Ping]:
    return [
        Ping(f"fresh-{d}", start_ms + i * step_ms, 52.5, 13.4, seq=i)
        for d in range(drivers)
        for i in range(per_driver)
    ]


def test_a_ping_with_seq_2_pow_63_is_skipped_and_every_later_ping_lands(
    fleet_env: FleetEnv,
) -> None:
    settings = fleet_env.settings
    topic = fleet_env.topic(PINGS)
    now = int(time.time() * 1000)
    poison = json.dumps(
        {"driver_id": "drv-p", "ts_ms": now - 1000, "lat": 52.5, "lon": 13.4, "seq": 2**63}
    ).encode()
    valid = fresh_pings(6, 50, now - 60_000, 100)
    # The poison first on every partition (same key as the valid pings), valid pings after.
    messages = [(f"fresh-{d}".encode(), poison) for d in range(6)]
    messages += [(p.driver_id.encode(), encode(p)) for p in valid]
    produce(settings.kafka_bootstrap, topic, messages)

    skipped: list[tuple[str, str]] = []
    sinks = contract_sinks(settings, on_skip=lambda table, reason: skipped.append((table, reason)))
    with running_consumer(settings, sinks) as (writer, retries):
        assert wait_until(lambda: caught_up(settings, topic), timeout=90)
        counts = stored(writer, "SELECT count() AS n, max(seq) AS top FROM fleet.pings")
    assert int(counts["n"]) == len(valid)
    assert int(counts["top"]) == 49
    assert skipped == [("pings", "out_of_range")] * 6
    assert retries == []  # never retried, never blocked


class LenientPing(msgspec.Struct, frozen=True):
    """A decoder that misses the int64 bound (as a future field or a decoder bug might)."""

    driver_id: str
    ts_ms: int
    lat: float
    lon: float
    seq: int | None = None
    accuracy_m: float | None = None
    speed_mps: float | None = None
    heading_deg: float | None = None
    route_id: str | None = None


def test_a_row_that_fails_conversion_is_dead_lettered_and_the_rest_of_the_batch_stored(
    fleet_env: FleetEnv,
) -> None:
    settings = fleet_env.settings
    topic, dlq = fleet_env.topic(PINGS), fleet_env.topic(DLQ)
    decoder = msgspec.json.Decoder(LenientPing)

    def records_of(messages: Sequence[Received], _ingested_ms: int) -> list[tuple[Received, Any]]:
        return [(m, decoder.decode(m.value)) for m in messages if m.value]

    lenient = TopicSink(topic, "pings", records_of, rows.ping_rows)
    now = int(time.time() * 1000)
    poison = json.dumps(
        {"driver_id": "drv-p", "ts_ms": now, "lat": 52.5, "lon": 13.4, "seq": 2**63}
    ).encode()
    valid = fresh_pings(4, 30, now - 60_000, 100)
    produce(
        settings.kafka_bootstrap,
        topic,
        [(b"drv-p", poison)] + [(p.driver_id.encode(), encode(p)) for p in valid],
    )
    with running_consumer(settings, [lenient]) as (writer, retries):
        assert wait_until(lambda: caught_up(settings, topic), timeout=90)
        n = int(stored(writer, "SELECT count() AS n FROM fleet.pings")["n"])
    assert n == len(valid)
    assert retries == []
    letters = [json.loads(v) for _, v in consume_all(settings.kafka_bootstrap, dlq, expect=1)]
    assert [(d["reason"], d["source_topic"]) for d in letters] == [(CONVERSION_ERROR, topic)]
    assert letters[0]["raw"] == poison.decode()
    assert "pings" in letters[0]["detail"]


def test_pings_spread_over_200_days_land_in_splits_within_the_partition_limit(
    fleet_env: FleetEnv,
) -> None:
    # Kept for ten years, so the 200 days of late pings are not expired by retention.
    settings = fleet_env.settings.model_copy(update={"history_ttl_days_pings": 3650})
    topic = fleet_env.topic(PINGS)
    now = int(time.time() * 1000)
    late = fresh_pings(3, 200, now - 200 * DAY_MS, DAY_MS)  # one ping a day per driver
    produce(settings.kafka_bootstrap, topic, [(p.driver_id.encode(), encode(p)) for p in late])
    with running_consumer(settings, contract_sinks(settings)) as (writer, retries):
        assert wait_until(lambda: caught_up(settings, topic), timeout=90)
        counts = stored(
            writer,
            "SELECT count() AS n, uniqExact(toDate(intDiv(ts_ms, 1000))) AS days FROM fleet.pings",
        )
    assert int(counts["n"]) == len(late)
    assert int(counts["days"]) >= 200
    assert retries == []
