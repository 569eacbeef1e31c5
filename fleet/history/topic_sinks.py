"""What history does with each topic's messages: decode, convert to rows, reject the unfit.

Policy per stage: a message that fails decoding is skipped and reported to ``on_skip`` (the
live path dead-letters invalid input; history only counts it). A decoded record whose row
the store cannot hold (a conversion error, which decoding's bounds should already prevent)
is dead-lettered with reason ``history_conversion_error`` and the rest of the batch is
stored: such a row is never retried forever. The dead-letter topic's own rows are only
skipped, so a dead letter never begets another.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple, Protocol, cast

import msgspec
import pyarrow as pa
from confluent_kafka import Message, Producer

from fleet.clients import confluent_config
from fleet.decode import dead_letter, decode_ping_batch, decode_struct
from fleet.errors import InvalidMessage
from fleet.history import rows
from fleet.history.errors import HistoryError
from fleet.records import (
    Alert,
    DeadLetter,
    DeliveryEvent,
    EtaUpdate,
    RoutePlan,
    RouteUpdate,
    encode,
)
from fleet.settings import Settings
from fleet.topics import (
    ALERTS,
    DLQ,
    ETAS,
    EVENTS,
    PINGS,
    ROUTE_PROPOSALS,
    ROUTE_UPDATES,
    ROUTES,
    topic_name,
)

log = logging.getLogger(__name__)
CONVERSION_ERROR = "history_conversion_error"
SEND_TIMEOUT_S = 30.0


class Received(NamedTuple):
    """One polled message, with where it came from (its identity for tokens and commits)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None

    @classmethod
    def of(cls, message: Message) -> Received:
        return cls(
            cast(str, message.topic()), cast(int, message.partition()),
            cast(int, message.offset()), message.key(), message.value(),
        )  # fmt: skip


SkipHook = Callable[[str, str], None]  # table, reason
RecordsOf = Callable[[Sequence[Received], int], list[tuple[Received, Any]]]
BuildRows = Callable[[Sequence[Any], int], pa.Table]  # records, ingested_ms -> rows
Rejected = list[tuple[bytes | None, DeadLetter]]  # (Kafka key, dead letter)


def _ignore(*_args: Any) -> None:
    pass


@dataclass(frozen=True, slots=True)
class TopicSink:
    """Where one topic's messages go: a history table, how records are decoded and rows made."""

    topic: str
    table: str
    records_of: RecordsOf  # messages, ingested_ms -> (message, record) of the valid ones
    build: BuildRows
    on_skip: SkipHook = _ignore  # also told of each row rejected at conversion
    dead_letters_rejects: bool = True  # False for the dead-letter topic itself


@dataclass(frozen=True, slots=True)
class Converted:
    """A topic's rows ready to insert, and the dead letters of records that could not be."""

    rows: pa.Table
    rejected: Rejected


def convert(sink: TopicSink, messages: Sequence[Received], ingested_ms: int) -> Converted:
    """Rows of the valid messages; a record that fails conversion is rejected alone."""
    pairs = sink.records_of(messages, ingested_ms)
    try:
        return Converted(sink.build([record for _, record in pairs], ingested_ms), [])
    except Exception:  # some row does not fit its column: find it, keep the others
        log.warning("history %s: a batch failed conversion; converting row by row", sink.table)
    kept: list[Any] = []
    rejected: Rejected = []
    for message, record in pairs:
        try:
            sink.build([record], ingested_ms)
        except Exception as exc:
            error = InvalidMessage(CONVERSION_ERROR, f"{sink.table}: {type(exc).__name__}: {exc}")
            log.warning("history %s: %s", sink.table, error)
            sink.on_skip(sink.table, CONVERSION_ERROR)
            if sink.dead_letters_rejects:
                rejected.append(
                    (message.key, dead_letter(message.topic, message.value, error, ingested_ms))
                )
        else:
            kept.append(record)
    return Converted(sink.build(kept, ingested_ms), rejected)


