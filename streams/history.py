"""History sink of the worker: owns the store, serves readers, runs history's own consumer.

The sink is not a Faust agent: it reads the contract topics in its own consumer group
(``{app_id}-history``) with confluent-kafka on a thread (``fleet.history.consumer``), so a
slow store never holds back the live path and offsets are committed only after the rows
they cover are stored. Policy per stage: invalid messages are skipped and counted by
reason (ingest dead-letters invalid pings; the dead-letter topic is itself stored); a
failing store is retried until the batch lands, with the partitions paused; redeliveries
after a crash or rebalance are folded by insert tokens and ReplacingMergeTree identities.
"""

from __future__ import annotations

import asyncio
import logging
import threading

from mode import Service
from prometheus_client import Counter, Gauge

from fleet.history.consumer import HistoryConsumer, consumer_config, contract_sinks
from fleet.history.sink import HistoryWriter
from streams.app import app, settings

log = logging.getLogger(__name__)

ROWS_WRITTEN = Counter("fleet_history_rows_total", "Rows inserted into history", ["table"])
SKIPPED = Counter(
    "fleet_history_skipped_total", "Invalid messages not written to history", ["table", "reason"]
)
RETRIES = Counter("fleet_history_retries_total", "Failed history writes retried", ["table"])
LAG = Gauge(
    "fleet_history_consumer_lag",
    "Messages of a topic not yet stored in history (this worker's partitions)",
    ["topic"],
)
STOP_TIMEOUT_S = 30.0


def _on_retry(table: str, exc: Exception, delay: float) -> None:
    RETRIES.labels(table).inc()
    log.warning("history %s: write failed (%s); retrying in %.1f s", table, exc, delay)


def _on_skip(table: str, reason: str) -> None:
    SKIPPED.labels(table, reason).inc()


def _on_stored(table: str, rows: int) -> None:
    ROWS_WRITTEN.labels(table).inc(rows)


def _on_lag(topic: str, behind: int) -> None:
    LAG.labels(topic).set(behind)


@app.service
class HistorySink(Service):
    """Store owner, read endpoint and history consumer, started and stopped with the worker.

    Started once tables are recovered (``@app.service``): history reads its own consumer
    group, so it does not need to be up before the agents.
    """

    writer: HistoryWriter | None = None
    consumer: HistoryConsumer | None = None
    thread: threading.Thread | None = None

    @Service.task
    async def _own_store_then_consume(self) -> None:
        # Readers are served from the start; the group is joined only once the store is
        # ours, so a second worker waiting for the embedded store takes no partitions.
        self.writer = writer = HistoryWriter(settings, on_retry=_on_retry)
        await writer.serve_readers(settings.history_query_port)
        await writer.open()
        self.consumer = HistoryConsumer(
            settings,
            writer,
            contract_sinks(settings, on_skip=_on_skip),
            config=consumer_config(settings, session_timeout_s=app.conf.broker_session_timeout),
            on_stored=_on_stored,
            on_retry=_on_retry,
            on_lag=_on_lag,
        )
        self.thread = self.consumer.start()

    async def on_stop(self) -> None:
        if self.consumer is not None and self.thread is not None:
            self.consumer.stop()
            await asyncio.to_thread(self.thread.join, STOP_TIMEOUT_S)
            if self.thread.is_alive():
                log.error("history consumer did not stop in %.0f s", STOP_TIMEOUT_S)
        if self.writer is not None:
            await self.writer.close()
