"""What the decision sees: current plans with the drivers' live state and the locks."""

from __future__ import annotations

from decision.live import DriverState, RouteState
from fleet.records import RoutePlan
from streams.decision.state import locks_of
from streams.tracking import reads


def route_state(plan: RoutePlan, *, pinned: bool) -> RouteState:
    """A route as the solver sees it: its plan, where the driver is, what is done, locks."""
    view = reads.driver_view(plan.driver_id)
    driver = None
    if view is not None and view.route_id == plan.route_id:
        fix = view.last_fix
        at = fix if fix is not None else (plan.depot or plan.stops[0] if plan.stops else None)
        if at is not None:
            driver = DriverState(
                lat=at.lat,
                lon=at.lon,
                ts_ms=fix.ts_ms if fix is not None else 0,
                done=frozenset(view.done),
                approaching=view.progress.next_stop_id if fix is not None else None,
            )
    locked = locks_of([s.stop_id for s in plan.stops], plan.route_id, pinned=pinned)
    return RouteState(plan, driver, locked)


def active_states(*, pinned: bool = True) -> list[RouteState]:
    """Every route with stops left (``pinned``: stops placed by hand keep their place)."""
    return [route_state(plan, pinned=pinned) for plan in reads.active_routes()]
