"""Live ETAs of one driver's route: anchor, features, model, online correction, what to send.

Pure logic over plain state (no Kafka, Redis or Faust): the ETA agent (streams/eta) feeds
it fixes, stop events and plans, and writes what it returns. Predictions are anchored at the
driver's latest fix (event time), so a lagging worker, a replay and a backtest agree.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fleet.records import Alert, AlertKind, EtaUpdate, RoutePlan, StopEta
from fleet.tracking.alerts import OpenAlert, apply_change
from fleet.tracking.changes import Change
from models.dataset import ANCHOR_EVERY_MS
from models.estimators import Quantiles
from models.features import (
    RECENT_WINDOW_MS,
    Anchor,
    FeatureBatch,
    PlanContext,
    recent_speed_mps,
    route_features,
)
from models.online import OnlineCorrector
from models.registry import EtaArtifact

PUBLISH_SHIFT_MS = 60_000  # contract: a stop's p50 moving this much is a meaningful change
RISK_RESOLVE_MARGIN_MS = 60_000  # p90 must come this far back inside the window to resolve
MAX_FIXES = 120  # fixes kept per driver for the recent speed (15 min at a fix every 8 s)
RISK_KIND: AlertKind = "eta_window_risk"


@dataclass
class LiveModel:
    """The promoted model a worker predicts with, and its online correction."""

    version: str
    artifact: EtaArtifact
    corrector: OnlineCorrector = field(default_factory=OnlineCorrector)


@dataclass
class DriverEtaState:
    """What the ETA agent keeps about one driver's current route (memory only)."""

    driver_id: str
    route_id: str | None = None
    plan_version: int = 0
    along_m: float | None = None
    fixes: deque[tuple[int, float, float]] = field(default_factory=lambda: deque(maxlen=MAX_FIXES))
    arrived: dict[str, int] = field(default_factory=dict)  # stop_id -> arrival (event time)
    done: set[str] = field(default_factory=set)  # delivered or failed
    published: dict[str, int] = field(default_factory=dict)  # stop_id -> p50_ms last sent
    published_version: str | None = None
    recorded: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    risks: dict[str, OpenAlert] = field(default_factory=dict)

    def follow(self, route_id: str | None, plan_version: int) -> None:
        """Switch to a route / plan version: a new route starts from nothing."""
        if route_id != self.route_id:
            self.route_id, self.along_m = route_id, None
            self.arrived, self.done, self.published, self.recorded = {}, set(), {}, {}
            self.published_version = None
        elif plan_version != self.plan_version:
            self.along_m = None  # positions along a new line are not comparable
        self.plan_version = plan_version

    def add_fix(self, ts_ms: int, lat: float, lon: float) -> None:
        """A fix that moved the driver (in order per driver)."""
        if self.fixes and ts_ms < self.fixes[-1][0]:
            return
        self.fixes.append((ts_ms, lat, lon))


def anchor_at_latest_fix(state: DriverEtaState, ctx: PlanContext) -> Anchor | None:
    """The driver's latest fix as an anchor: position along the plan (never backwards),
    recent speed, and what is left of the service at a stop the driver is at."""
    if not state.fixes:
        return None
    ts, lat, lon = state.fixes[-1]
    along, _ = ctx.line.project_one(lat, lon, state.along_m)
    state.along_m = along if state.along_m is None else max(state.along_m, along)
    recent = [f for f in state.fixes if f[0] > ts - RECENT_WINDOW_MS]
    speed = recent_speed_mps(
        [f[0] for f in recent], [f[1] for f in recent], [f[2] for f in recent], ts
    )
    service_left = 0.0
    serving = [(t, s) for s, t in state.arrived.items() if s not in state.done]
    if serving:
        arrived_ms, stop_id = max(serving)
        k = ctx.index_of(stop_id)
        if k is not None:
            service_left = max(0.0, float(ctx.service_s[k]) - (ts - arrived_ms) / 1000.0)
    return Anchor(ts, lat, lon, state.along_m, speed, service_left)


def remaining_stops(state: DriverEtaState, ctx: PlanContext) -> list[int]:
    """Plan indices of the stops neither reached nor done."""
    return [
        k
        for k, stop_id in enumerate(ctx.stop_ids)
        if stop_id not in state.arrived and stop_id not in state.done
    ]


@dataclass(frozen=True, slots=True)
class RouteQuery:
    """One driver's features at its anchor, ready for a batched predict."""

    state: DriverEtaState
    plan: RoutePlan
    ctx: PlanContext
    anchor: Anchor
    stops: list[int]
    batch: FeatureBatch


def build_query(
    state: DriverEtaState, plan: RoutePlan, ctx: PlanContext, model: LiveModel
) -> RouteQuery | None:
    """Features of a driver's remaining stops, or None when there is nothing to predict."""
    anchor = anchor_at_latest_fix(state, ctx)
    if anchor is None:
        return None
    stops = remaining_stops(state, ctx)
    batch = route_features(ctx, anchor, stops, model.artifact.speeds)
    return RouteQuery(state, plan, ctx, anchor, stops, batch)


