"""Per-driver tracking state and its transitions on pings, events, plans and the clock."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np

from fleet.records import Alert, AlertKind, DeliveryEvent, Ping, RoutePlan
from fleet.route_geometry import Projection, RouteLine
from fleet.tracking.alerts import OpenAlert, apply_change
from fleet.tracking.changes import Change
from fleet.tracking.config import TrackingConfig
from fleet.tracking.off_route import OffRouteFix, OffRouteState, step_off_route
from fleet.tracking.plans import StopsHandled
from fleet.tracking.schedule import BehindState, expected_stop_id, planned_time_at, step_behind
from fleet.tracking.stale import StaleState, check_stale, ping_seen

RECENT_EVENTS = 256  # event ids remembered for de-duplication (a route has fewer events)
EARLY_ROUTES = 4  # routes whose early outcomes a driver keeps (the oldest go first)
EARLY_STOPS = 500  # outcomes kept per such route


class DriverTrack(msgspec.Struct):
    """Everything the tracker keeps about one driver; serialisable into a Faust table."""

    driver_id: str
    route_id: str | None = None
    plan_version: int = 0
    done: dict[str, str] = msgspec.field(default_factory=dict)  # stop_id -> delivered|failed
    arrived_stop_id: str | None = None
    on_shift: bool | None = None  # None: no shift event seen, the plan's window decides
    last_seen_ms: int | None = None  # pipeline time of the last ping (silence is measured)
    last_fix_ms: int | None = None
    along_m: float | None = None
    cross_m: float | None = None
    lag_ms: int | None = None
    recent_events: list[str] = msgspec.field(default_factory=list)
    off_route: OffRouteState = msgspec.field(default_factory=OffRouteState)
    behind: BehindState = msgspec.field(default_factory=BehindState)
    stale: StaleState = msgspec.field(default_factory=StaleState)
    alerts: dict[str, OpenAlert] = msgspec.field(default_factory=dict)
    # Outcomes whose event names a route that is not (yet) this driver's: route_id -> {stop_id:
    # delivered|failed}. Plans and events are on different topics, so an outcome can come
    # before its route's plan; the plan, when it comes, starts with them done.
    early: dict[str, dict[str, str]] = msgspec.field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PlanGeometry:
    """A plan with its metric line and the stops' distances along it."""

    plan: RoutePlan
    line: RouteLine
    stop_along_m: np.ndarray

    @classmethod
    def of(cls, plan: RoutePlan) -> PlanGeometry:
        line = RouteLine.from_plan(plan) if plan.stops or plan.path else RouteLine([(0.0, 0.0)])
        return cls(plan, line, line.stop_positions(plan))


_GEOMETRY: OrderedDict[tuple[str, int], PlanGeometry] = OrderedDict()
# Holds every route a worker tracks: the stale timer visits all its drivers every few seconds,
# so a cache smaller than the fleet is rebuilt whole on each sweep (at 8,000 routes and 4,096
# entries that was 80 % of the event loop; see docs/benchmarks.md, issue 13). ~3 KB a route.
GEOMETRY_CACHE_SIZE = 100_000


def plan_geometry(plan: RoutePlan) -> PlanGeometry:
    """The geometry of a plan version, built once per process (LRU)."""
    key = (plan.route_id, plan.version)
    found = _GEOMETRY.get(key)
    if found is not None and found.plan is plan:
        _GEOMETRY.move_to_end(key)
        return found
    geo = PlanGeometry.of(plan)
    _GEOMETRY[key] = geo
    if len(_GEOMETRY) > GEOMETRY_CACHE_SIZE:
        _GEOMETRY.popitem(last=False)
    return geo


@dataclass(frozen=True, slots=True)
class TrackResult:
    """A new state and the alert messages its transition produced."""

    track: DriverTrack
    alerts: list[Alert]


@dataclass(frozen=True, slots=True)
class RouteProgress:
    """How far a driver is through the route's stops."""

    total: int
    delivered: int
    failed: int
    next_stop_id: str | None

    @property
    def done(self) -> int:
        return self.delivered + self.failed

    @property
    def fraction(self) -> float:
        """Completion: stops done (delivered or failed) / total; an empty route is done."""
        return 1.0 if self.total == 0 else self.done / self.total


def _copy(track: DriverTrack) -> DriverTrack:
    return msgspec.structs.replace(
        track,
        done=dict(track.done),
        recent_events=list(track.recent_events),
        alerts=dict(track.alerts),
        early={k: dict(v) for k, v in track.early.items()},
    )


