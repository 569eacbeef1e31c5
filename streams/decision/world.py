"""What the decision sees: current plans with the drivers' live state and the locks."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from decision.decide import nearest_routes
from decision.live import DriverState, RouteState
from fleet.geo import haversine_m_array
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


def candidates_near(
    lats: npt.NDArray[np.float64], lons: npt.NDArray[np.float64], point: LatLon, k: int
) -> npt.NDArray[np.intp]:
    """Indices of the positions within 1 m of the k-th nearest to ``point``: a superset of
    the k that ``nearest_routes`` picks (its haversine and numpy's differ by far less)."""
    far = haversine_m_array(point.lat, point.lon, lats, lons)
    if len(far) <= k:
        return np.arange(len(far))
    kth = np.partition(far, k - 1)[k - 1]
    return np.flatnonzero(far <= kth + 1.0)


def own_state(route_id: str, *, pinned: bool = True, active_only: bool = True) -> RouteState | None:
    """The route as the solver sees it (None: no plan, or nothing left when ``active_only``)."""
    plan = reads.current_plan(route_id)
    if plan is None or (active_only and not reads.is_active(plan)):
        return None
    return route_state(plan, pinned=pinned)


def states_near(
    points: Sequence[LatLon | None],
    k: int,
    keep: Sequence[RouteState] = (),
    *,
    pinned: bool = True,
) -> list[RouteState]:
    """``keep`` and the ``k`` active routes nearest each point, as ``near_states`` picks them
    from ``active_states()``, without building a RouteState for every active route.

    Each route's position (its driver's latest fix on the route, else its depot, else its
    first stop: ``RouteState.position`` of ``route_state``) is taken from tracking's memory;
    numpy narrows the candidates to those within 1 m of the k-th nearest, and the solver's
    own ``nearest_routes`` chooses among them (at 20,000 routes, building every state per
    order was a third of the worker in the 10x load test).
    """
    kept = {s.route_id: s for s in keep}
    plans = [plan for plan in reads.active_routes() if plan.route_id not in kept]
    if any(point is None for point in points):
        return [*kept.values(), *(route_state(plan, pinned=pinned) for plan in plans)]
    where = [_position_of(plan) for plan in plans]
    placed = [(plan, at) for plan, at in zip(plans, where, strict=True) if at is not None]
    lats = np.array([at.lat for _, at in placed], dtype=np.float64)
    lons = np.array([at.lon for _, at in placed], dtype=np.float64)
    built: dict[str, RouteState] = {}
    chosen = dict(kept)
    for point in points:
        assert point is not None
        if k <= 0 or not placed:
            continue
        near = candidates_near(lats, lons, point, k)
        candidates = []
        for i in near:
            plan = placed[int(i)][0]
            state = built.get(plan.route_id)
            if state is None:
                state = built[plan.route_id] = route_state(plan, pinned=pinned)
            candidates.append(state)
        for state in nearest_routes(candidates, point.lat, point.lon, k, exclude=list(kept)):
            chosen[state.route_id] = state
    return list(chosen.values())


def _position_of(plan: RoutePlan) -> LatLon | None:
    fix = reads.last_fix_on(plan)
    if fix is not None:
        return LatLon(fix.lat, fix.lon)
    if plan.depot is not None:
        return plan.depot
    return LatLon(plan.stops[0].lat, plan.stops[0].lon) if plan.stops else None
