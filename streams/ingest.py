"""The ingest agent: raw pings in batches -> dead letters, driver state, Redis live positions."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from functools import partial

import redis.asyncio as aioredis
from faust.types import TP, EventT, StreamT

from fleet.clock import now_ms
from fleet.decode import dead_letter, decode_ping_batch
from fleet.errors import InvalidMessage
from fleet.ingest import IngestConfig, Ingestor, LivePosition, decode_state, encode_state
from fleet.live import SWEEP_LUA, WRITE_POSITIONS_LUA, position_args
from fleet.records import Ping, encode
from fleet.topics import PINGS, topic_name
from streams import metrics, tracking
from streams.app import app, dlq_topic, pings_topic, settings, source_partitioned_table
from streams.coalesce import DueWrites
from streams.resilience import retry_transient

log = logging.getLogger(__name__)

driver_states = source_partitioned_table("ingest-driver-state")

CONFIG = IngestConfig(
    max_speed_mps=settings.max_speed_mps,
    confirm_fixes=settings.jump_confirm_fixes,
    zone_resolution=settings.zone_resolution,
)
SOURCE = topic_name(settings, PINGS)
INGESTOR = Ingestor(CONFIG)  # cache over the table: states of the drivers this worker owns
_unsaved = DueWrites(settings.state_flush_s)  # drivers whose state the table lacks

_redis = aioredis.Redis.from_url(settings.redis_url)
_write_positions = _redis.register_script(WRITE_POSITIONS_LUA)
_sweep = _redis.register_script(SWEEP_LUA)


@app.task
async def start_metrics() -> None:
    metrics.serve(settings.metrics_port)


@app.agent(pings_topic)
async def ingest(stream: StreamT[bytes]) -> None:
    batches = stream.take_events(  # type: ignore[attr-defined]
        settings.batch_size, within=settings.batch_within_s
    )
    async for events in batches:
        try:
            await ingest_events(events)
        except Exception:
            # A bug must not stop the pipeline or lose the batch: isolate the culprit(s),
            # starting again from the durable states.
            log.exception("ingest batch of %d failed; retrying message by message", len(events))
            _unsaved.clear()
            INGESTOR.forget()
            await ingest_one_by_one(events)


@app.on_partitions_revoked.connect  # type: ignore[arg-type]
async def forget_states(app: object, *args: object, **kwargs: object) -> None:
    """Partitions may move to another worker: save what changed, then reload states from the
    table from now on."""
    try:
        save_states(_unsaved.take_all())
    except Exception:  # the partitions may already be gone: the next owner replays from offsets
        log.exception("could not save driver states before a rebalance")
    _unsaved.clear()
    INGESTOR.forget()


@app.on_before_shutdown.connect  # type: ignore[arg-type]
async def save_states_on_shutdown(app: object, *args: object, **kwargs: object) -> None:
    """A clean stop saves every change (the producer is flushed right after)."""
    save_states(_unsaved.take_all())


def save_states(drivers: Iterable[str]) -> None:
    """Write drivers' states to the changelog-backed table (source partitions recorded).

    Saving is coalesced (streams/coalesce.py): a crash loses at most FLEET_STATE_FLUSH_S of
    state, which the Redis write (last-writer-wins) and history de-duplication absorb.
    """
    states = INGESTOR.states
    for driver in drivers:
        state = states.get(driver)
        if state is not None:
            driver_states[driver.encode()] = encode_state(state)


async def ingest_one_by_one(events: Sequence[EventT]) -> None:
    """Process each message alone; one that still fails is dead-lettered with its error."""
    for event in events:
        try:
            await ingest_events([event])
        except Exception as exc:
            log.exception("ping at offset %s cannot be processed", event.message.offset)
            error = InvalidMessage("processing_error", f"{type(exc).__name__}: {exc}")
            letter = dead_letter(SOURCE, event.value, error, now_ms())
            send = partial(dlq_topic.send, key=event.key, value=encode(letter))
            await retry_transient("dlq", send)
            metrics.PINGS_REJECTED.labels(letter.reason).inc()


async def ingest_events(events: Sequence[EventT]) -> None:
    """One batch: decode, de-duplicate, move live positions, dead-letter the invalid."""
    received = now_ms()
    decoded = decode_ping_batch(
        ((e.key, e.value) for e in events),
        source_topic=SOURCE,
        now_ms=received,
        max_future_ms=settings.max_future_ms,
        max_bytes=settings.max_message_bytes,
    )
    partition_of: dict[str, int] = {}
    for ping, i in zip(decoded.pings, decoded.positions, strict=True):
        partition_of[ping.driver_id] = events[i].message.partition
    states = INGESTOR.states
    for d in partition_of:
        if d not in states:
            states[d] = decode_state(driver_states.get(d.encode()))  # type: ignore[arg-type]
    result = INGESTOR.ingest(decoded.pings)
    # Effects in an order that keeps a retried batch correct: the read model first (idempotent,
    # last-writer-wins), then the state that marks these pings as seen.
    if result.live:
        args: list[str | int] = [settings.position_ttl_s]
        args += position_args(result.live.values(), received)
        await retry_transient("redis_positions", lambda: _write_positions(args=args))
    written = now_ms()
    recorded = driver_states.source_partition
    for driver, partition in partition_of.items():
        recorded[driver.encode()] = partition  # also read by route tracking for its table
    for driver in result.changed:
        _unsaved.mark(driver)
    save_states(_unsaved.take_due())
    for dl_key, letter in decoded.dead_letters:
        await dlq_topic.send(key=dl_key, value=encode(letter))
        metrics.PINGS_REJECTED.labels(letter.reason).inc()
    _observe(events, result.live.values(), written)
    metrics.PINGS_ACCEPTED.inc(len(result.accepted))
    metrics.PINGS_DUPLICATE.inc(result.duplicates)
    metrics.PINGS_LATE.inc(result.late)
    metrics.PINGS_JUMP.inc(result.jumps)
    metrics.BATCH_SIZE.observe(len(events))
    if result.moved:
        await _track(result.moved, received)


async def _track(moved: list[Ping], received: int) -> None:
    """Hand the pings that moved drivers to route tracking. Its failure must not undo or
    dead-letter pings that are valid and already live: it is logged and counted instead."""
    try:
        await tracking.on_pings(moved, received)
    except Exception:
        metrics.PING_HOOK_ERRORS.inc()
        log.exception("route tracking failed on a batch of %d pings", len(moved))


def _observe(events: Sequence[EventT], live: Iterable[LivePosition], written_ms: int) -> None:
    """Latency from each live ping's ts_ms and each record's Kafka timestamp; lag per partition."""
    event_clock = metrics.PING_TO_REDIS.labels("event")
    kafka_clock = metrics.PING_TO_REDIS.labels("kafka")
    for pos in live:
        event_clock.observe(max(0.0, (written_ms - pos.ping.ts_ms) / 1000))
    written_s = written_ms / 1000
    last: dict[TP, int] = {}
    for e in events:
        kafka_clock.observe(max(0.0, written_s - e.message.timestamp))
        last[e.message.tp] = e.message.offset
    for tp, offset in last.items():
        high = app.consumer.highwater(tp)
        if high is not None:
            metrics.CONSUMER_LAG.labels(str(tp.partition)).set(max(0, high - 1 - offset))


@app.timer(interval=min(1.0, max(settings.state_flush_s, 0.1)))
async def flush_states_periodically() -> None:
    """Quiet drivers' last changes are saved too, not only when the next batch comes."""
    save_states(_unsaved.take_due())


@app.timer(interval=settings.sweep_interval_s)
async def sweep_expired() -> None:
    """Drop expired markers from fleet:pos and drivers gone quiet from zone counts."""
    now = now_ms()
    await _sweep(args=[now - settings.position_ttl_s * 1000, now - settings.zone_ttl_s * 1000])
