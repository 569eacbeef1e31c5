"""The read interface of tracking for other agents (ETA, decision): tracks, plans, routes.

Plans are global (every worker knows every route); a driver's track is known only on the
worker that owns the driver's partitions, so call ``driver_view`` from an agent keyed by
driver (co-partitioned with fleet.pings/fleet.events), or from a hook of tracking.
Values are snapshots: never mutate them, ask again for fresh ones.
"""

from __future__ import annotations

from dataclasses import dataclass

from fleet.records import Ping, RoutePlan
from fleet.tracking.read_model import recent_speed_mps
from fleet.tracking.tracker import RouteProgress, route_progress
from streams.tracking.state import load_record, peek_track, plan_route_ids, recent_fixes


@dataclass(frozen=True, slots=True)
class DriverView:
    """What tracking knows about one driver now."""

    driver_id: str
    route_id: str | None
    plan_version: int
    last_fix: Ping | None  # the latest ping that moved the driver (this worker's memory)
    speed_mps: float | None  # over the last few fixes: reported, else distance / time
    progress: RouteProgress  # stops total/delivered/failed and the next stop
    along_m: float | None  # distance along the planned line
    lag_ms: int | None  # behind (+) or ahead (-) of the planned schedule
    on_shift: bool | None
    done: dict[str, str]  # stop_id -> delivered | failed


def driver_view(driver_id: str) -> DriverView | None:
    """The driver's track, or None if this worker does not track the driver."""
    track = peek_track(driver_id)
    if track is None:
        return None
    fixes = list(recent_fixes.get(driver_id, ()))
    record = load_record(track.route_id)
    plan = record.plan if record is not None else None
    return DriverView(
        driver_id=driver_id,
        route_id=track.route_id,
        plan_version=track.plan_version,
        last_fix=fixes[-1] if fixes else None,
        speed_mps=recent_speed_mps(fixes),
        progress=route_progress(track, plan),
        along_m=track.along_m,
        lag_ms=track.lag_ms,
        on_shift=track.on_shift,
        done=dict(track.done),
    )


def current_plan(route_id: str) -> RoutePlan | None:
    """The route's current plan version (any worker)."""
    record = load_record(route_id)
    return record.plan if record is not None else None


def active_routes() -> list[RoutePlan]:
    """Current plans of routes with stops still to serve (any worker)."""
    plans = []
    for route_id in plan_route_ids():
        plan = current_plan(route_id)
        if plan is not None and is_active(plan):
            plans.append(plan)
    return plans


def is_active(plan: RoutePlan) -> bool:
    """Whether the plan still has stops to serve (as far as this worker knows)."""
    if not plan.stops:
        return False
    track = peek_track(plan.driver_id)
    return track is None or track.route_id != plan.route_id or len(track.done) < len(plan.stops)


def last_fix_on(plan: RoutePlan) -> Ping | None:
    """The driver's latest fix while tracked on this plan's route (``driver_view``'s
    ``last_fix`` when its route is the plan's), without building the whole view."""
    track = peek_track(plan.driver_id)
    if track is None or track.route_id != plan.route_id:
        return None
    fixes = recent_fixes.get(plan.driver_id)
    return fixes[-1] if fixes else None
