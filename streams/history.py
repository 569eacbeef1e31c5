"""History sink of the worker: a process of its own that owns the store, serves readers and
runs history's consumer (``fleet.history.process``).

The sink is not a Faust agent: it reads the contract topics in its own consumer group
(``{app_id}-history``) with confluent-kafka (``fleet.history.consumer``), so a slow store
never holds back the live path and offsets are committed only after the rows they cover are
stored. It runs in a child process so that decoding, Arrow and the store's inserts do not
share the worker's GIL with the ping path. Policy per stage: invalid messages are skipped
and counted by reason (ingest dead-letters invalid pings; the dead-letter topic is itself
stored); a failing store is retried until the batch lands, with the partitions paused;
redeliveries after a crash or rebalance are folded by insert tokens and ReplacingMergeTree
identities. A child that dies is started again (with a growing delay); it dies with the
worker.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import queue
import time
from multiprocessing.process import BaseProcess
from typing import Any

from mode import Service
from prometheus_client import Counter, Gauge

from fleet.history import process as history_process
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
RESTART_FIRST_S = 1.0
RESTART_MAX_S = 30.0
POLL_S = 0.25
STARTUP_WAIT_S = 60.0


def apply_event(event: tuple[Any, ...]) -> None:
    """One event of the history process as this worker's metrics."""
    match event:
        case ("opened",):
            log.info("history process: the store is open")
        case ("stored", str(table), int(rows)):
            ROWS_WRITTEN.labels(table).inc(rows)
        case ("skipped", str(table), str(reason)):
            SKIPPED.labels(table, reason).inc()
        case ("retry", str(table)):
            RETRIES.labels(table).inc()
        case ("lag", str(topic), int(behind)):
            LAG.labels(topic).set(behind)
        case _:
            log.warning("history process: unknown event %r", event)


@app.service
class HistorySink(Service):
    """Starts, watches and stops history's process, and reports what it does as metrics.

    Started once tables are recovered (``@app.service``): history reads its own consumer
    group, so it does not need to be up before the agents.
    """

    process: BaseProcess | None = None
    restarts = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ctx = multiprocessing.get_context("spawn")  # no fork of a threaded worker
        self._events: multiprocessing.Queue[tuple[Any, ...]] = self._ctx.Queue()

    def _start_process(self) -> BaseProcess:
        level = logging.getLogger().getEffectiveLevel()
        proc = self._ctx.Process(
            target=history_process.run,
            name=history_process.PROCESS_NAME.decode(),
            args=(settings, app.conf.broker_session_timeout, self._events, level, os.getpid()),
            daemon=True,
        )
        proc.start()  # from the event loop's thread: the child's death signal follows it
        return proc

    def _drain(self) -> bool:
        """Apply the events that came; True if one says the store is open or busy."""
        settled = False
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                return settled
            apply_event(event)
            settled = settled or event in {("opened",), ("retry", "open")}

    async def on_start(self) -> None:
        """The worker is ready once history serves readers and owns the store, or knows that
        another process owns it (it then waits for it): readers never find it half-made."""
        self.process = proc = self._start_process()
        deadline = time.monotonic() + STARTUP_WAIT_S
        while proc.is_alive() and time.monotonic() < deadline and not self._drain():
            await asyncio.sleep(POLL_S / 5)

    @Service.task
    async def _supervise(self) -> None:
        delay = RESTART_FIRST_S
        while not self.should_stop:
            proc = self.process
            if proc is None or proc.exitcode is not None:
                self.process = proc = self._start_process()
            while proc.is_alive() and not self.should_stop:
                self._drain()
                await self.sleep(POLL_S)
            self._drain()
            if self.should_stop:
                return
            self.process = None
            log.error("history process exited (code %s); starting it again in %.0f s",
                      proc.exitcode, delay)  # fmt: skip
            self.restarts += 1
            await self.sleep(delay)
            delay = min(RESTART_MAX_S, delay * 2)

    async def on_stop(self) -> None:
        proc, self.process = self.process, None
        if proc is None or not proc.is_alive():
            return
        proc.terminate()  # SIGTERM: the consumer stops, the store closes
        await asyncio.to_thread(proc.join, history_process.STOP_TIMEOUT_S + 5)
        if proc.is_alive():
            log.error("history process did not stop in time: killing it")
            proc.kill()
            await asyncio.to_thread(proc.join, 5)
        self._drain()
