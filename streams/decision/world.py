"""What the decision sees: current plans with the drivers' live state and the locks."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from decision.decide import nearest_routes
from decision.live import DriverState, RouteState
from fleet.geo import haversine_m_array
from fleet.records import LatLon, RoutePlan
from streams.decision.state import locks_of
from streams.tracking import reads
from streams.tracking.state import plan_listeners


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
    """``keep`` and the ``k`` active routes nearest each point, as ``nearest_routes`` picks
    them from every active route's state, without building a RouteState for each.

    Each route's position (its driver's latest fix on the route, else its depot, else its
    first stop: ``RouteState.position`` of ``route_state``) comes from ``POSITIONS``, a
    snapshot at most ``SNAPSHOT_MAX_AGE_S`` old and patched at once for changed plans;
    numpy narrows the candidates to the nearest routes still active (and those within 1 m
    of the k-th), and the solver's own ``nearest_routes`` chooses among their current
    states. At 20,000 routes, walking every route per decision took 60 ms of the event
    loop: the worker's main cost in the 10x load test once orders flowed (docs/benchmarks.md).
    """
    kept = {s.route_id: s for s in keep}
    if any(point is None for point in points):
        plans = [plan for plan in reads.active_routes() if plan.route_id not in kept]
        return [*kept.values(), *(route_state(plan, pinned=pinned) for plan in plans)]
    ids, lats, lons, alive = POSITIONS.current()
    excluded = ~alive
    for route_id in kept:
        i = POSITIONS.index.get(route_id)
        if i is not None:
            excluded[i] = True
    built: dict[str, RouteState | None] = {}

    def state_of(i: int) -> RouteState | None:
        route_id = ids[i]
        if route_id not in built:
            plan = reads.current_plan(route_id)
            built[route_id] = None
            if plan is not None and reads.is_active(plan) and route_id not in kept:
                built[route_id] = route_state(plan, pinned=pinned)
        return built[route_id]

    chosen = dict(kept)
    for point in points:
        assert point is not None
        if k <= 0 or not ids:
            continue
        far = haversine_m_array(point.lat, point.lon, lats, lons)
        far[excluded] = np.inf
        candidates = pick_nearest(far, state_of, k)
        for state in nearest_routes(candidates, point.lat, point.lon, k, exclude=list(kept)):
            chosen[state.route_id] = state
    return list(chosen.values())


T = TypeVar("T")


def pick_nearest(far: npt.NDArray[np.float64], valid: Callable[[int], T | None], k: int) -> list[T]:
    """In order of ``far``, the first ``k`` positions ``valid`` accepts (it answers None for
    the others), and those after them within 1 m of the k-th: a superset of the k that
    ``nearest_routes`` picks (its haversine and numpy's differ by far less). Infinite
    distances are never looked at."""
    picked: list[T] = []
    limit = np.inf
    order = np.argsort(far, kind="stable")
    for i in order.tolist():
        d = far[i]
        if d == np.inf or d > limit:
            break
        item = valid(i)
        if item is None:
            continue
        picked.append(item)
        if len(picked) == k:
            limit = d + 1.0
    return picked


# Positions this old narrow the candidates (plan changes are patched at once). A rebuild
# walks every active route: 250 ms of the event loop at 20,000 routes, 5 % of the worker's
# main thread in the 10x-pings run when it came every 5 s.
SNAPSHOT_MAX_AGE_S = 15.0


class Positions:
    """Where each route is (``_position_of``), for choosing candidates: a snapshot of every
    route, rebuilt when older than SNAPSHOT_MAX_AGE_S, and patched for changed plans."""

    def __init__(self) -> None:
        self.taken = -math.inf
        self.ids: list[str] = []
        self.index: dict[str, int] = {}
        self.lats = np.empty(0, dtype=np.float64)
        self.lons = np.empty(0, dtype=np.float64)
        self.alive = np.empty(0, dtype=bool)
        self.dirty: set[str] = set()

    def changed(self, route_id: str) -> None:
        """A plan changed (any worker): its entry is read again before the next use."""
        self.dirty.add(route_id)

    def current(
        self,
    ) -> tuple[list[str], npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
        """Route ids, latitudes, longitudes and whether each route is active (copies of the
        flags, which callers may change)."""
        now = time.monotonic()
        if now - self.taken > SNAPSHOT_MAX_AGE_S:
            self._rebuild(now)
        elif self.dirty:
            self._patch()
        return self.ids, self.lats, self.lons, self.alive.copy()

    def _rebuild(self, now: float) -> None:
        self.dirty.clear()
        placed: list[tuple[str, LatLon]] = []
        for plan in reads.active_routes():
            at = _position_of(plan)
            if at is not None:
                placed.append((plan.route_id, at))
        self.ids = [route_id for route_id, _ in placed]
        self.index = {route_id: i for i, route_id in enumerate(self.ids)}
        self.lats = np.array([at.lat for _, at in placed], dtype=np.float64)
        self.lons = np.array([at.lon for _, at in placed], dtype=np.float64)
        self.alive = np.ones(len(self.ids), dtype=bool)
        self.taken = now

    def _patch(self) -> None:
        added: list[tuple[str, LatLon]] = []
        for route_id in self.dirty:
            plan = reads.current_plan(route_id)
            at = _position_of(plan) if plan is not None and reads.is_active(plan) else None
            i = self.index.get(route_id)
            if i is None:
                if at is not None:
                    added.append((route_id, at))
            elif at is None:
                self.alive[i] = False
            else:
                self.lats[i], self.lons[i], self.alive[i] = at.lat, at.lon, True
        self.dirty.clear()
        if added:
            first = len(self.ids)
            self.index.update({route_id: first + n for n, (route_id, _) in enumerate(added)})
            self.ids = [*self.ids, *(route_id for route_id, _ in added)]
            self.lats = np.append(self.lats, [at.lat for _, at in added])
            self.lons = np.append(self.lons, [at.lon for _, at in added])
            self.alive = np.append(self.alive, np.ones(len(added), dtype=bool))


POSITIONS = Positions()
plan_listeners.append(POSITIONS.changed)


def _position_of(plan: RoutePlan) -> LatLon | None:
    fix = reads.last_fix_on(plan)
    if fix is not None:
        return LatLon(fix.lat, fix.lon)
    if plan.depot is not None:
        return plan.depot
    return LatLon(plan.stops[0].lat, plan.stops[0].lon) if plan.stops else None