def _emit(
    t: DriverTrack,
    out: list[Alert],
    key: str,
    kind: AlertKind,
    change: Change | None,
    route_id: str | None = None,
):
    if change is not None:
        route = route_id if route_id is not None else t.route_id
        alert = apply_change(t.alerts, t.driver_id, route, key, kind, change)
        if alert is not None:
            out.append(alert)


def next_stop_index(t: DriverTrack, plan: RoutePlan) -> int:
    """Index of the first stop without an outcome (len(stops) when all are done)."""
    for i, stop in enumerate(plan.stops):
        if stop.stop_id not in t.done:
            return i
    return len(plan.stops)


def route_progress(t: DriverTrack, plan: RoutePlan | None) -> RouteProgress:
    """Completion and next stop of the driver's current plan."""
    if plan is None or plan.route_id != t.route_id:
        return RouteProgress(0, 0, 0, None)
    stops, done = plan.stops, t.done
    if not done:  # most calls: one per ping of a driver before its first outcome
        return RouteProgress(len(stops), 0, 0, stops[0].stop_id if stops else None)
    delivered = failed = 0
    nxt: str | None = None
    counted: set[str] = set()  # a stop id listed twice has one outcome
    for stop in stops:
        how = done.get(stop.stop_id)
        if how is None:
            if nxt is None:
                nxt = stop.stop_id
        elif stop.stop_id not in counted:
            counted.add(stop.stop_id)
            delivered += how == "delivered"
            failed += how == "failed"
    return RouteProgress(len(stops), delivered, failed, nxt)


def is_on_shift(t: DriverTrack, plan: RoutePlan | None, now_ms: int) -> bool:
    """Shift events decide; without them, the plan's shift window does."""
    if t.on_shift is not None:
        return t.on_shift
    if plan is None or plan.shift_start_ms is None or plan.shift_end_ms is None:
        return False
    return plan.shift_start_ms <= now_ms <= plan.shift_end_ms


def driver_status(
    t: DriverTrack,
    geo: PlanGeometry | None,
    now_ms: int,
    progress: RouteProgress | None = None,
) -> str:
    """``stale``, ``idle``, ``off_route``, ``behind_schedule`` or ``on_schedule``
    (``progress``: the driver's ``route_progress`` on ``geo``'s plan, if already known)."""
    plan = geo.plan if geo is not None else None
    if t.stale.is_stale:
        return "stale"
    if not is_on_shift(t, plan, now_ms) or plan is None:
        return "idle"
    if (progress or route_progress(t, plan)).fraction >= 1:
        return "idle"
    if t.off_route.is_off:
        return "off_route"
    if t.behind.is_behind:
        return "behind_schedule"
    return "on_schedule"


def _evaluate_schedule(
    t: DriverTrack,
    geo: PlanGeometry,
    at_ms: int,
    cfg: TrackingConfig,
    out: list[Alert],
    index: int | None = None,
) -> None:
    """Lag at ``at_ms`` (the triggering ping or event); ``index``: the next stop, if known."""
    plan = geo.plan
    i = next_stop_index(t, plan) if index is None else index
    planned = planned_time_at(plan, geo.stop_along_m, i, t.along_m)
    if planned is None:
        return
    lag = at_ms - planned
    t.lag_ms = lag
    if t.behind.is_behind:
        if lag >= cfg.behind_schedule_resolve_ms:
            return  # the common case: no change, no details to build
    elif lag <= cfg.behind_schedule_ms:
        return
    details: dict[str, Any] = {
        "driver_id": t.driver_id,
        "current_stop_id": plan.stops[i].stop_id,
        "expected_stop_id": expected_stop_id(plan, at_ms),
        "delay_s": round(lag / 1000, 1),
        # Remaining legs are assumed to take as planned, so today's lag carries to the end.
        "est_end_delay_s": round(max(0, lag) / 1000, 1),
    }
    t.behind, change = step_behind(t.behind, lag, at_ms, details, cfg)
    _emit(t, out, "behind_schedule", "behind_schedule", change)


def _route_active(t: DriverTrack, geo: PlanGeometry | None) -> bool:
    return (
        geo is not None
        and geo.plan.route_id == t.route_id
        and next_stop_index(t, geo.plan) < len(geo.plan.stops)
    )


