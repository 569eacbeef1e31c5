"""What the pipeline did during the demo's day: alerts, decisions, ETAs, read off its topics.

A consumer thread reads fleet.alerts, fleet.route-updates, fleet.route-proposals, fleet.etas
and the dead letters from the start of the run; ``Story`` keeps each alert's lifecycle, each
RouteUpdate with its cause and rationale, the latest p10/p50/p90 of every stop, and a log of
lines to show. Arrivals reported by the simulation turn the ETAs into errors.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from confluent_kafka import Consumer

from fleet.clients import confluent_config
from fleet.records import Alert, EtaUpdate, RouteUpdate
from fleet.settings import Settings
from fleet.topics import ALERTS, DLQ, ETAS, ROUTE_PROPOSALS, ROUTE_UPDATES, topic_name

OUTPUT_TOPICS = (ALERTS, ROUTE_UPDATES, ROUTE_PROPOSALS, ETAS, DLQ)


@dataclass
class AlertRecord:
    """One alert from opening to resolution."""

    alert: Alert
    resolved_ms: int | None = None
    resolution: str = ""


@dataclass
class Decision:
    """One RouteUpdate (or proposal) the pipeline published."""

    update: RouteUpdate
    proposal: bool = False

    @property
    def moved(self) -> list[str]:
        return list((self.update.rationale or {}).get("moved_stops", []))

    @property
    def gain(self) -> float | None:
        value = (self.update.rationale or {}).get("gain")
        return float(value) if isinstance(value, int | float) else None

    @property
    def orders(self) -> list[str]:
        rationale = self.update.rationale or {}
        placed = list(rationale.get("orders", []))
        caused = self.update.caused_by or ""
        if not placed and caused.startswith("order:"):
            placed = [caused.removeprefix("order:")]
        return placed


@dataclass
class EtaError:
    """An arrival judged against the latest prediction made before it."""

    route_id: str
    stop_id: str
    arrived_ms: int
    p10_ms: int
    p50_ms: int
    p90_ms: int
    model_version: str
    horizon_s: float

    @property
    def error_s(self) -> float:
        return (self.arrived_ms - self.p50_ms) / 1000

    @property
    def inside(self) -> bool:
        return self.p10_ms <= self.arrived_ms <= self.p90_ms


@dataclass
class Story:
    """Everything the pipeline published, in order, with a log for the live view."""

    alerts: dict[str, AlertRecord] = field(default_factory=dict)
    decisions: list[Decision] = field(default_factory=list)
    eta_updates: int = 0
    eta_models: Counter[str] = field(default_factory=Counter)
    latest_eta: dict[tuple[str, str], tuple[int, str, Any]] = field(default_factory=dict)
    eta_errors: list[EtaError] = field(default_factory=list)
    dead_letters: Counter[str] = field(default_factory=Counter)
    undecodable: int = 0
    log: deque[tuple[int, str]] = field(default_factory=lambda: deque(maxlen=400))
    said: int = 0  # lines ever logged (the deque keeps the latest)
    lock: threading.Lock = field(default_factory=threading.Lock)

    # --- intake -----------------------------------------------------------------------------
    def take_alert(self, alert: Alert) -> None:
        with self.lock:
            record = self.alerts.get(alert.alert_id)
            if alert.state == "open" and record is None:
                self.alerts[alert.alert_id] = AlertRecord(alert)
                self._say(
                    alert.changed_ms,
                    f"[red]alert[/] {alert.kind} {_who(alert)} {describe_alert(alert)}",
                )
            elif alert.state == "resolved" and record is not None and record.resolved_ms is None:
                record.resolved_ms = alert.changed_ms
                record.resolution = str(alert.details.get("resolution", ""))
                self._say(alert.changed_ms, f"[green]resolved[/] {alert.kind} {_who(alert)}")
            elif alert.state == "resolved" and record is None:  # opened before we listened
                self.alerts[alert.alert_id] = AlertRecord(alert, alert.changed_ms)

    def take_update(self, update: RouteUpdate, proposal: bool) -> None:
        with self.lock:
            decision = Decision(update, proposal)
            self.decisions.append(decision)
            verb = "proposal" if proposal else "plan"
            self._say(
                update.issued_ms,
                f"[cyan]{verb}[/] {update.cause} {update.route_id} "
                f"v{update.version} ({describe_decision(decision)})",
            )

    def take_eta(self, eta: EtaUpdate) -> None:
        with self.lock:
            self.eta_updates += 1
            self.eta_models[eta.model_version] += 1
            for stop in eta.stops:
                self.latest_eta[(eta.route_id, stop.stop_id)] = (
                    eta.computed_ms,
                    eta.model_version,
                    stop,
                )

    def arrival(self, route_id: str, stop_id: str, ts_ms: int) -> None:
        """A driver reached a stop: judge the latest ETA made before the arrival."""
        with self.lock:
            latest = self.latest_eta.get((route_id, stop_id))
            if latest is None or latest[0] > ts_ms:
                return
            computed, version, stop = latest
            self.eta_errors.append(
                EtaError(
                    route_id,
                    stop_id,
                    ts_ms,
                    stop.p10_ms,
                    stop.p50_ms,
                    stop.p90_ms,
                    version,
                    (ts_ms - computed) / 1000,
                )
            )

    def _say(self, ms: int, text: str) -> None:
        self.log.append((ms, text))
        self.said += 1

    # --- views ------------------------------------------------------------------------------
    def opened_by_kind(self) -> Counter[str]:
        with self.lock:
            return Counter(r.alert.kind for r in self.alerts.values())

    def open_now(self) -> int:
        with self.lock:
            return sum(1 for r in self.alerts.values() if r.resolved_ms is None)

    def decisions_by_cause(self) -> Counter[str]:
        with self.lock:
            return Counter(d.update.cause for d in self.decisions)

    def answered_orders(self) -> set[str]:
        """Orders assigned to a route or alerted as unassigned."""
        with self.lock:
            assigned = {o for d in self.decisions if d.update.cause == "assign" for o in d.orders}
            return assigned | {
                r.alert.driver_id
                for r in self.alerts.values()
                if r.alert.kind == "unassigned_order"
            }

    def eta_summary(self) -> dict[str, float]:
        """n, mean absolute p50 error (s), mean error (s, late positive), p10-p90 coverage."""
        with self.lock:
            errors = list(self.eta_errors)
        if not errors:
            return {"n": 0}
        n = len(errors)
        return {
            "n": n,
            "mae_s": sum(abs(e.error_s) for e in errors) / n,
            "bias_s": sum(e.error_s for e in errors) / n,
            "coverage": sum(e.inside for e in errors) / n,
        }

    def decisions_for(self, record: AlertRecord) -> list[Decision]:
        """The decisions an alert led to: by ``caused_by`` (``alert:<id>``; a failed stop:
        ``stop:<route_id>/<stop_id>``, or ``stop:<stop_id>`` with the route among those changed)."""
        alert = record.alert
        stop_id = alert.details.get("stop_id")
        out = []
        for d in self.decisions:
            caused = d.update.caused_by or ""
            if caused == f"alert:{alert.alert_id}":
                out.append(d)
            elif alert.kind == "failed_delivery" and d.update.issued_ms >= alert.opened_ms:
                routes = (d.update.rationale or {}).get("routes", [d.update.route_id])
                if caused == f"stop:{alert.route_id}/{stop_id}" or (
                    caused == f"stop:{stop_id}" and alert.route_id in routes
                ):
                    out.append(d)
        return out

    def recent(self, n: int) -> list[tuple[int, str]]:
        with self.lock:
            return list(self.log)[-n:]

    def since(self, count: int) -> tuple[int, list[tuple[int, str]]]:
        """Lines logged after the first ``count`` (as many as are kept) and the new count."""
        with self.lock:
            new = min(self.said - count, len(self.log))
            return self.said, list(self.log)[len(self.log) - new :] if new > 0 else []


def _who(alert: Alert) -> str:
    return alert.driver_id if alert.kind != "unassigned_order" else f"order {alert.driver_id}"


def describe_alert(alert: Alert) -> str:
    """A few words on an alert from its details."""
    d = alert.details
    if alert.kind == "off_route" and "distance_m" in d:
        return f"{float(d['distance_m']):.0f} m from the route"
    if alert.kind == "behind_schedule" and "delay_s" in d:
        return f"{float(d['delay_s']):.0f} s late"
    if alert.kind == "failed_delivery":
        return f"{d.get('stop_id', '')} {d.get('reason', '')}".strip()
    if alert.kind == "stale" and "last_seen_ms" in d:
        return (
            f"silent since {time.strftime('%H:%M:%S', time.gmtime(int(d['last_seen_ms']) / 1000))}"
        )
    if alert.kind == "unassigned_order":
        return str(d.get("reason", ""))
    if alert.kind == "eta_window_risk" and "p90_ms" in d and "window_end_ms" in d:
        late = (int(d["p90_ms"]) - int(d["window_end_ms"])) / 1000
        return f"{d.get('stop_id', '')}: p90 {late:.0f} s after its window"
    return ""


def describe_decision(d: Decision) -> str:
    parts = []
    if d.orders:
        parts.append("orders " + ", ".join(d.orders))
    if d.moved:
        parts.append(f"{len(d.moved)} stops moved")
    if d.gain is not None:
        parts.append(f"gain {d.gain:.0f}")
    if d.update.caused_by and not d.orders:
        parts.append(d.update.caused_by)
    return "; ".join(parts) or "new plan"


class StoryReader:
    """A consumer thread over the run's output topics, feeding a Story (and the drivers)."""

    def __init__(
        self,
        settings: Settings,
        story: Story,
        on_update: Callable[[RouteUpdate], None] = lambda _u: None,
        group_prefix: str = "demo-story-",
        since_ms: int = 0,
    ) -> None:
        self.story = story
        self.on_update = on_update
        self.since_ms = since_ms  # earlier messages belong to an earlier run on shared topics
        self.topics = {topic_name(settings, b): b for b in OUTPUT_TOPICS}
        self.consumer = Consumer(
            confluent_config(
                settings,
                {
                    "bootstrap.servers": settings.kafka_bootstrap,
                    "group.id": f"{group_prefix}{uuid.uuid4().hex[:8]}",
                    "auto.offset.reset": "earliest",
                    "enable.auto.commit": False,
                    "log_level": 0,
                },
            )
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-story", daemon=True)
        self._alert = msgspec.json.Decoder(Alert)
        self._update = msgspec.json.Decoder(RouteUpdate)
        self._eta = msgspec.json.Decoder(EtaUpdate)
        self._dead = msgspec.json.Decoder(dict[str, Any])

    def start(self) -> StoryReader:
        self.consumer.subscribe(list(self.topics))
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        with contextlib.suppress(Exception):
            self.consumer.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            for msg in self.consumer.consume(500, 0.3):
                if msg.error() is None and msg.timestamp()[1] >= self.since_ms:
                    self.take(self.topics.get(msg.topic() or "", ""), msg.value() or b"")

    def take(self, base: str, value: bytes) -> None:
        """One output message (bad ones are counted, never fatal)."""
        story = self.story
        try:
            if base == ALERTS:
                story.take_alert(self._alert.decode(value))
            elif base in (ROUTE_UPDATES, ROUTE_PROPOSALS):
                update = self._update.decode(value)
                story.take_update(update, proposal=base == ROUTE_PROPOSALS)
                if base == ROUTE_UPDATES:
                    self.on_update(update)
            elif base == ETAS:
                story.take_eta(self._eta.decode(value))
            elif base == DLQ:
                story.dead_letters[str(self._dead.decode(value).get("reason", "?"))] += 1
        except (msgspec.DecodeError, msgspec.ValidationError):
            story.undecodable += 1
