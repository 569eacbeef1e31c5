"""What the decision sees: current plans with the drivers' live state and the locks."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from decision.decide import nearest_routes
from decision.live import DriverState, RouteState
from fleet.records import LatLon, RoutePlan
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


def near_states(
    states: Sequence[RouteState],
    points: Iterable[LatLon | None],
    k: int,
    keep: Sequence[str] = (),
) -> list[RouteState]:
    """``keep`` and the ``k`` routes nearest each point: all a decision around those points
    can involve, since the solver picks its neighbours with the same ``nearest_routes``.

    Only these go to the solver process: sending every active route pickled 20,000 plans
    per decision, and orders waited minutes behind it in the 10x load test.
    """
    by_id = {s.route_id: s for s in states}
    chosen = {route_id: by_id[route_id] for route_id in keep if route_id in by_id}
    for point in points:
        if point is None:
            return list(states)  # nothing to measure from: the solver chooses among all
        for state in nearest_routes(states, point.lat, point.lon, k, exclude=keep):
            chosen[state.route_id] = state
    return list(chosen.values())
