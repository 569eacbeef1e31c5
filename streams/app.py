"""The one Faust app of the pipeline: broker settings, resources, table helpers.

Importing this module declares; nothing connects. Services registered with
``app.resource`` start before the agents and stop after them. The agents register in
``streams.worker`` (run it with ``fleet worker``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import faust
from aiokafka.partitioner import murmur2
from faust.types.tables import GlobalTableT
from mode import ServiceT

from fleet.clients import faust_credentials
from fleet.settings import get_settings
from streams.changelog import DIRECT

log = logging.getLogger(__name__)
settings = get_settings()
S = TypeVar("S", bound=ServiceT)


class FleetApp(faust.App):
    """A Faust app whose resource services start before the agents and stop after them."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.resources: list[ServiceT] = []

    def resource(self, service: S) -> S:
        """Own ``service`` (a client, pool, thread or server) for the worker's lifetime.

        Unlike ``@app.service`` (started once tables are recovered, after the agents),
        resources are running before the first message reaches an agent.
        """
        self.resources.append(service)
        return service

    def _new_producer(self) -> Any:
        producer = super()._new_producer()
        drain_on_flush(producer.buffer)
        DIRECT.producer = lambda: getattr(producer, "_producer", None)  # aiokafka, once started
        return producer

    def on_init_dependencies(self) -> Iterable[ServiceT]:
        # mode stops dependencies in reverse order: resources close after the agents.
        return [*self.resources, *super().on_init_dependencies()]


def drain_on_flush(buffer: Any) -> None:
    """Make the producer buffer's ``flush`` wait until it is empty.

    Faust flushes its producer before committing offsets, so that table changelog writes
    and sent messages of the committed input are acknowledged first (docs/tracking.md,
    crash consistency). Its buffer's flush gives up after 0.1 s without a send (e.g. while
    a changelog's metadata is fetched after a restart), and the commit would then run past
    writes still in the buffer: a SIGKILL lost them with their input already committed.
    """
    once = buffer.flush_atmost

    async def flush() -> None:
        while buffer.size:
            await once(None)
        await DIRECT.flush()  # the per-driver tables' writes (streams/changelog.py)

    buffer.flush = flush


def rewind_uncommitted_on_seek() -> None:
    """After Faust's seek to committed offsets, put input partitions that have no committed
    offset back at their beginning (``consumer_auto_offset_reset`` is earliest).

    While tables recover, Faust's consumer already fetches input partitions and drops what
    it fetched (flow stopped), trusting the seek to committed offsets that follows to read
    it again. A partition with no committed offset yet (a new topic, or one whose first
    messages arrived just before a crash) is not sought at all (aiokafka seeks only to
    offsets > 0), so its first messages were dropped for good: a worker restarted after a
    SIGKILL never applied the first commands of a fresh topic (docs/tracking.md, crash
    consistency).
    """
    from faust.transport.consumer import Consumer
    from faust.transport.drivers.aiokafka import ensure_aiokafka_TP

    seek_committed = Consumer.perform_seek

    async def perform_seek(self: Any) -> None:
        await seek_committed(self)
        inputs = self.app.topics.acking_topics
        fresh = [
            ensure_aiokafka_TP(tp)
            for tp in self.assignment()
            if tp.topic in inputs and not self._committed_offset.get(tp)
        ]
        if fresh:
            await self._thread.seek_to_beginning(*fresh)
            for tp in fresh:
                self._read_offset.pop(tp, None)

    Consumer.perform_seek = perform_seek  # type: ignore[method-assign]


rewind_uncommitted_on_seek()

app = FleetApp(
    settings.app_id,
    broker=f"kafka://{settings.kafka_bootstrap}",
    broker_credentials=faust_credentials(settings),  # SASL_SSL in the secure profile
    store="memory://",  # tables are rebuilt from their changelog topics on start
    topic_partitions=settings.partitions,
    topic_replication_factor=1,
    web_enabled=False,
    web_port=settings.worker_web_port,
    consumer_auto_offset_reset="earliest",
    broker_max_poll_records=5000,
    stream_buffer_maxsize=20_000,
    stream_wait_empty=False,
    producer_linger_ms=5,
    broker_commit_interval=1.0,
    # A crashed worker's partitions move on after 10 s, not the default 60 s.
    broker_session_timeout=10.0,
    broker_heartbeat_interval=2.0,
    table_cleanup_interval=60.0,
)

_BYTES: faust.Schema = faust.Schema(
    key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
)