def apply_pings(
    track: DriverTrack,
    geo: PlanGeometry | None,
    pings: list[Ping],
    now_ms: int,
    cfg: TrackingConfig,
    projected: Projection | None = None,
) -> TrackResult:
    """Advance a driver by accepted pings in time order (one call per driver per batch).

    ``projected``: the pings already projected on ``geo``'s line from the track's along
    position (``route_geometry.project_many`` does a batch of drivers at once)."""
    t, out = _copy(track), list[Alert]()
    t.stale, change = ping_seen(t.stale, now_ms)
    _emit(t, out, "stale", "stale", change)
    t.last_seen_ms = now_ms
    if not pings:
        return TrackResult(t, out)
    t.last_fix_ms = max(p.ts_ms for p in pings)
    if geo is None or not _route_active(t, geo):
        return TrackResult(t, out)
    proj = projected
    if proj is None:
        proj = geo.line.project([p.lat for p in pings], [p.lon for p in pings], t.along_m)
    hint = t.along_m
    index = next_stop_index(t, geo.plan)  # pings give no outcomes: fixed for the batch
    for ping, along, cross in zip(pings, proj.along_m, proj.cross_m, strict=True):
        fix = OffRouteFix(ping.ts_ms, float(cross), ping.accuracy_m)
        t.off_route, change = step_off_route(t.off_route, fix, cfg)
        if change is not None and change.action == "open":
            expected = geo.plan.stops[next_stop_index(t, geo.plan)].stop_id
            details = {**change.details, "expected_stop_id": expected}
            change = msgspec.structs.replace(change, details=details)
        _emit(t, out, "off_route", "off_route", change)
        # While off route the along position is meaningless; keep the last one on it.
        if not t.off_route.is_off:
            hint = float(along)
        t.cross_m = float(cross)
        # Evaluated at every ping, so an alert opens at the ping that crossed the threshold
        # and its id (from that ping's time) does not depend on how pings were batched.
        t.along_m = hint
        _evaluate_schedule(t, geo, ping.ts_ms, cfg, out, index)
    return TrackResult(t, out)


def apply_event(
    track: DriverTrack, geo: PlanGeometry | None, event: DeliveryEvent, cfg: TrackingConfig
) -> TrackResult:
    """Apply a delivery or shift event once (a repeated event_id is a duplicate)."""
    if event.event_id in track.recent_events:
        return TrackResult(track, [])
    t, out = _copy(track), list[Alert]()
    t.recent_events = [*t.recent_events[-(RECENT_EVENTS - 1) :], event.event_id]
    at = event.ts_ms
    if event.type == "shift_start":
        t.on_shift = True
    elif event.type == "shift_end":
        t.on_shift = False
        _end_movement_alerts(t, at, "shift_end", out)
        t.stale, change = check_stale(t.stale, t.last_seen_ms, False, at, cfg)
        _emit(t, out, "stale", "stale", change)
    elif event.type == "arrived":
        t.arrived_stop_id = event.stop_id
    elif event.stop_id is not None:
        _record_outcome(t, event, out)
    if geo is not None and event.type in ("delivered", "failed"):
        if _route_active(t, geo):
            _evaluate_schedule(t, geo, at, cfg, out)
        else:
            _end_movement_alerts(t, at, "route_complete", out)
    return TrackResult(t, out)


def failed_delivery_key(route_id: str | None, stop_id: str) -> str:
    """A failed delivery is of a stop on a route: the same stop id on another route (a
    route change, a reassigned stop) is another alert."""
    return f"failed_delivery:{route_id or ''}/{stop_id}"


def _record_outcome(t: DriverTrack, event: DeliveryEvent, out: list[Alert]) -> None:
    """The outcome on the driver's route, or kept aside for the route the event names when
    that is not the driver's route (yet); its failed-delivery alert opens either way."""
    stop_id = event.stop_id
    assert stop_id is not None
    route_id = event.route_id or t.route_id
    done = t.done if route_id == t.route_id else _early_outcomes(t, route_id)
    key = failed_delivery_key(route_id, stop_id)
    if event.type == "delivered":
        done[stop_id] = "delivered"
        _emit(
            t,
            out,
            key,
            "failed_delivery",
            Change("resolve", event.ts_ms, details={"resolution": "delivered"}),
            route_id,
        )
    else:
        done[stop_id] = "failed"
        details = {
            "stop_id": stop_id,
            "reason": event.reason or "other",
            "event_id": event.event_id,
        }
        _emit(
            t,
            out,
            key,
            "failed_delivery",
            Change("open", event.ts_ms, basis_ms=event.ts_ms, details=details),
            route_id,
        )
    if t.arrived_stop_id == stop_id:
        t.arrived_stop_id = None


def _early_outcomes(t: DriverTrack, route_id: str | None) -> dict[str, str]:
    """The outcomes kept for ``route_id`` (bounded: the oldest route and, past EARLY_STOPS,
    the outcomes of a route beyond it are not kept)."""
    assert route_id is not None
    if route_id not in t.early:
        while len(t.early) >= EARLY_ROUTES:
            del t.early[next(iter(t.early))]
        t.early[route_id] = {}
    kept = t.early[route_id]
    return kept if len(kept) < EARLY_STOPS else {}


