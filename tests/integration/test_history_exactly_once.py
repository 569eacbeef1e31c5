"""Exactly once in history through real Kafka, duplicates, redeliveries and a SIGKILLed worker."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from fleet.history.access import open_reader
from fleet.history.consumer import history_group
from fleet.history.errors import StoreBusy
from fleet.history.store import HistoryStore
from fleet.records import DeliveryEvent, Ping, encode
from fleet.settings import Settings
from fleet.topics import EVENTS, PINGS
from tests.conftest import FleetEnv, WorkerHandle, produce, wait_until

pytestmark = pytest.mark.integration

DRIVERS = 12
PINGS_PER_DRIVER = 250  # N = 3000 distinct identities
EVENTS_PER_DRIVER = 20


def count(settings: Settings, sql: str, starting_ok: bool = False) -> int:
    """One number from history, through whichever path is open (worker endpoint or direct).

    With starting_ok, a worker that holds the store but does not serve yet counts as 0.
    """
    try:
        store: HistoryStore = open_reader(settings)
    except StoreBusy:
        if starting_ok:
            return 0
        raise
    try:
        return int(json.loads(store.query(sql, "JSONEachRow").splitlines()[0])["n"])
    finally:
        store.close()


def committed_and_end_offsets(settings: Settings, topic: str) -> tuple[list[int], list[int]]:
    """The history group's committed offset and the end offset of every partition of topic
    (a partition with nothing committed counts as committed at 0)."""
    consumer = Consumer(
        {"bootstrap.servers": settings.kafka_bootstrap, "group.id": history_group(settings),
         "enable.auto.commit": False, "log_level": 3}
    )  # fmt: skip
    try:
        partitions = [TopicPartition(topic, p) for p in range(settings.partitions)]
        committed = [max(tp.offset, 0) for tp in consumer.committed(partitions, timeout=10)]
        ends = [consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in partitions]
        return committed, ends
    finally:
        consumer.close()


def assert_commits_cover_exactly_the_topic(settings: Settings, topic: str) -> None:
    """Everything is stored (checked before), so the group must have committed up to the end,
    and never further: a commit beyond what is stored would be data loss."""

    def offsets_match() -> bool:
        committed, ends = committed_and_end_offsets(settings, topic)
        return committed == ends

    assert wait_until(offsets_match, timeout=30), committed_and_end_offsets(settings, topic)


def fleet_pings(start_ms: int) -> list[Ping]:
    pings = []
    for d in range(DRIVERS):
        for i in range(PINGS_PER_DRIVER):
            # Every 7th ping of even drivers has no seq: its identity uses seq = -1.
            seq = None if d % 2 == 0 and i % 7 == 0 else i
            pings.append(
                Ping(f"drv-{d:03d}", start_ms + i * 1000 + d, 52.5 + i * 1e-4, 13.4 + d * 1e-3, seq)
            )
    return pings


def with_duplicates(messages: list[tuple[bytes, bytes]], rng: random.Random) -> list[Any]:
    """Every message once, a fifth of them again right away, in per-key order."""
    out = []
    for m in messages:
        out.append(m)
        if rng.random() < 0.2:
            out.append(m)
    return out


def deliver_with_crash(
    env: FleetEnv,
    worker: Callable[..., WorkerHandle],
    topic: str,
    messages: list[tuple[bytes, bytes]],
    stored: Callable[[], int],
) -> WorkerHandle:
    """First half, SIGKILL once rows land, then everything again (a producer's redelivery)
    plus the second half, and a restarted worker."""
    bootstrap = env.settings.kafka_bootstrap
    rng = random.Random(5)
    half = len(messages) // 2
    first = worker(env)
    produce(bootstrap, topic, with_duplicates(messages[:half], rng))
    assert wait_until(lambda: stored() > 0, timeout=60), first.tail()
    first.kill()  # offsets of the rows just written are (mostly) not committed yet
    produce(bootstrap, topic, with_duplicates(messages, rng))
    return worker(env)


def test_pings_hold_each_identity_once_after_duplicates_redelivery_and_sigkill(
    fleet_env: FleetEnv, worker: Callable[..., WorkerHandle]
) -> None:
    settings = fleet_env.settings
    pings = fleet_pings(int(time.time() * 1000) - 3_600_000)
    n = len({(p.driver_id, p.ts_ms, -1 if p.seq is None else p.seq) for p in pings})
    assert n == len(pings)
    messages = [(p.driver_id.encode(), encode(p)) for p in pings]

    def stored() -> int:
        return count(settings, "SELECT count() AS n FROM fleet.pings", starting_ok=True)

    second = deliver_with_crash(fleet_env, worker, fleet_env.topic(PINGS), messages, stored)
    assert wait_until(lambda: stored() >= n, timeout=120), second.tail()
    identities = "SELECT uniqExact(driver_id, ts_ms, seq) AS n FROM fleet.pings"
    missing_seq = "SELECT count() AS n FROM fleet.pings WHERE seq = -1"
    assert stored() == n
    assert count(settings, identities) == n
    assert count(settings, missing_seq) == sum(p.seq is None for p in pings)
    assert_commits_cover_exactly_the_topic(settings, fleet_env.topic(PINGS))

    # The worker gone, the CLI path opens the store directly and sees the same rows.
    second.stop()
    assert stored() == n
    assert count(settings, identities) == n
    assert_commits_cover_exactly_the_topic(settings, fleet_env.topic(PINGS))


def test_events_hold_each_event_id_once_after_duplicates_redelivery_and_sigkill(
    fleet_env: FleetEnv, worker: Callable[..., WorkerHandle]
) -> None:
    settings = fleet_env.settings
    start = int(time.time() * 1000) - 3_600_000
    events = [
        DeliveryEvent(
            event_id=f"ev-{d}-{i}",
            driver_id=f"drv-{d:03d}",
            type="delivered" if i % 3 else "arrived",
            ts_ms=start + i * 60_000,
            route_id=f"rt-{d}",
            stop_id=f"st-{i}",
        )
        for d in range(DRIVERS)
        for i in range(EVENTS_PER_DRIVER)
    ]
    messages = [(e.driver_id.encode(), encode(e)) for e in events]

    def stored() -> int:
        return count(settings, "SELECT count() AS n FROM fleet.events", starting_ok=True)

    second = deliver_with_crash(fleet_env, worker, fleet_env.topic(EVENTS), messages, stored)
    assert wait_until(lambda: stored() >= len(events), timeout=120), second.tail()
    assert stored() == len(events)
    assert count(settings, "SELECT uniqExact(event_id) AS n FROM fleet.events") == len(events)
    assert_commits_cover_exactly_the_topic(settings, fleet_env.topic(EVENTS))
    second.stop()
    assert stored() == len(events)
    assert_commits_cover_exactly_the_topic(settings, fleet_env.topic(EVENTS))