class SourcePartitionedTable(faust.Table):
    """A table whose changelog partition is the source partition of the key's last event.

    Agents that take batches write table keys after the stream has moved past the event
    that carried them; Faust would use the *current* event's partition. Recording the
    source partition per key keeps the table co-partitioned with its topic.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.source_partition: dict[Any, int] = {}
        self._changelog_name: str | None = None

    def partition_for_key(self, key: Any) -> int | None:
        partition = self.source_partition.get(key)
        return partition if partition is not None else super().partition_for_key(key)

    def send_changelog(
        self,
        partition: int | None,
        key: Any,
        value: Any,
        key_serializer: Any = None,
        value_serializer: Any = None,
    ) -> Any:
        """Queue the write for ``streams.changelog`` (batched), not Faust's producer buffer."""
        if partition is None or not isinstance(key, bytes) or not isinstance(value, bytes | None):
            return super().send_changelog(partition, key, value, key_serializer, value_serializer)
        if self._changelog_name is None:
            self._changelog_name = self.changelog_topic.get_topic_name()
        return DIRECT.add(self._changelog_name, partition, key, value)


def source_partitioned_table(name: str) -> SourcePartitionedTable:
    """A bytes -> bytes table (driver_id -> msgpack state), co-partitioned with its source."""
    table = SourcePartitionedTable(
        app, name=name, schema=_BYTES, key_type=bytes, value_type=bytes,
        partitions=settings.partitions, beacon=app.tables.beacon,
    )  # fmt: skip
    return app.tables.add(table)  # type: ignore[return-value]


class KeyPartitionedGlobalTable(faust.GlobalTable):
    """A global table whose changelog partition is computed from the key alone.

    Faust's ``use_partitioner`` asks the producer's metadata for the changelog's partitions
    synchronously; once a metadata refresh leaves the topic out, that is ``None`` and the
    write raises ``TypeError`` (issue 9). Here the partition is the default partitioner's
    (murmur2 of the key, as Kafka's clients do) over the configured partition count, so a
    write never needs metadata; the send itself waits for (or refreshes) the topic's metadata.
    """

    # Told the keys a changelog batch wrote (writes of every worker, this one's included).
    on_changelog_keys: Callable[[list[bytes]], None] | None = None

    def partition_for_key(self, key: Any) -> int | None:
        return key_partition(key, self.partitions or settings.partitions)

    def apply_changelog_batch(self, batch: Iterable[Any]) -> None:
        events = list(batch)
        super().apply_changelog_batch(events)
        if self.on_changelog_keys is not None:
            keys = [e.message.key for e in events if e.message.key is not None]
            try:
                self.on_changelog_keys(keys)
            except Exception:  # a listener's bug must not stop the table's recovery
                log.exception("changelog listener of %s failed", self.name)


def table_get(table: Any, key: bytes) -> bytes | None:
    """A bytes table's value for ``key`` (None if absent), read from its in-memory store.

    The hot paths read tables per ping and per route per decision: Faust's ``table.get``
    goes through its read hooks and raises and catches a ``KeyError`` per absent key
    (about 10 % of the worker in the 10x load test). Writes still go through the table
    (its changelog). Tables here use ``store="memory://"``, whose store keeps a dict.
    """
    return table.data.data.get(key)  # type: ignore[no-any-return]


def key_partition(key: bytes, partitions: int) -> int:
    """Kafka's default partition of ``key`` among ``partitions`` (murmur2, positive, modulo)."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def global_bytes_table(name: str) -> GlobalTableT:
    """A bytes -> bytes table every worker holds whole (changelog partition from the key)."""
    # Global (every worker recovers every partition) and, as with Faust's use_partitioner,
    # every partition is also a standby: a write lands on the key's partition, which may be
    # another worker's active one, and every worker must still read it.
    table = KeyPartitionedGlobalTable(
        app, name=name, schema=_BYTES, key_type=bytes, value_type=bytes,
        partitions=settings.partitions, beacon=app.tables.beacon, is_global=True,
        synchronize_all_active_partitions=True,
    )  # fmt: skip
    return app.tables.add(table)  # type: ignore[return-value]


@app.task
async def drop_spinner_debug_level() -> None:
    """Faust's terminal spinner sets the root logger to DEBUG when the worker logs at WARN or
    above, so every debug call in Faust and aiokafka builds a record (~7 % of a busy worker's
    time); keep the root at the level the real handlers use."""
    root = logging.getLogger()
    levels = [h.level for h in root.handlers if type(h).__name__ != "SpinnerHandler"]
    if levels and root.level < min(levels):
        root.setLevel(min(levels))


@app.task
async def dump_tasks_on_sigusr2() -> None:
    """``kill -USR2 <pid>`` logs every task's await chain (streams/tasks_dump.py)."""
    from streams import tasks_dump

    tasks_dump.install()
