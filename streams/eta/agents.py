"""The ETA agent: p10/p50/p90 arrival times of every remaining stop of active routes.

Moved pings (hook) mark drivers for an update and feed their recent fixes; stop events
(this agent's own reader of fleet.events, co-partitioned by driver) mark arrivals and
outcomes and teach the online correction; plan changes (hook) mark the route. A timer
predicts for the marked drivers in one batch (models.serving: the same features as
training, anchored at each driver's latest fix), publishes an EtaUpdate per route when the
contract says so, sets ``eta_next_ms``, and opens/resolves ``eta_window_risk`` alerts
through tracking's alert effects. Another timer watches the registry and switches to a newly
promoted model without a restart.

Error policy: events that do not decode are skipped here and counted
(``fleet_eta_skipped_total{reason}``): tracking's events agent dead-letters them. A bug
while predicting is logged and counted (``fleet_processing_errors_total{source="eta"}``)
and the drivers wait for their next fix. No model promoted: nothing is published.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict

import msgspec
from faust.types import StreamT
from prometheus_client import Counter, Gauge

from fleet.decode import decode_struct
from fleet.errors import InvalidMessage
from fleet.live import driver_key
from fleet.records import DeliveryEvent, RoutePlan, encode
from models.features import PlanContext
from models.online import OnlineCorrector, OnlineParams
from models.registry import ModelRegistry, RegistryError, registry_root
from models.serving import (
    DriverEtaState,
    LiveModel,
    RouteQuery,
    build_query,
    eta_update,
    finite_etas,
    needs_publish,
    observe_arrival,
    predict_queries,
    record_predictions,
    stop_etas,
    window_risk_changes,
)
from streams import hooks
from streams.app import app, settings
from streams.dead_letters import PROCESSING_ERRORS
from streams.resilience import retry_transient
from streams.resources import redis
from streams.topics import etas_topic, events_topic
from streams.tracking import reads
from streams.tracking.effects import Effects

log = logging.getLogger(__name__)

MAX_DRIVERS = 100_000  # per worker; least recently moved forgotten beyond
MAX_PLANS = 20_000  # plan contexts kept (one per route version)

ETA_UPDATES = Counter("fleet_eta_updates_total", "EtaUpdate messages published")
ETA_PREDICTIONS = Counter("fleet_eta_predictions_total", "Stop ETAs computed")
ETA_SKIPPED = Counter("fleet_eta_skipped_total", "Inputs the ETA agent skipped", ["reason"])
ETA_MODEL = Gauge("fleet_eta_model_info", "The model version in use (value 1)", ["version"])

_EVENT = msgspec.json.Decoder(DeliveryEvent)
drivers: OrderedDict[str, DriverEtaState] = OrderedDict()
pending: set[str] = set()
_contexts: OrderedDict[tuple[str, int], PlanContext] = OrderedDict()
live: dict[str, LiveModel] = {}  # "current" -> the model in use


def _state(driver_id: str) -> DriverEtaState:
    state = drivers.get(driver_id)
    if state is None:
        state = drivers[driver_id] = DriverEtaState(driver_id)
        while len(drivers) > MAX_DRIVERS:
            old, _ = drivers.popitem(last=False)
            pending.discard(old)
    else:
        drivers.move_to_end(driver_id)
    return state


def _context(plan: RoutePlan, zone_resolution: int) -> PlanContext:
    key = (plan.route_id, plan.version)
    ctx = _contexts.get(key)
    if ctx is None:
        ctx = _contexts[key] = PlanContext.from_plan(plan, zone_resolution)
        while len(_contexts) > MAX_PLANS:
            _contexts.popitem(last=False)
    return ctx


# --- inputs ---------------------------------------------------------------------------------


@hooks.moved_pings.register
async def note_moved_drivers(moved: hooks.MovedPings) -> None:
    """Fixes of moved drivers; the drivers wait for the next update."""
    for ping in moved.pings:
        _state(ping.driver_id).add_fix(ping.ts_ms, ping.lat, ping.lon)
        pending.add(ping.driver_id)


@hooks.plan_changed.register
async def note_plan_change(change: hooks.PlanChanged) -> None:
    """A new plan version: its driver's ETAs are recomputed on the next update."""
    if change.plan.driver_id in drivers:
        pending.add(change.plan.driver_id)


@app.agent(events_topic)
async def note_stop_events(stream: StreamT[bytes]) -> None:
    """Arrivals and outcomes at event time: stops leave the ETAs, the correction learns."""
    async for event in stream.events():
        try:
            delivery = decode_struct(event.value, _EVENT, settings.max_message_bytes)
        except InvalidMessage as exc:
            ETA_SKIPPED.labels(exc.reason).inc()  # tracking dead-letters it
            continue
        try:
            apply_stop_event(delivery)
        except Exception:
            PROCESSING_ERRORS.labels("eta").inc()
            log.exception("ETA agent failed on event %s", delivery.event_id)


