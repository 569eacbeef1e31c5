"""fleet.pings in batches, off Faust's per-event stream (docs/ping-batches.md).

A confluent-kafka consumer polled from the worker's event loop takes the pings of the
partitions Faust assigned to this worker (the active partitions of the driver-state
changelog, so driver state stays with its owner), runs the same batch step as the Faust
agent, and commits offsets in its own group only once the states the batch changed are
saved to their changelogs and the producer has them acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from mode import Service

from fleet.clients import confluent_config
from fleet.settings import Settings
from fleet.topics import EVENTS, topic_name
from streams import coalesce, metrics
from streams.app import app, settings
from streams.changelog import DIRECT
from streams.ingest.agents import SOURCE, PingRecord, ingest_or_isolate
from streams.ingest.state import driver_states, unsaved

log = logging.getLogger(__name__)

COMMIT_EVERY_S = 1.0
IDLE_SLEEP_S = 0.005


def ping_group(settings: Settings) -> str:
    """The consumer group whose committed offsets say which pings are done."""
    return f"{settings.app_id}-pings"


def consumer_config(settings: Settings) -> dict[str, Any]:
    """Manual assignment (no group membership: Faust's group decides), manual commits."""
    return confluent_config(
        settings,
        {
            "group.id": ping_group(settings),
            "client.id": f"{settings.app_id}-pings",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "queued.max.messages.kbytes": 65536,
            "fetch.wait.max.ms": 20,
            "log_level": 3,
        },
    )


@dataclass(frozen=True, slots=True)
class Processed:
    """A batch whose effects are done; its offsets wait until its state changes are saved."""

    done_at: float  # coalesce clock, after the batch marked its changes
    offsets: dict[int, int]  # partition -> next offset to read


def record_of(message: Message) -> PingRecord:
    return PingRecord(
        message.key(),
        message.value(),
        message.partition() or 0,
        message.offset() or 0,
        message.timestamp()[1] / 1000,
    )


def owned_partitions() -> frozenset[int]:
    """Partitions whose driver state this worker owns (active, not standby).

    Faust assigns partition p of every topic with the same partition count to one worker
    (co-partitioning): the driver-state changelog's and fleet.events' (driver-keyed, always
    provisioned; a changelog created after the first assignment is missing from it)."""
    names = {driver_states.changelog_topic.get_topic_name(), topic_name(settings, EVENTS)}
    return frozenset(tp.partition for tp in app.assignor.assigned_actives() if tp.topic in names)


async def changelog_acknowledged() -> None:
    """Wait until the messages Faust's producer buffer holds now are sent and acknowledged.

    Not ``app.producer.flush()``: that waits until the buffer is empty, which under steady
    load (every agent writing changelogs) may never happen, and commits would stop. The
    buffer is FIFO, so the writes of the states saved so far go out before later ones.
    """
    producer = app.producer
    buffer = producer.buffer
    left = buffer.size
    while left > 0 and buffer.size > 0:
        left -= await buffer.flush_atmost(left)  # one message_sent per send, 0.1 s give-up
    await DIRECT.flush()  # the per-driver tables' writes so far (streams/changelog.py)
    transport = getattr(producer, "_producer", None)
    if transport is not None:
        await transport.flush()  # the batches in flight now, acknowledged


class PingBatches(Service):
    """The batch ping consumer, started and stopped with the worker."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.consumer: Consumer | None = None
        self.owned: frozenset[int] = frozenset()
        self.pending: deque[Processed] = deque()
        self.processed: dict[int, int] = {}  # partition -> next offset, for the lag gauge
        self.lock = asyncio.Lock()  # a batch and a rebalance never interleave
        self.last_commit = time.monotonic()
        self.committing: asyncio.Future[None] | None = None

    async def on_start(self) -> None:
        self.consumer = Consumer(consumer_config(settings))

    async def on_stop(self) -> None:
        # Offsets were committed on_before_shutdown, while the producer still ran.
        if self.consumer is not None:
            self.consumer.close()
            self.consumer = None

    # --- rebalances (Faust's group decides; this consumer follows) --------------------------
    async def on_revoked(self) -> None:
        """Finish the batch in flight, save every change, commit, let the partitions go."""
        async with self.lock:
            await self.release()

    async def release(self) -> None:
        if self.consumer is None or not self.owned:
            return
        coalesce.save_all()  # every coalesced state change (ingest, tracking) to its table
        await self.commit(force=True)
        self.consumer.unassign()
        for partition in self.owned:
            metrics.PING_POSITION.remove(str(partition))
        self.owned = frozenset()
        self.processed.clear()

    async def on_assigned(self) -> None:
        """Tables are recovered: take the pings of the partitions whose state is ours."""
        async with self.lock:
            owned = owned_partitions()
            if self.consumer is None or owned == self.owned:
                return
            await self.release()
            self.consumer.assign([TopicPartition(SOURCE, p) for p in sorted(owned)])
            self.owned = owned
            log.info("ping batches: partitions %s", sorted(owned))

    # --- the loop --------------------------------------------------------------------------
    @Service.task
    async def _consume(self) -> None:
        while not self.should_stop:
            if self.consumer is None or not self.owned:
                await asyncio.sleep(0.05)
                continue
            messages = await self.take()
            if messages:
                async with self.lock:
                    if self.owned:  # not released while we waited
                        await self.process(messages)
            self.commit_soon()

    async def take(self) -> list[Message]:
        """Up to FLEET_BATCH_SIZE pings, waiting at most FLEET_BATCH_WITHIN_S to fill."""
        assert self.consumer is not None
        size = settings.batch_size
        batch = self.consumer.consume(size, 0)
        deadline = time.monotonic() + settings.batch_within_s
        while len(batch) < size and time.monotonic() < deadline:
            await asyncio.sleep(IDLE_SLEEP_S)
            batch += self.consumer.consume(size - len(batch), 0)
        return batch

    async def process(self, messages: list[Message]) -> None:
        records: list[PingRecord] = []
        for m in messages:
            error = m.error()
            if error is None:
                records.append(record_of(m))
            elif error.code() != KafkaError._PARTITION_EOF:
                log.warning("ping consumer: %s", error)
        if not records:
            return
        await ingest_or_isolate(records, self.highwater)
        offsets: dict[int, int] = {}
        for r in records:
            offsets[r.partition] = r.offset + 1
        self.processed.update(offsets)
        for partition, offset in offsets.items():
            metrics.PING_POSITION.labels(str(partition)).set(offset)
        self.pending.append(Processed(unsaved.clock(), offsets))

    def highwater(self, partition: int) -> int | None:
        assert self.consumer is not None
        _low, high = self.consumer.get_watermark_offsets(
            TopicPartition(SOURCE, partition), cached=True
        )
        return high if high >= 0 else None

    def commit_soon(self) -> None:
        """Start a commit in the background once a second (the producer flush it waits for
        must not hold up the next batch)."""
        if self.committing is not None and not self.committing.done():
            return
        if time.monotonic() - self.last_commit < COMMIT_EVERY_S or not self.pending:
            return
        self.last_commit = time.monotonic()
        self.committing = asyncio.ensure_future(self.commit())

    async def commit(self, force: bool = False) -> None:
        """Commit the offsets of batches whose state changes are all saved (all, if forced:
        the caller saved every change first)."""
        if force and self.committing is not None:
            await asyncio.wait([self.committing])
        if self.consumer is None or not self.pending:
            return
        oldest = coalesce.oldest_unsaved()
        offsets: dict[int, int] = {}
        while self.pending and (force or self.pending[0].done_at < oldest):
            offsets.update(self.pending.popleft().offsets)
        if not offsets:
            return
        await changelog_acknowledged()  # the saved states are acknowledged by Kafka
        tps = [TopicPartition(SOURCE, p, o) for p, o in offsets.items() if p in self.owned]
        if tps:
            try:
                self.consumer.commit(offsets=tps, asynchronous=False)
            except KafkaException as exc:  # the next commit covers these offsets too
                log.warning("ping offsets not committed: %s", exc)


def _connect(service: PingBatches) -> None:
    """Follow Faust's rebalances and shutdown."""

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def release_pings(app: object, *args: object, **kwargs: object) -> None:
        await service.on_revoked()

    @app.on_rebalance_complete.connect  # type: ignore[arg-type]
    async def take_pings(app: object, *args: object, **kwargs: object) -> None:
        await service.on_assigned()

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def commit_pings(app: object, *args: object, **kwargs: object) -> None:
        await service.on_revoked()  # while the producer still runs


ping_batches: PingBatches | None = None
if settings.ping_consumer == "batch":
    ping_batches = app.resource(PingBatches())
    _connect(ping_batches)
