"""What route tracking writes to the read model: driver fields, stop outcomes, recent speed."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import msgspec

from fleet.geo import haversine_m
from fleet.records import Ping, RoutePlan
from fleet.tracking.completion import StopOutcome, stop_outcomes
from fleet.tracking.tracker import DriverTrack, PlanGeometry, driver_status, route_progress

DriverFields = dict[str | bytes, str | int]


def driver_fields(track: DriverTrack, geo: PlanGeometry | None, now_ms: int) -> DriverFields:
    """The driver hash fields a dashboard shows (status, progress, next stop, counts)."""
    progress = route_progress(track, geo.plan if geo is not None else None)
    return {
        "status": driver_status(track, geo, now_ms, progress),
        "progress": f"{progress.fraction:.4f}",
        "next_stop_id": progress.next_stop_id or "",
        "route_id": track.route_id or "",
        "stops_total": progress.total,
        "stops_delivered": progress.delivered,
        "stops_failed": progress.failed,
    }


def completion_changes(
    before: DriverTrack,
    after: DriverTrack,
    plan: RoutePlan | None,
    previous_plan: RoutePlan | None,
    zone_resolution: int,
) -> list[StopOutcome]:
    """Stop outcomes to file when the route, its version or an outcome changed.

    ``previous_plan`` is the plan ``before`` followed, if known: stops it had and ``plan``
    dropped are filed as removed so they leave the reports.
    """
    unchanged = (before.route_id, before.plan_version, before.done) == (
        after.route_id,
        after.plan_version,
        after.done,
    )
    if unchanged or plan is None or plan.route_id != after.route_id:
        return []
    outcomes = stop_outcomes(plan, after.done, zone_resolution)
    old = previous_plan if before.route_id == after.route_id else None
    if old is not None and old.version != plan.version:
        kept = {s.stop_id for s in plan.stops}
        gone = msgspec.structs.replace(old, stops=[s for s in old.stops if s.stop_id not in kept])
        outcomes += stop_outcomes(gone, {}, zone_resolution, removed=True, version=plan.version)
    return outcomes


def new_outcomes(before: DriverTrack, after: DriverTrack) -> list[tuple[str, str]]:
    """(stop_id, delivered|failed) of the stops that got an outcome in this step."""
    if after.route_id != before.route_id:
        return list(after.done.items())
    return [(s, how) for s, how in after.done.items() if before.done.get(s) != how]


def recent_speed_mps(fixes: Sequence[Ping]) -> float | None:
    """Speed over the recent fixes: the reported speeds' mean, else distance over time."""
    reported = [p.speed_mps for p in fixes if p.speed_mps is not None]
    if reported:
        return sum(reported) / len(reported)
    if len(fixes) < 2:
        return None
    first, last = fixes[0], fixes[-1]
    seconds = (last.ts_ms - first.ts_ms) / 1000
    if seconds <= 0:
        return None
    metres = sum(haversine_m(a.lat, a.lon, b.lat, b.lon) for a, b in itertools.pairwise(fixes))
    return metres / seconds
