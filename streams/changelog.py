"""Changelog writes of the per-driver tables, sent to the Kafka client in batches.

Faust sends a table write through its producer buffer, one message per await, and its
conductor holds back every agent's next message while that buffer has more than 100
waiting. The ping path saves thousands of driver states a second: through the buffer they
cost about 55 us each and kept the events, commands and orders agents minutes behind in
the 10x load test. Here the writes of ``SourcePartitionedTable`` (streams/app.py) are kept
in order and handed to the aiokafka producer Faust already runs, one batch per partition.

Crash consistency is unchanged (docs/ping-batches.md): offsets are committed only after
``flush``, which Faust's pre-commit producer flush and the ping consumer's
``changelog_acknowledged`` both await; a batch the broker refused is sent again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from mode import Service

log = logging.getLogger(__name__)

SEND_EVERY_S = 0.005  # how long a write may wait to be batched with the next ones

Write = tuple[str, int, bytes, bytes | None]  # topic, partition, key, value (None: delete)


class _Sent:
    """What Faust's ``on_key_set`` reads back from a changelog send: the partition."""

    __slots__ = ("message", "partition")

    def __init__(self, partition: int) -> None:
        self.message = self
        self.partition = partition


class DirectChangelog:
    """Writes waiting to be sent, and the batches sent but not yet acknowledged."""

    def __init__(self) -> None:
        self.producer: Callable[[], Any] | None = None  # the running aiokafka producer
        self._pending: list[Write] = []
        self._in_flight: list[tuple[asyncio.Future[Any], list[Write]]] = []
        self._lock: asyncio.Lock | None = None

    def add(self, topic: str, partition: int, key: bytes, value: bytes | None) -> _Sent:
        """Queue a write (synchronous, like a table's ``__setitem__``)."""
        self._pending.append((topic, partition, key, value))
        return _Sent(partition)

    @property
    def waiting(self) -> int:
        """Writes not yet handed to the producer."""
        return len(self._pending)

    async def send_pending(self) -> None:
        """Hand every queued write to the producer, in order, one batch per partition."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            while self._pending:
                writes, self._pending = self._pending, []
                by_partition: dict[tuple[str, int], list[Write]] = {}
                for write in writes:
                    by_partition.setdefault((write[0], write[1]), []).append(write)
                try:
                    for (topic, partition), group in by_partition.items():
                        await self._send(topic, partition, group)
                except BaseException:
                    sent = {id(w) for _, ws in self._in_flight for w in ws}
                    self._pending[:0] = [w for w in writes if id(w) not in sent]
                    raise

    async def _send(self, topic: str, partition: int, group: list[Write]) -> None:
        assert self.producer is not None, "the changelog is written before the worker started"
        producer = self.producer()
        batch, members = producer.create_batch(), list[Write]()
        for write in group:
            if batch.append(key=write[2], value=write[3], timestamp=None) is None:
                fut = await producer.send_batch(batch, topic, partition=partition)
                self._in_flight.append((fut, members))
                batch, members = producer.create_batch(), list[Write]()
                if batch.append(key=write[2], value=write[3], timestamp=None) is None:
                    raise ValueError(f"a {topic} changelog value does not fit in a batch")
            members.append(write)
        if members:
            fut = await producer.send_batch(batch, topic, partition=partition)
            self._in_flight.append((fut, members))

    async def flush(self) -> None:
        """Until every write queued so far is acknowledged by the broker (a refused batch is
        queued again, ahead of later writes, and sent again)."""
        while True:
            await self.send_pending()
            in_flight, self._in_flight = self._in_flight, []
            if not in_flight:
                return
            await asyncio.wait([fut for fut, _ in in_flight])
            failed = [w for fut, ws in in_flight if fut.exception() is not None for w in ws]
            if failed:
                log.warning("changelog: %d writes refused; sending them again", len(failed))
                self._pending[:0] = failed
                await asyncio.sleep(0.5)


DIRECT = DirectChangelog()


class ChangelogSender(Service):
    """Sends queued changelog writes every few milliseconds while the worker runs."""

    @Service.task
    async def _send_loop(self) -> None:
        while not self.should_stop:
            await asyncio.sleep(SEND_EVERY_S)
            if DIRECT.waiting:
                try:
                    await DIRECT.send_pending()
                except Exception:  # the next flush sends them again; commits wait for it
                    log.exception("changelog: sending queued writes failed")
