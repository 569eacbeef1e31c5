"""Bringing a driver's track onto the current version of its route, as a pure function."""

from __future__ import annotations

import msgspec

from fleet.records import RoutePlan
from fleet.tracking.plans import StopsHandled
from fleet.tracking.tracker import (
    DriverTrack,
    PlanGeometry,
    TrackResult,
    apply_plan,
    handle_stops,
    plan_geometry,
    release_route,
)

RECENT_COMMANDS = 64  # command ids kept per route: a redelivered command applies once


class PlanRecord(msgspec.Struct):
    """A plan version as stored, with the stops its command handled and recent commands."""

    plan: RoutePlan
    handled: list[tuple[str, list[str], str]] = msgspec.field(default_factory=list)
    commands: list[str] = msgspec.field(default_factory=list)


def handle_stops_of(track: DriverTrack, stop_ids: list[str], how: str, at_ms: int) -> TrackResult:
    """Resolve what a dispatcher handled on the driver's route."""
    handled = StopsHandled(track.driver_id, track.route_id or "", tuple(stop_ids), how)
    return handle_stops(track, handled, at_ms)


def sync_plan(
    track: DriverTrack, record: PlanRecord | None, at_ms: int
) -> tuple[TrackResult, PlanGeometry | None]:
    """Bring the driver onto ``record`` (its route's latest plan), or off a route it lost."""
    if record is None or record.plan.driver_id != track.driver_id:
        if track.route_id is not None:
            return release_route(track, track.route_id, at_ms), None
        return TrackResult(track, []), None
    plan = record.plan
    if plan.route_id == track.route_id and plan.version == track.plan_version:
        return TrackResult(track, []), plan_geometry(plan)
    result = apply_plan(track, plan, at_ms)
    alerts = list(result.alerts)
    current = result.track
    for _route, stop_ids, how in record.handled:
        handled = handle_stops_of(current, stop_ids, how, at_ms)
        current, alerts = handled.track, alerts + handled.alerts
    return TrackResult(current, alerts), plan_geometry(plan)