def apply_stop_event(event: DeliveryEvent) -> None:
    """Record an arrival or outcome of the driver's current route."""
    if event.stop_id is None or event.type not in ("arrived", "delivered", "failed"):
        return
    state = _state(event.driver_id)
    if event.route_id is not None and event.route_id != state.route_id:
        plan = reads.current_plan(event.route_id)
        state.follow(event.route_id, plan.version if plan else 0)
    first_arrival = event.stop_id not in state.arrived and event.stop_id not in state.done
    if first_arrival:
        state.arrived[event.stop_id] = event.ts_ms
    if event.type != "arrived":
        state.done.add(event.stop_id)
    model = live.get("current")
    plan = reads.current_plan(state.route_id) if state.route_id else None
    if first_arrival and model is not None and plan is not None:
        ctx = _context(plan, model.artifact.zone_resolution)
        k = ctx.index_of(event.stop_id)
        if k is not None:
            observe_arrival(model, state, str(ctx.stop_zones[k]), event.stop_id, event.ts_ms)
    pending.add(event.driver_id)


# --- the update -----------------------------------------------------------------------------


@app.timer(interval=settings.eta_update_interval_s)
async def update_etas() -> None:
    """Predict for every marked driver in one batch; publish what changed meaningfully."""
    model = live.get("current")
    if model is None or not pending:
        return
    batch = list(pending)
    pending.clear()
    try:
        await publish_etas(model, batch)
    except Exception:
        PROCESSING_ERRORS.labels("eta").inc()
        log.exception("ETA update of %d drivers failed", len(batch))


def _queries(model: LiveModel, driver_ids: list[str]) -> list[RouteQuery]:
    queries = []
    for driver_id in driver_ids:
        view = reads.driver_view(driver_id)
        state = drivers.get(driver_id)
        if view is None or view.route_id is None or state is None:
            continue
        plan = reads.current_plan(view.route_id)
        if plan is None or not plan.stops:
            continue
        state.follow(plan.route_id, plan.version)
        state.done.update(view.done)
        query = build_query(state, plan, _context(plan, model.artifact.zone_resolution), model)
        if query is not None:
            queries.append(query)
    return queries


async def publish_etas(model: LiveModel, driver_ids: list[str]) -> int:
    """One predict for all drivers; EtaUpdates, eta_next_ms and risk alerts; count sent."""
    queries = _queries(model, driver_ids)
    if not queries:
        return 0
    predictions = await asyncio.to_thread(predict_queries, model, queries)
    updates, effects = [], Effects()
    next_eta: dict[str, int | None] = {}
    keep = model.corrector.params.recent_predictions
    for query, (q, raw_p50) in zip(queries, predictions, strict=True):
        record_predictions(query, raw_p50, keep)
        etas = stop_etas(query, q)
        ETA_PREDICTIONS.inc(len(etas))
        if not finite_etas(etas):
            ETA_SKIPPED.labels("non_finite_prediction").inc()
            continue
        at = query.anchor.ts_ms
        effects.alerts.extend(window_risk_changes(query.state, query.plan, etas, at))
        if needs_publish(query.state, etas, model.version):
            updates.append(eta_update(query.state, etas, model.version, at))
            next_eta[query.state.driver_id] = etas[0].p50_ms if etas else None
    if next_eta:
        pipe = redis.client.pipeline(transaction=False)
        for driver_id, p50_ms in next_eta.items():
            if p50_ms is None:  # every stop reached: no next stop to expect
                pipe.hdel(driver_key(driver_id), "eta_next_ms")
            else:
                pipe.hset(driver_key(driver_id), "eta_next_ms", str(p50_ms))
        await retry_transient("redis_eta", pipe.execute)
    for update in updates:
        await etas_topic.send(key=update.route_id.encode(), value=encode(update))
    ETA_UPDATES.inc(len(updates))
    await effects.flush()
    return len(updates)


# --- the model ------------------------------------------------------------------------------


@app.timer(interval=settings.eta_registry_poll_s)
async def follow_promoted_model() -> None:
    """Load a newly promoted model (rollbacks too) and re-publish every route with it."""
    registry = ModelRegistry(registry_root(settings))
    version = registry.promoted()
    current = live.get("current")
    if version is None or (current is not None and current.version == version):
        return
    try:
        artifact = await asyncio.to_thread(registry.load, version)
    except RegistryError:
        kept = current.version if current else None
        log.exception("cannot load promoted ETA model %s; keeping %s", version, kept)
        return
    # A fresh correction: what was learnt corrected the previous model, not this one.
    online = OnlineParams(halflife_s=settings.eta_online_halflife_s)
    live["current"] = LiveModel(version, artifact, OnlineCorrector(online))
    for state in drivers.values():
        state.recorded.clear()
    ETA_MODEL.clear()
    ETA_MODEL.labels(version).set(1)
    log.info("ETA model %s in use", version)
    pending.update(drivers)
