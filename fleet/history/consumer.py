"""The history sink's own Kafka consumer: poll a batch, store its rows, then commit its offsets.

History reads the contract topics in a consumer group of its own (``{app_id}-history``),
with confluent-kafka on a dedicated thread, independent of the Faust agents of the live
path. Per batch: group the messages by topic, turn each topic's messages into rows, insert
them under a token of their (topic, partition, offset) set, and only when every insert of
the batch succeeded commit offset + 1 per partition, synchronously.

Policy: invalid messages are skipped and reported to ``on_skip`` by reason; a row that
fails conversion is dead-lettered and the rest stored (``topic_sinks``); an insert is split
to the store's per-insert partition limit (``partitions``); a failing store (or dead-letter
send) is retried with the one ``RetryPolicy`` while the assigned partitions are paused and
the consumer keeps polling (so it stays in the group); a revoke drops the uncommitted batch
(it is redelivered to the partitions' next owner, and the insert tokens plus the
ReplacingMergeTree identities fold the repeat); the loop survives every error.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, cast

import pyarrow as pa
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from fleet.clients import confluent_config
from fleet.clock import now_ms
from fleet.history.sink import batch_token
from fleet.history.topic_sinks import (
    DeadLetterSender,
    KafkaDeadLetters,
    Received,
    TopicSink,
    contract_sinks,
    convert,
)
from fleet.retry import RetryAbandoned, RetryPolicy, Wait
from fleet.settings import Settings

log = logging.getLogger(__name__)
__all__ = ["HistoryConsumer", "Received", "consumer_config", "contract_sinks", "history_group"]


RetryHook = Callable[[str, Exception, float], None]  # table, error, delay
StoredHook = Callable[[str, int], None]  # table, rows
LagHook = Callable[[str, int], None]  # topic, messages behind
LAG_EVERY_S = 5.0
WAIT_SLICE_S = 1.0  # longest single poll while a batch waits for the store


class BatchWriter(Protocol):
    def insert_blocking(self, table: str, rows: pa.Table, token: str | None) -> None: ...


def _ignore(*_args: Any) -> None:
    pass


def history_group(settings: Settings) -> str:
    """The consumer group of the history sink (apart from the live path's group)."""
    return f"{settings.app_id}-history"


def consumer_config(settings: Settings, session_timeout_s: float = 10.0) -> dict[str, Any]:
    """librdkafka settings: manual commits only, from the earliest offset of a new group."""
    return confluent_config(settings, {
        "group.id": history_group(settings),
        "client.id": f"{settings.app_id}-history",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        # A crashed worker's partitions move on after this, as for the Faust consumer.
        "session.timeout.ms": int(session_timeout_s * 1000),
        "heartbeat.interval.ms": max(500, int(session_timeout_s * 1000) // 5),
    })  # fmt: skip


class HistoryConsumer:
    """The sink loop over one confluent-kafka consumer; ``run`` is a thread's target."""

    def __init__(
        self,
        settings: Settings,
        writer: BatchWriter,
        sinks: Sequence[TopicSink],
        *,
        policy: RetryPolicy | None = None,
        config: Mapping[str, Any] | None = None,
        on_stored: StoredHook = _ignore,
        on_retry: RetryHook = _ignore,
        on_lag: LagHook = _ignore,
        dead_letters: DeadLetterSender | None = None,
    ) -> None:
        self.settings = settings
        self.writer = writer
        self.sinks = {sink.topic: sink for sink in sinks}
        self.policy = policy or RetryPolicy.for_history(settings)
        self.config = dict(config or consumer_config(settings))
        self.on_stored = on_stored
        self.on_retry = on_retry
        self.on_lag = on_lag
        self.dead_letters = dead_letters or KafkaDeadLetters(
            settings, self.config.get("bootstrap.servers")
        )
        self._stopping = threading.Event()
        self._consumer: Consumer | None = None
        # Bumped on every revoke or loss: a batch taken under an older generation is dropped.
        self._generation = 0
        self._carry: list[Received] = []  # taken while paused; they follow the current batch
        self._stored_uncommitted: dict[tuple[str, int], int] = {}  # failed commits, retried
        self._lag_due = 0.0

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="history-consumer", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        """Ask the loop to end; an uncommitted batch is left to be redelivered."""
        self._stopping.set()

    def run(self) -> None:
        consumer = self._consumer = Consumer(self.config, logger=log)
        consumer.subscribe(
            list(self.sinks), on_assign=self._assigned, on_revoke=self._revoked,
            on_lost=self._lost,
        )  # fmt: skip
        log.info("history consumer %s: subscribed to %s", self.config["group.id"], list(self.sinks))
        try:
            while not self._stopping.is_set():
                self._step(consumer)
        finally:
            self._commit_stored(consumer)
            consumer.close()
            self.dead_letters.close()
            log.info("history consumer closed")

    # --- the loop --------------------------------------------------------------------------
    def _step(self, consumer: Consumer) -> None:
        """One batch, whatever happens: an unexpected error rewinds it and the loop goes on."""
        batch: list[Received] = []
        try:
            batch, self._carry = self._carry, []
            room = self.settings.history_batch_size - len(batch)
            if room > 0:
                wait = 0 if batch else self.settings.history_batch_within_s
                batch += self._messages(consumer.consume(room, timeout=wait))
            if batch and self._store(consumer, batch):
                self._commit(consumer, batch)
            self._report_lag(consumer)
        except Exception:
            log.exception("history consumer: unexpected error; the batch is taken again")
            self._rewind(consumer, batch)
            self._stopping.wait(1.0)

    def _messages(self, taken: Sequence[Message]) -> list[Received]:
        """The messages of a poll; errors in it are the client's reports (logged, not data)."""
        out = []
        for message in taken:
            error = message.error()
            if error is None:
                out.append(Received.of(message))
            elif error.code() != KafkaError._PARTITION_EOF:
                log.warning("history consumer: %s", error)
        return out

    def _store(self, consumer: Consumer, batch: Sequence[Received]) -> bool:
        """Insert every table of the batch; False when it must not be committed.

        A failing insert is retried (same token) while the assignment is paused and the
        consumer polls, so it stays in the group; a revoke or stop abandons the batch.
        """
        generation = self._generation
        by_topic: dict[str, list[Received]] = {}
        for message in batch:
            by_topic.setdefault(message.topic, []).append(message)
        paused = False

        def wait(delay: float) -> bool:
            nonlocal paused
            if not paused:  # no more fetching until the store takes this batch
                consumer.pause(consumer.assignment())
                paused = True
            return self._wait(consumer, delay, generation)

        try:
            for topic, messages in by_topic.items():
                self._store_topic(self.sinks[topic], messages, wait)
        except RetryAbandoned:
            return False
        finally:
            if paused and generation == self._generation:
                consumer.resume(consumer.assignment())
        return True

    def _store_topic(self, sink: TopicSink, messages: Sequence[Received], wait: Wait) -> None:
        """Store one topic's messages, retrying until the store takes them or ``wait`` gives up."""
        token = batch_token(sink.table, ((m.topic, m.partition, m.offset) for m in messages))
        # Converted once: skips are counted once however many attempts the insert takes.
        converted = convert(sink, messages, now_ms())
        unsent = list(converted.rejected)

        def attempt() -> None:
            if unsent:  # rejected rows are dead-lettered before the batch can be committed
                self.dead_letters.send(unsent)
                unsent.clear()
            self.writer.insert_blocking(sink.table, converted.rows, token)

        def on_retry(exc: BaseException, delay: float) -> None:
            self.on_retry(sink.table, cast(Exception, exc), delay)

        # Any failure of the store (or the dead-letter topic) is retried; nothing is dropped.
        self.policy.run_blocking(attempt, on_retry=on_retry, wait=wait)
        self.on_stored(sink.table, converted.rows.num_rows)

    def _wait(self, consumer: Consumer, delay: float, generation: int) -> bool:
        """Wait out a retry delay while polling (paused), so the group keeps this member.

        False when the batch is no longer ours to commit (revoked, lost, stopping).
        """
        deadline = time.monotonic() + delay
        while not self._stopping.is_set() and generation == self._generation:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            taken = self._messages(consumer.consume(1000, timeout=min(remaining, WAIT_SLICE_S)))
            if generation == self._generation:
                self._carry += taken
        return False

    def _commit(self, consumer: Consumer, batch: Sequence[Received]) -> None:
        for message in batch:  # in offset order per partition: the last one wins
            self._stored_uncommitted[(message.topic, message.partition)] = message.offset + 1
        self._commit_stored(consumer)

    def _commit_stored(self, consumer: Consumer) -> None:
        """Commit the offsets after every stored message; kept for the next try on failure."""
        if not self._stored_uncommitted:
            return
        offsets = [TopicPartition(t, p, o) for (t, p), o in self._stored_uncommitted.items()]
        try:
            result = consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            log.warning("history consumer: commit failed (%s); retried after the next batch", exc)
            return
        for tp in result or []:
            if tp.error is None:
                self._stored_uncommitted.pop((tp.topic, tp.partition), None)
            else:
                log.warning(
                    "history consumer: commit of %s[%d] failed: %s",
                    tp.topic,
                    tp.partition,
                    tp.error,
                )

    def _rewind(self, consumer: Consumer, batch: Sequence[Received]) -> None:
        """Seek each partition of an unstored batch back to its first message."""
        first: dict[tuple[str, int], int] = {}
        for message in batch:
            key = (message.topic, message.partition)
            first[key] = min(first.get(key, message.offset), message.offset)
        for (topic, partition), offset in first.items():
            try:
                consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException as exc:  # no longer assigned: its next owner starts over
                log.warning("history consumer: cannot rewind %s[%d]: %s", topic, partition, exc)

    def _report_lag(self, consumer: Consumer) -> None:
        """Messages behind the high watermark per topic, over this member's partitions."""
        if time.monotonic() < self._lag_due:
            return
        self._lag_due = time.monotonic() + LAG_EVERY_S
        lag = dict.fromkeys(self.sinks, 0)
        for tp in consumer.position(consumer.assignment()):
            _low, high = consumer.get_watermark_offsets(tp, cached=True)
            if tp.offset >= 0 and high >= 0:
                lag[tp.topic] += max(0, high - tp.offset)
        for topic, behind in lag.items():
            self.on_lag(topic, behind)

    # --- rebalance callbacks (run inside consume) -----------------------------------------
    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        consumer.assign(partitions)
        consumer.resume(partitions)  # a pause of the previous assignment does not carry over
        log.info("history consumer: assigned %d partitions", len(partitions))

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Commit what is stored, drop what is not (redelivered to the next owner)."""
        self._generation += 1
        self._carry = []
        self._commit_stored(consumer)
        self._stored_uncommitted.clear()
        consumer.unassign()
        log.info("history consumer: revoked %d partitions", len(partitions))

    def _lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Lost (session expired): nothing may be committed for them any more."""
        self._generation += 1
        self._carry = []
        self._stored_uncommitted.clear()
        consumer.unassign()
        log.warning("history consumer: lost %d partitions", len(partitions))
