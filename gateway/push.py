"""Route updates and ETAs out to driver apps: the latest per driver, and who listens for it.

``RouteFeed`` keeps each driver's latest RouteUpdate (same route: higher version wins;
another route: the later ``issued_ms`` wins) and latest EtaUpdate, and hands every change
to the driver's listeners (SSE streams, the MQTT publisher). ``FeedConsumer`` fills it from
``fleet.route-updates`` and ``fleet.etas``, read from the beginning at start: changes found
while catching up only update the state, and once caught up each driver's latest is
published once (so a restarted gateway republishes the retained plans, not their history).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import msgspec
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from fleet.clients import confluent_config
from fleet.records import EtaUpdate, RouteUpdate
from fleet.settings import Settings
from fleet.topics import ETAS, ROUTE_UPDATES, topic_name
from gateway import metrics

log = logging.getLogger(__name__)

_UPDATE = msgspec.json.Decoder(RouteUpdate)
_ETA = msgspec.json.Decoder(EtaUpdate)
LISTENER_QUEUE = 64  # a slow SSE client drops its oldest pending items: only the latest matters


@dataclass(frozen=True, slots=True)
class Push:
    """One item for a driver's app: a route update (``version`` set) or ETAs."""

    driver_id: str
    kind: str  # "route" or "eta"
    payload: bytes
    route_id: str
    version: int | None = None
    issued_ms: int = 0


Listener = Callable[[Push], None]


class RouteFeed:
    """Latest route update and ETAs per driver, with per-driver listeners (loop-thread side)."""

    def __init__(self) -> None:
        self.routes: dict[str, Push] = {}
        self.etas: dict[str, Push] = {}
        self._queues: dict[str, set[asyncio.Queue[Push]]] = {}

    def offer(self, push: Push) -> bool:
        """Keep ``push`` if it is newer than the driver's current one; True when kept."""
        latest = self.routes if push.kind == "route" else self.etas
        current = latest.get(push.driver_id)
        if current is not None and not _newer(push, current):
            return False
        latest[push.driver_id] = push
        return True

    def latest(self, driver_id: str) -> list[Push]:
        """The driver's current plan first, then its ETAs."""
        return [p for p in (self.routes.get(driver_id), self.etas.get(driver_id)) if p]

    def subscribe(self, driver_id: str) -> asyncio.Queue[Push]:
        queue: asyncio.Queue[Push] = asyncio.Queue(LISTENER_QUEUE)
        self._queues.setdefault(driver_id, set()).add(queue)
        return queue

    def unsubscribe(self, driver_id: str, queue: asyncio.Queue[Push]) -> None:
        queues = self._queues.get(driver_id)
        if queues is not None:
            queues.discard(queue)
            if not queues:
                del self._queues[driver_id]

    def deliver(self, push: Push) -> None:
        """Hand a kept change to the driver's open streams (never blocks)."""
        for queue in self._queues.get(push.driver_id, ()):
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(push)


def _newer(push: Push, current: Push) -> bool:
    if push.kind == "route" and push.route_id == current.route_id:
        return (push.version or 0) > (current.version or 0)
    return push.issued_ms > current.issued_ms or (
        push.issued_ms == current.issued_ms and push.payload != current.payload
    )


def parse_push(topic_kind: str, raw: bytes | None) -> Push | None:
    """A RouteUpdate or EtaUpdate message as a Push; None when it is not one (counted)."""
    if not raw:
        return None
    try:
        if topic_kind == "route":
            update = _UPDATE.decode(raw)
            return Push(update.driver_id, "route", raw, update.route_id, update.version,
                        update.issued_ms)  # fmt: skip
        eta = _ETA.decode(raw)
        return Push(eta.driver_id, "eta", raw, eta.route_id, None, eta.computed_ms)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        metrics.IGNORED.labels("kafka", f"invalid_{topic_kind}").inc()
        log.warning("ignored an undecodable %s message: %s", topic_kind, exc)
        return None


class FeedConsumer:
    """Reads route updates and ETAs on a thread; ``on_change`` gets each kept change once
    caught up, and ``on_caught_up`` the full latest state once."""

    def __init__(
        self,
        settings: Settings,
        offer: Callable[[Push], bool],
        on_change: Listener,
        on_caught_up: Callable[[], None],
    ) -> None:
        self._kinds = {
            topic_name(settings, ROUTE_UPDATES): "route",
            topic_name(settings, ETAS): "eta",
        }
        self._consumer = Consumer(confluent_config(settings, {
            "group.id": f"fleet-gateway-push-{uuid.uuid4().hex[:8]}",  # offsets never committed
            "enable.auto.commit": False, "fetch.wait.max.ms": 10, "log_level": 3,
        }))  # fmt: skip
        self._offer, self._on_change, self._on_caught_up = offer, on_change, on_caught_up
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gateway-feed", daemon=True)
        self.caught_up = threading.Event()

    def start(self) -> None:
        self._thread.start()

    def _assign(self) -> dict[tuple[str, int], int]:
        """Assign every partition from the beginning; return the end offsets to catch up to."""
        meta = self._consumer.list_topics(timeout=10)
        parts, ends = [], {}
        for topic in self._kinds:
            for p in meta.topics[topic].partitions:
                low, high = self._consumer.get_watermark_offsets(TopicPartition(topic, p), 10)
                parts.append(TopicPartition(topic, p, OFFSET_BEGINNING))
                if high > low:
                    ends[(topic, p)] = high
        self._consumer.assign(parts)
        return ends

    def _run(self) -> None:
        pending: dict[tuple[str, int], int] | None = None
        while pending is None:  # Kafka may be down or electing leaders: keep trying
            try:
                pending = self._assign()
            except Exception as exc:
                log.warning("route feed: cannot read the topics yet, retrying: %s", exc)
                if self._stop.wait(1.0):
                    return
        if not pending:
            self._finish_catch_up()
        while not self._stop.is_set():
            msg = self._consumer.poll(0.1)
            if msg is None or msg.error():
                continue
            topic, partition, offset = str(msg.topic()), msg.partition() or 0, msg.offset() or 0
            push = parse_push(self._kinds[topic], msg.value())
            if push is not None and self._offer(push) and self.caught_up.is_set():
                self._on_change(push)
            if pending:
                end = pending.get((topic, partition))
                if end is not None and offset + 1 >= end:
                    del pending[(topic, partition)]
                    if not pending:
                        self._finish_catch_up()
        self._consumer.close()

    def _finish_catch_up(self) -> None:
        self.caught_up.set()
        self._on_caught_up()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
