"""History's own process: the store, its read endpoint and history's consumer.

The worker starts it (``streams.history``); it runs the same writer and consumer a thread of
the worker used to run, so decoding, Arrow and the store's inserts no longer take the
worker's GIL from the live path. What the parent needs to know (rows stored, messages
skipped, retries, lag) comes back as small events on a queue; the parent turns them into
its Prometheus metrics. The process dies with its parent (``PR_SET_PDEATHSIG``), so a
killed worker never leaves a process holding the embedded store.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
from multiprocessing.queues import Queue
from typing import Any

from fleet.history.consumer import HistoryConsumer, consumer_config, contract_sinks
from fleet.history.sink import HistoryWriter
from fleet.settings import Settings

log = logging.getLogger(__name__)

PROCESS_NAME = b"fleet-history"  # what ps, top and the load tests' probe show
STOP_TIMEOUT_S = 30.0
# Below the worker (0), above the decision solver (10): when the machine is short of CPU, the
# ping path goes first and history catches up after (its lag is a metric, nothing is lost).
NICENESS = 5
LOG_FORMAT = "[%(asctime)s] [%(process)d] %(levelname)s %(name)s: %(message)s"
_PR_SET_NAME = 15
_PR_SET_PDEATHSIG = 1

# ("opened",) | ("stored", table, rows) | ("skipped", table, reason) | ("retry", table) |
# ("lag", topic, messages); a retry of table "open": the store is another process's for now.
Event = tuple[Any, ...]


def _bind_to_parent(parent_pid: int) -> None:
    """Die with the parent and carry a name of our own (Linux; elsewhere a no-op)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        libc.prctl(_PR_SET_NAME, ctypes.c_char_p(PROCESS_NAME))
    if os.getppid() != parent_pid:  # the parent died before the line above
        os._exit(1)


def run(
    settings: Settings, session_timeout_s: float, events: Queue[Event], loglevel: int, parent: int
) -> None:
    """The process's target: serve and consume until SIGTERM (or the parent's death)."""
    _bind_to_parent(parent)
    os.nice(NICENESS)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the worker, which stops us
    logging.basicConfig(level=loglevel, format=LOG_FORMAT)
    asyncio.run(_serve(settings, session_timeout_s, events))


async def _serve(settings: Settings, session_timeout_s: float, events: Queue[Event]) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)

    def on_retry(table: str, exc: Exception, delay: float) -> None:
        log.warning("history %s: write failed (%s); retrying in %.1f s", table, exc, delay)
        events.put(("retry", table))

    writer = HistoryWriter(settings, on_retry=on_retry)
    consumer: HistoryConsumer | None = None
    thread = None
    try:
        # Readers are served from the start; the group is joined only once the store is
        # ours, so a second worker waiting for the embedded store takes no partitions.
        await writer.serve_readers(settings.history_query_port)
        opening = asyncio.ensure_future(writer.open())
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({opening, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not opening.done():
            opening.cancel()
            return
        events.put(("opened",))
        consumer = HistoryConsumer(
            settings,
            writer,
            contract_sinks(settings, on_skip=lambda t, r: events.put(("skipped", t, r))),
            config=consumer_config(settings, session_timeout_s=session_timeout_s),
            on_stored=lambda t, n: events.put(("stored", t, n)),
            on_retry=on_retry,
            on_lag=lambda t, n: events.put(("lag", t, n)),
        )
        thread = consumer.start()
        await stopping
    finally:
        if consumer is not None and thread is not None:
            consumer.stop()
            await asyncio.to_thread(thread.join, STOP_TIMEOUT_S)
            if thread.is_alive():
                log.error("history consumer did not stop in %.0f s", STOP_TIMEOUT_S)
        await writer.close()
