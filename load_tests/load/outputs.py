"""Reads what the pipeline publishes during a run: alerts, route updates, ETAs, dead letters.

Latency of each output is measured from what caused it: an alert from the fix (``changed_ms``)
that changed it, a route update from the order or command the generator sent (by
``caused_by``), an ETA update from its ``computed_ms``; all to the output's Kafka timestamp.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec
from confluent_kafka import Consumer

from fleet.records import Alert, EtaUpdate, RouteUpdate
from fleet.topics import ALERTS, DLQ, ETAS, ROUTE_UPDATES


class _Caused(msgspec.Struct):
    caused_by: str | None = None
    cause: str = ""


@dataclass
class Outputs:
    """What came out, with latencies in ms."""

    alert_latency_ms: list[float] = field(default_factory=list)
    route_update_latency_ms: list[float] = field(default_factory=list)
    eta_latency_ms: list[float] = field(default_factory=list)
    alerts_by_kind: Counter[str] = field(default_factory=Counter)
    alert_changes: Counter[tuple[str, str]] = field(default_factory=Counter)
    route_updates_by_cause: Counter[str] = field(default_factory=Counter)
    alert_examples: dict[str, list[str]] = field(default_factory=dict)  # kind -> first few
    etas: int = 0
    dead_letters: int = 0
    undecodable: int = 0

    def duplicated_alerts(self) -> list[tuple[str, str]]:
        """(alert_id, state) published more than once."""
        return [key for key, n in self.alert_changes.items() if n > 1]


class OutputReader:
    """A consumer thread over the run's output topics (own group, from the start)."""

    def __init__(
        self, bootstrap: str, topic: Callable[[str], str], sent_wall_ms: dict[str, int]
    ) -> None:
        self.topics = {topic(b): b for b in (ALERTS, ROUTE_UPDATES, ETAS, DLQ)}
        self.sent_wall_ms = sent_wall_ms
        self.outputs = Outputs()
        self.consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": f"load-outputs-{uuid.uuid4().hex[:8]}",
             "auto.offset.reset": "earliest", "enable.auto.commit": False, "log_level": 0}
        )  # fmt: skip
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load-outputs", daemon=True)
        self._alert = msgspec.json.Decoder(Alert)
        self._update = msgspec.json.Decoder(RouteUpdate)
        self._caused = msgspec.json.Decoder(_Caused)
        self._eta = msgspec.json.Decoder(EtaUpdate)

    def start(self) -> None:
        self.consumer.subscribe(list(self.topics))
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        with contextlib.suppress(Exception):
            self.consumer.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            for msg in self.consumer.consume(500, 0.5):
                if msg.error() is None:
                    self._take(
                        self.topics.get(msg.topic() or "", ""), msg.value(), msg.timestamp()[1]
                    )

    def _take(self, base: str, value: bytes | None, kafka_ms: int) -> None:
        out = self.outputs
        if base == DLQ:
            out.dead_letters += 1
            return
        try:
            if base == ALERTS:
                alert = self._alert.decode(value or b"")
                out.alert_changes[(alert.alert_id, alert.state)] += 1
                if alert.state == "open":
                    out.alerts_by_kind[alert.kind] += 1
                    examples = out.alert_examples.setdefault(alert.kind, [])
                    if len(examples) < 2:
                        examples.append((value or b"").decode("utf-8", "replace")[:600])
                out.alert_latency_ms.append(float(kafka_ms - alert.changed_ms))
            elif base == ROUTE_UPDATES:
                caused = self._caused.decode(value or b"")
                out.route_updates_by_cause[caused.cause] += 1
                sent = self.sent_wall_ms.get(caused.caused_by or "")
                if sent is not None:
                    out.route_update_latency_ms.append(float(kafka_ms - sent))
            elif base == ETAS:
                eta = self._eta.decode(value or b"")
                out.etas += 1
                out.eta_latency_ms.append(float(kafka_ms - eta.computed_ms))
        except msgspec.DecodeError:
            out.undecodable += 1