def predict_queries(model: LiveModel, queries: list[RouteQuery]) -> list[tuple[Quantiles, Any]]:
    """(corrected, raw p50 seconds) per query, from one predict over all of them."""
    nonempty = [q for q in queries if len(q.batch)]
    out: list[tuple[Quantiles, Any]] = []
    if not nonempty:
        return [(Quantiles(*(np.zeros(0),) * 3), np.zeros(0)) for _ in queries]
    raw = model.artifact.model.predict(FeatureBatch.concat([q.batch for q in nonempty]))
    start = 0
    for q in queries:
        n = len(q.batch)
        part = Quantiles(
            raw.p10_s[start : start + n], raw.p50_s[start : start + n], raw.p90_s[start : start + n]
        )
        start += n
        corrected = model.corrector.adjust(part, q.batch.dest_zone, q.anchor.ts_ms)
        out.append((corrected, part.p50_s))
    return out


def stop_etas(query: RouteQuery, q: Quantiles) -> list[StopEta]:
    """Arrival times (epoch ms) of the remaining stops, in visiting order."""
    t = query.anchor.ts_ms
    return [
        StopEta(
            query.ctx.stop_ids[k],
            t + round(p10 * 1000),
            t + round(p50 * 1000),
            t + round(p90 * 1000),
        )
        for k, p10, p50, p90 in zip(query.stops, q.p10_s, q.p50_s, q.p90_s, strict=True)
    ]


def record_predictions(query: RouteQuery, raw_p50_s: Any, keep: int) -> None:
    """Keep the model's last ``keep`` p50s, one per ANCHOR_EVERY_MS, of each stop (the
    online correction learns from them as the offline replay does)."""
    state, t = query.state, query.anchor.ts_ms
    for k, p50 in zip(query.stops, raw_p50_s, strict=True):
        made = state.recorded.setdefault(query.ctx.stop_ids[k], [])
        if not made or t - made[-1][0] >= ANCHOR_EVERY_MS:
            made.append((t, float(p50)))
            del made[:-keep]


def observe_arrival(
    model: LiveModel, state: DriverEtaState, zone: str, stop_id: str, arrived_ms: int
) -> None:
    """A stop was reached: its recorded predictions teach the online correction."""
    made = state.recorded.pop(stop_id, [])
    pairs = [(p50, (arrived_ms - t) / 1000.0) for t, p50 in made if t < arrived_ms]
    if pairs:
        model.corrector.observe(zone, arrived_ms, pairs)


def needs_publish(state: DriverEtaState, etas: list[StopEta], version: str) -> bool:
    """Contract: a stop's p50 moved >= 60 s, a stop is done (the set changed), a new model."""
    if version != state.published_version:
        return True
    if {e.stop_id for e in etas} != set(state.published):
        return True
    return any(abs(e.p50_ms - state.published[e.stop_id]) >= PUBLISH_SHIFT_MS for e in etas)


def eta_update(
    state: DriverEtaState, etas: list[StopEta], version: str, anchor_ms: int
) -> EtaUpdate:
    """The message to send, remembering what was sent. ``computed_ms`` is the anchor (the
    latest fix's time), so a replay of the same pings sends the same messages."""
    assert state.route_id is not None
    state.published = {e.stop_id: e.p50_ms for e in etas}
    state.published_version = version
    return EtaUpdate(state.route_id, state.driver_id, version, anchor_ms, etas)


def window_risk_changes(
    state: DriverEtaState, plan: RoutePlan, etas: list[StopEta], at_ms: int
) -> list[Alert]:
    """Open ``eta_window_risk`` when a stop's p90 passes its window end; resolve once it is
    back inside by RISK_RESOLVE_MARGIN_MS, or the stop is reached, done or off the plan."""
    out: list[Alert] = []
    windows = {s.stop_id: s.window_end_ms for s in plan.stops}
    by_stop = {e.stop_id: e for e in etas}
    for stop_id, end in windows.items():
        key = f"{RISK_KIND}|{plan.route_id}|{stop_id}"  # '|' is in no identifier
        eta = by_stop.get(stop_id)
        if end is None or eta is None:
            change = Change("resolve", at_ms, details={"cause": "stop_reached_or_done"})
        elif eta.p90_ms > end:
            details = {
                "stop_id": stop_id,
                "window_end_ms": end,
                "p50_ms": eta.p50_ms,
                "p90_ms": eta.p90_ms,
            }
            # The window's end fixes the id: a restarted worker reopening it reuses the id.
            change = Change("open", at_ms, basis_ms=end, details=details)
        elif eta.p90_ms <= end - RISK_RESOLVE_MARGIN_MS:
            change = Change("resolve", at_ms, details={"p50_ms": eta.p50_ms, "p90_ms": eta.p90_ms})
        else:
            continue
        alert = apply_change(state.risks, state.driver_id, plan.route_id, key, RISK_KIND, change)
        if alert is not None:
            out.append(alert)
    for key in [k for k in state.risks if k.split("|")[2] not in windows]:  # stop removed
        change = Change("resolve", at_ms, details={"cause": "stop_removed"})
        alert = apply_change(state.risks, state.driver_id, plan.route_id, key, RISK_KIND, change)
        if alert is not None:
            out.append(alert)
    return out


def finite_etas(etas: list[StopEta]) -> bool:
    """Every time an integer we can send (guards the topic against a broken model)."""
    return all(math.isfinite(v) for e in etas for v in (e.p10_ms, e.p50_ms, e.p90_ms))