def ping_sink(settings: Settings, on_skip: SkipHook = _ignore) -> TopicSink:
    """Pings: the valid ones become rows; the invalid (dead-lettered by ingest) are skipped."""
    topic = topic_name(settings, PINGS)

    def records_of(messages: Sequence[Received], ingested_ms: int) -> list[tuple[Received, Any]]:
        decoded = decode_ping_batch(
            ((m.key, m.value) for m in messages),
            source_topic=topic,
            now_ms=ingested_ms,
            max_future_ms=settings.max_future_ms,
            max_bytes=settings.max_message_bytes,
            require_key=True,  # key_mismatch: live tracking and history alike
        )
        for _key, letter in decoded.dead_letters:
            on_skip("pings", letter.reason)
        return [
            (messages[i], ping) for i, ping in zip(decoded.positions, decoded.pings, strict=True)
        ]

    return TopicSink(topic, "pings", records_of, rows.ping_rows, on_skip)


def record_sink(
    settings: Settings,
    base_topic: str,
    table: str,
    record_type: type[msgspec.Struct],
    build: BuildRows,
    on_skip: SkipHook = _ignore,
) -> TopicSink:
    """A contract record topic: decoded records become rows; the invalid are skipped."""
    decoder = msgspec.json.Decoder(record_type)

    def records_of(messages: Sequence[Received], ingested_ms: int) -> list[tuple[Received, Any]]:
        out = []
        for message in messages:
            try:
                out.append(
                    (message, decode_struct(message.value, decoder, settings.max_message_bytes))
                )
            except InvalidMessage as exc:
                on_skip(table, exc.reason)
        return out

    return TopicSink(
        topic_name(settings, base_topic), table, records_of, build, on_skip, base_topic != DLQ
    )


def contract_sinks(settings: Settings, on_skip: SkipHook = _ignore) -> list[TopicSink]:
    """Every topic history stores, with its table."""
    return [
        ping_sink(settings, on_skip),
        record_sink(settings, EVENTS, "events", DeliveryEvent, rows.event_rows, on_skip),
        record_sink(settings, ALERTS, "alerts", Alert, rows.alert_rows, on_skip),
        record_sink(settings, ETAS, "etas", EtaUpdate, rows.eta_rows, on_skip),
        record_sink(settings, ROUTES, "route_plans", RoutePlan, rows.route_plan_rows, on_skip),
        record_sink(settings, DLQ, "dead_letters", DeadLetter, rows.dead_letter_rows, on_skip),
        record_sink(settings, ROUTE_UPDATES, "decisions", RouteUpdate,
                    partial(rows.decision_rows, applied=True), on_skip),
        record_sink(settings, ROUTE_PROPOSALS, "decisions", RouteUpdate,
                    partial(rows.decision_rows, applied=False), on_skip),
    ]  # fmt: skip


class DeadLetterSender(Protocol):
    """Publishes dead letters; returns only once every one is acknowledged (else raises)."""

    def send(self, letters: Rejected) -> None: ...

    def close(self) -> None: ...


class KafkaDeadLetters:
    """Dead letters of history's rejected rows, to the contract's dead-letter topic."""

    def __init__(self, settings: Settings, bootstrap: str | None = None) -> None:
        self.topic = topic_name(settings, DLQ)
        self._config = confluent_config(settings, {
            "bootstrap.servers": bootstrap or settings.kafka_bootstrap,
            "client.id": f"{settings.app_id}-history-dlq",
            "enable.idempotence": True,
        })  # fmt: skip
        self._producer: Producer | None = None

    def send(self, letters: Rejected) -> None:
        if not letters:
            return
        if self._producer is None:
            self._producer = Producer(self._config, logger=log)
        failures: list[str] = []

        def delivered(error: Any, _message: Any) -> None:
            if error is not None:
                failures.append(str(error))

        for key, letter in letters:
            self._producer.produce(self.topic, encode(letter), key, on_delivery=delivered)
        if self._producer.flush(SEND_TIMEOUT_S) > 0 or failures:
            raise HistoryError(f"dead letters to {self.topic} not acknowledged: {failures}")

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(SEND_TIMEOUT_S)
            self._producer = None
