"""The ingest agent and its timers; moved pings go to whoever subscribed to ``moved_pings``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

from faust.types import TP, StreamT

from fleet.clock import now_ms
from fleet.decode import dead_letter, decode_ping_batch
from fleet.ingest import LivePosition
from fleet.live import SWEEP_LUA, WRITE_POSITIONS_LUA, position_args
from fleet.topics import PINGS, topic_name
from streams import hooks, metrics
from streams.app import app, settings
from streams.dead_letters import PROCESSING_ERRORS, processing_error, send_letter
from streams.ingest.state import INGESTOR, forget, load_states, save_states, unsaved
from streams.metrics import observe_many
from streams.resilience import retry_transient
from streams.resources import redis
from streams.topics import pings_topic

log = logging.getLogger(__name__)

SOURCE = topic_name(settings, PINGS)


class PingRecord(NamedTuple):
    """One message of fleet.pings as the batch step needs it, whoever consumed it."""

    key: bytes | None
    value: bytes | None
    partition: int
    offset: int
    timestamp_s: float  # the Kafka record timestamp


Highwater = Callable[[int], "int | None"]  # partition -> high watermark (None: unknown)


def _faust_highwater(partition: int) -> int | None:
    high = app.consumer.highwater(TP(SOURCE, partition))
    return int(high) if high is not None else None


async def ingest(stream: StreamT[bytes]) -> None:
    """The Faust agent over fleet.pings (FLEET_PING_CONSUMER=agent)."""
    batches = stream.take_events(  # type: ignore[attr-defined]
        settings.batch_size, within=settings.batch_within_s
    )
    async for events in batches:
        records = [
            PingRecord(e.key, e.value, e.message.partition, e.message.offset, e.message.timestamp)
            for e in events
        ]
        await ingest_or_isolate(records, _faust_highwater)


if settings.ping_consumer == "agent":
    app.agent(pings_topic, name="streams.ingest.agents.ingest")(ingest)


async def ingest_or_isolate(records: Sequence[PingRecord], highwater: Highwater) -> None:
    """One batch; a bug must not stop the pipeline or lose the batch: on failure, isolate
    the culprit(s) message by message, starting again from the durable states."""
    try:
        await ingest_records(records, highwater)
    except Exception:
        log.exception("ingest batch of %d failed; retrying message by message", len(records))
        forget()
        await ingest_one_by_one(records, highwater)


async def ingest_one_by_one(records: Sequence[PingRecord], highwater: Highwater) -> None:
    """Process each message alone; one that still fails is dead-lettered (processing_error)."""
    for record in records:
        try:
            await ingest_records([record], highwater)
        except Exception as exc:
            log.exception("ping at offset %s cannot be processed", record.offset)
            PROCESSING_ERRORS.labels(PINGS).inc()
            letter = dead_letter(SOURCE, record.value, processing_error(exc), now_ms())
            await send_letter(PINGS, record.key, letter)
            metrics.PINGS_REJECTED.labels(letter.reason).inc()


async def ingest_records(records: Sequence[PingRecord], highwater: Highwater) -> None:
    """One batch: decode, de-duplicate, move live positions, dead-letter the invalid."""
    received = now_ms()
    decoded = decode_ping_batch(
        ((r.key, r.value) for r in records),
        source_topic=SOURCE,
        now_ms=received,
        max_future_ms=settings.max_future_ms,
        max_bytes=settings.max_message_bytes,
        require_key=True,  # key_mismatch: live tracking and history alike
    )
    partition_of: dict[str, int] = {}
    for ping, i in zip(decoded.pings, decoded.positions, strict=True):
        partition_of[ping.driver_id] = records[i].partition
    load_states(partition_of)
    result = INGESTOR.ingest(decoded.pings)
    # The live positions go to Redis while tracking computes (the moved-pings hook); tracking
    # awaits them before its own writes to the driver hashes. The state that marks these
    # pings as seen is saved only once they are written: a retried batch stays correct.
    live_written: asyncio.Future[int] | None = None
    if result.live:
        args: list[str | int] = [settings.position_ttl_s]
        args += position_args(result.live.values(), received)
        live_written = asyncio.ensure_future(_write_positions(args))
    try:
        for dl_key, letter in decoded.dead_letters:
            await send_letter(PINGS, dl_key, letter)
            metrics.PINGS_REJECTED.labels(letter.reason).inc()
        if result.moved:
            # Subscribers' failures are theirs (logged, counted): valid pings already live
            # are neither undone nor dead-lettered.
            moved = hooks.MovedPings(result.moved, received, partition_of, live_written)
            await hooks.moved_pings.fire(moved)
        written = await live_written if live_written is not None else now_ms()
    finally:
        if live_written is not None and not live_written.done():
            live_written.cancel()  # cancelled: the batch is retried, writes are idempotent
    for driver in result.changed:
        unsaved.mark(driver)
    save_states(unsaved.take_due())
    _observe(records, result.live.values(), written, highwater)
    metrics.PINGS_ACCEPTED.inc(len(result.accepted))
    metrics.PINGS_DUPLICATE.inc(result.duplicates)
    metrics.PINGS_LATE.inc(result.late)
    metrics.PINGS_JUMP.inc(result.jumps)
    metrics.BATCH_SIZE.observe(len(records))


async def _write_positions(args: list[str | int]) -> int:
    """Write a batch's live positions; when Redis wrote them (its clock, ms): the loop may
    read the reply only after tracking's step, which must not count as ping -> Redis time."""
    write_positions = redis.script(WRITE_POSITIONS_LUA)
    _written, redis_ms = await retry_transient(
        "redis_positions", lambda: write_positions(args=args)
    )
    return int(redis_ms)


def _observe(
    records: Sequence[PingRecord],
    live: Iterable[LivePosition],
    written_ms: int,
    highwater: Highwater,
) -> None:
    """Latency from each live ping's ts_ms and each record's Kafka timestamp; lag per partition."""
    observe_many(
        metrics.PING_TO_REDIS.labels("event"),
        [max(0.0, (written_ms - pos.ping.ts_ms) / 1000) for pos in live],
    )
    written_s = written_ms / 1000
    observe_many(
        metrics.PING_TO_REDIS.labels("kafka"),
        [max(0.0, written_s - r.timestamp_s) for r in records],
    )
    last: dict[int, int] = {}
    for r in records:
        last[r.partition] = r.offset
    for partition, offset in last.items():
        high = highwater(partition)
        if high is not None:
            metrics.CONSUMER_LAG.labels(str(partition)).set(max(0, high - 1 - offset))


@app.timer(interval=min(1.0, max(settings.state_flush_s, 0.1)))
async def flush_states_periodically() -> None:
    """Quiet drivers' last changes are saved too, not only when the next batch comes."""
    save_states(unsaved.take_due())


@app.timer(interval=settings.sweep_interval_s)
async def sweep_expired() -> None:
    """Drop expired markers from fleet:pos and drivers gone quiet from zone counts."""
    now = now_ms()
    sweep = redis.script(SWEEP_LUA)
    await sweep(args=[now - settings.position_ttl_s * 1000, now - settings.zone_ttl_s * 1000])