def _end_movement_alerts(t: DriverTrack, at_ms: int, cause: str, out: list[Alert]) -> None:
    """Off route and behind schedule end with the route or the shift."""
    resolve = Change("resolve", at_ms, details={"cause": cause})
    t.off_route = OffRouteState()
    t.behind = BehindState()
    _emit(t, out, "off_route", "off_route", resolve)
    _emit(t, out, "behind_schedule", "behind_schedule", resolve)


def apply_plan(track: DriverTrack, plan: RoutePlan, at_ms: int) -> TrackResult:
    """Make ``plan`` the driver's current plan (the caller checked it is the newest)."""
    t, out = _copy(track), list[Alert]()
    ids = {s.stop_id for s in plan.stops}
    if t.route_id != plan.route_id:
        _end_movement_alerts(t, at_ms, "route_changed", out)
        # Outcomes that came before the plan: those naming this route, and, for a driver
        # that had no route, those naming none.
        early = t.early.pop(plan.route_id, {})
        done = {**t.done, **early} if t.route_id is None else early
        t.done = {k: v for k, v in done.items() if k in ids}
        t.along_m, t.cross_m, t.lag_ms, t.arrived_stop_id = None, None, None, None
    else:
        t.done = {k: v for k, v in t.done.items() if k in ids}
    t.route_id, t.plan_version = plan.route_id, plan.version
    return TrackResult(t, out)


def release_route(track: DriverTrack, route_id: str, at_ms: int) -> TrackResult:
    """The route went to another driver: this one has no plan any more."""
    if track.route_id != route_id:
        return TrackResult(track, [])
    t, out = _copy(track), list[Alert]()
    _end_movement_alerts(t, at_ms, "route_changed", out)
    t.route_id, t.plan_version, t.done = None, 0, {}
    return TrackResult(t, out)


def handle_stops(track: DriverTrack, handled: StopsHandled, at_ms: int) -> TrackResult:
    """A dispatcher dealt with stops: their failed-delivery alerts resolve.

    Rescheduled stops are pending again, so their failed outcome is forgotten.
    """
    t, out = _copy(track), list[Alert]()
    for stop_id in handled.stop_ids:
        change = Change("resolve", at_ms, details={"resolution": handled.how})
        key = failed_delivery_key(handled.route_id or t.route_id, stop_id)
        _emit(t, out, key, "failed_delivery", change)
        if handled.how == "rescheduled" and t.done.get(stop_id) == "failed":
            del t.done[stop_id]
    return TrackResult(t, out)


TIMER_RECHECK_MS = 600_000  # a driver nothing is due for is still looked at this often


def next_timer_ms(
    track: DriverTrack, plan: RoutePlan | None, now_ms: int, cfg: TrackingConfig, forget_ms: int
) -> int:
    """The earliest time the periodic check could change ``track`` if no input arrives:
    its silence reaching ``stale_after`` on shift, its shift window opening or closing, its
    silence reaching ``forget_ms`` (idle drivers leave the state). Any input or plan change
    makes the driver due at once (the caller's part); the timer skips it until then."""
    times = [now_ms + TIMER_RECHECK_MS]
    if track.on_shift is None and plan is not None:
        for edge in (plan.shift_start_ms, plan.shift_end_ms):
            if edge is not None and edge >= now_ms:
                times.append(edge + 1)  # is_on_shift's window is inclusive
    if track.last_seen_ms is not None:
        if not track.stale.is_stale and is_on_shift(track, plan, now_ms):
            times.append(track.last_seen_ms + cfg.stale_after_ms)
        if not track.alerts:  # an open alert keeps a driver; its resolution makes it due
            times.append(track.last_seen_ms + forget_ms)
    return max(min(times), now_ms + 1)


def check_timers(
    track: DriverTrack, geo: PlanGeometry | None, now_ms: int, cfg: TrackingConfig
) -> TrackResult:
    """The periodic check: silence on shift makes a driver stale."""
    plan = geo.plan if geo is not None else None
    on_shift = is_on_shift(track, plan, now_ms)
    state, change = check_stale(track.stale, track.last_seen_ms, on_shift, now_ms, cfg)
    if change is None:
        return TrackResult(track, [])
    t, out = _copy(track), list[Alert]()
    t.stale = state
    _emit(t, out, "stale", "stale", change)
    return TrackResult(t, out)
