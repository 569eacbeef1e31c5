"""History sinks: contract topics in batches -> rows -> bulk inserts, exactly once per identity.

Policy per stage: invalid pings are skipped here (the ingest agent dead-letters them);
other invalid messages are skipped and counted by reason (their producers own the
dead-lettering); a failing store is retried until the batch lands (backpressure), so
offsets are committed only for stored messages. Redeliveries after a crash are folded by
the ReplacingMergeTree identity keys, exact retries by the insert token.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence

import msgspec
import pyarrow as pa
from faust.types import EventT, StreamT
from prometheus_client import Counter

from fleet.clock import now_ms
from fleet.decode import decode_ping_batch, decode_struct
from fleet.errors import InvalidMessage
from fleet.history import rows
from fleet.history.sink import HistoryWriter, batch_token
from fleet.records import Alert, DeadLetter, DeliveryEvent, EtaUpdate, RoutePlan
from fleet.topics import ALERTS, ETAS, EVENTS, PINGS, ROUTES, topic_name
from streams.app import app, dlq_topic, pings_topic, raw_topic, settings

log = logging.getLogger(__name__)

ROWS_WRITTEN = Counter("fleet_history_rows_total", "Rows inserted into history", ["table"])
SKIPPED = Counter(
    "fleet_history_skipped_total", "Invalid messages not written to history", ["table", "reason"]
)
RETRIES = Counter("fleet_history_retries_total", "Failed history writes retried", ["table"])


def _on_retry(table: str, exc: Exception, delay: float) -> None:
    RETRIES.labels(table).inc()
    log.warning("history %s: write failed (%s); retrying in %.1f s", table, exc, delay)


writer = HistoryWriter(settings, on_retry=_on_retry)
events_topic = raw_topic(EVENTS)
alerts_topic = raw_topic(ALERTS)
etas_topic = raw_topic(ETAS)
routes_topic = raw_topic(ROUTES)
PINGS_SOURCE = topic_name(settings, PINGS)


def take_batches(stream: StreamT[bytes]) -> AsyncIterator[Sequence[EventT]]:
    """Batches of events; each is acknowledged only after the loop body has stored it."""
    batches: AsyncIterator[Sequence[EventT]] = stream.take_events(  # type: ignore[attr-defined]
        settings.history_batch_size, within=settings.history_batch_within_s
    )
    return batches


RowBuilder = Callable[[Sequence[msgspec.Struct], int], pa.Table]


async def store_events(table: str, events: Sequence[EventT], table_rows: pa.Table) -> None:
    """Insert one batch's rows under the batch's token; returns only once stored."""
    token = batch_token(
        table, ((e.message.topic, e.message.partition, e.message.offset) for e in events)
    )
    await writer.insert(table, table_rows, token)
    ROWS_WRITTEN.labels(table).inc(table_rows.num_rows)


def decode_valid(
    table: str, events: Sequence[EventT], decoder: msgspec.json.Decoder[msgspec.Struct]
) -> list[msgspec.Struct]:
    """The valid records of a batch; the invalid are counted by reason and skipped."""
    records = []
    for event in events:
        try:
            records.append(decode_struct(event.value, decoder, settings.max_message_bytes))
        except InvalidMessage as exc:
            SKIPPED.labels(table, exc.reason).inc()
    return records


async def sink_records(
    table: str, stream: StreamT[bytes], record_type: type[msgspec.Struct], build: RowBuilder
) -> None:
    """The loop of every non-ping sink: take a batch, decode, convert, store."""
    decoder = msgspec.json.Decoder(record_type)
    async for events in take_batches(stream):
        records = decode_valid(table, events, decoder)
        await store_events(table, events, build(records, now_ms()))


@app.task
async def history_store() -> None:
    """Own the store from the start and answer readers (CLI, training, dashboards)."""
    await writer.serve_readers(settings.history_query_port)
    await writer.open()


@app.agent(pings_topic)
async def history_pings(stream: StreamT[bytes]) -> None:
    async for events in take_batches(stream):
        received = now_ms()
        decoded = decode_ping_batch(
            ((None, e.value) for e in events),
            source_topic=PINGS_SOURCE,
            now_ms=received,
            max_future_ms=settings.max_future_ms,
            max_bytes=settings.max_message_bytes,
        )
        await store_events("pings", events, rows.ping_rows(decoded.pings, received))


@app.agent(events_topic)
async def history_events(stream: StreamT[bytes]) -> None:
    await sink_records("events", stream, DeliveryEvent, rows.event_rows)  # type: ignore[arg-type]


@app.agent(alerts_topic)
async def history_alerts(stream: StreamT[bytes]) -> None:
    await sink_records("alerts", stream, Alert, rows.alert_rows)  # type: ignore[arg-type]


@app.agent(etas_topic)
async def history_etas(stream: StreamT[bytes]) -> None:
    await sink_records("etas", stream, EtaUpdate, rows.eta_rows)  # type: ignore[arg-type]


@app.agent(routes_topic)
async def history_route_plans(stream: StreamT[bytes]) -> None:
    await sink_records("route_plans", stream, RoutePlan, rows.route_plan_rows)  # type: ignore[arg-type]


@app.agent(dlq_topic)
async def history_dead_letters(stream: StreamT[bytes]) -> None:
    await sink_records("dead_letters", stream, DeadLetter, rows.dead_letter_rows)  # type: ignore[arg-type]
