"""Alert changes already on ``fleet.alerts``, so a replay after a crash does not send them again.

An alert change is sent before the input that caused it is committed (read model, then the
message, then the state write; offsets follow about a second later). A SIGKILL in that
window replays the input, which recomputes the same change with the same id
(fleet/tracking/alerts.py). Before sending, the worker looks the change up here: the tail of
every ``fleet.alerts`` partition is read back when partitions are assigned (what a previous
owner of the replayed input sent is there), and every change this worker sends is added. A
change already on the topic is not sent again, so each alert is opened and resolved once on
the topic across crashes and rebalances (docs/tracking.md, crash consistency).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict

import msgspec
from confluent_kafka import Consumer, TopicPartition

from fleet.clients import confluent_config
from fleet.records import Alert
from fleet.settings import Settings
from fleet.topics import ALERTS, topic_name

log = logging.getLogger(__name__)

TAIL = 20_000  # messages read back per partition: far more than a second of alert changes
KEEP = 500_000  # changes remembered (oldest forgotten first)
READ_TIMEOUT_S = 30.0


class _Change(msgspec.Struct):
    alert_id: str
    state: str


_DECODE = msgspec.json.Decoder(_Change)


def read_tail(settings: Settings, tail: int = TAIL) -> list[tuple[str, str]]:
    """(alert_id, state) of the last ``tail`` messages of every partition of fleet.alerts."""
    topic = topic_name(settings, ALERTS)
    extra = {"group.id": f"{settings.app_id}-sent-alerts", "enable.auto.commit": False}
    consumer = Consumer(confluent_config(settings, {**extra, "log_level": 3}))
    try:
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            return []
        ends: dict[int, int] = {}
        starts: list[TopicPartition] = []
        for p in meta.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > low:
                ends[p] = high
                starts.append(TopicPartition(topic, p, max(low, high - tail)))
        if not starts:
            return []
        consumer.assign(starts)
        out: list[tuple[str, str]] = []
        deadline = time.monotonic() + READ_TIMEOUT_S
        while ends and time.monotonic() < deadline:
            for m in consumer.consume(1000, 0.5):
                if m.error() is not None:
                    continue
                partition, offset = m.partition() or 0, m.offset() or 0
                if offset + 1 >= ends.get(partition, 0):
                    ends.pop(partition, None)
                value = m.value()
                if value:
                    try:
                        change = _DECODE.decode(value)
                    except msgspec.DecodeError:
                        continue  # not an alert change of ours: nothing to de-duplicate
                    out.append((change.alert_id, change.state))
        if ends:
            log.warning("alerts read back partly: partitions %s not read to the end", sorted(ends))
        return out
    finally:
        consumer.close()


class SentAlerts:
    """Alert changes known to be on the topic: read back on assignment, added on send."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._sent: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._loaded = False
        self._lock = asyncio.Lock()

    def invalidate(self) -> None:
        """Partitions moved: read the topic back again before the next send."""
        self._loaded = False

    async def ensure_loaded(self) -> None:
        if self._loaded:
            return
        async with self._lock:
            if self._loaded:
                return
            began = time.perf_counter()
            changes = await asyncio.to_thread(read_tail, self.settings)
            for change in changes:
                self._remember(change)
            self._loaded = True
            took = time.perf_counter() - began
            log.info("alerts read back: %d changes in %.2f s", len(changes), took)

    def already_sent(self, alert: Alert) -> bool:
        return (alert.alert_id, alert.state) in self._sent

    def mark_sent(self, alert: Alert) -> None:
        self._remember((alert.alert_id, alert.state))

    def _remember(self, change: tuple[str, str]) -> None:
        self._sent[change] = None
        self._sent.move_to_end(change)
        while len(self._sent) > KEEP:
            self._sent.popitem(last=False)
