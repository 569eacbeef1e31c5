"""Problems from live plans and driver state, and new plans from a solution."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from msgspec.structs import replace as with_fields

from decision.problem import Job, Problem, Vehicle
from decision.solution import Solution
from decision.travel import Place, TravelTimes
from fleet.records import LatLon, RoutePlan, Stop


@dataclass(frozen=True)
class DriverState:
    """Where a driver is and what is behind them, from the tracker."""

    lat: float
    lon: float
    ts_ms: int
    done: frozenset[str] = frozenset()
    approaching: str | None = None  # the stop being approached: kept first


@dataclass(frozen=True)
class RouteState:
    """A route as the decision sees it: its plan, the driver's live state, locked stops."""

    plan: RoutePlan
    driver: DriverState | None = None
    locked: frozenset[str] = frozenset()
    excluded: frozenset[str] = field(default_factory=frozenset)  # may not receive new stops

    @property
    def route_id(self) -> str:
        """The route's id (the vehicle id in problems)."""
        return self.plan.route_id

    def remaining(self) -> list[Stop]:
        """Stops not yet done, in plan order."""
        done = self.driver.done if self.driver else frozenset()
        return [s for s in self.plan.stops if s.stop_id not in done]

    def position(self) -> LatLon | None:
        """The driver's position, else the depot, else the first remaining stop."""
        if self.driver is not None:
            return LatLon(self.driver.lat, self.driver.lon)
        if self.plan.depot is not None:
            return self.plan.depot
        rest = self.remaining()
        return LatLon(rest[0].lat, rest[0].lon) if rest else None


def _seconds(ms: int | None, now_ms: int) -> float | None:
    return None if ms is None else (ms - now_ms) / 1000.0


@dataclass(frozen=True)
class LiveProblem:
    """A problem and what maps it back to plans."""

    problem: Problem
    states: Mapping[str, RouteState]
    stops: Mapping[str, Stop]  # by job id: ``route/stop`` for routes' stops, stop_id for new
    now_ms: int

    def stop_id(self, job_id: str) -> str:
        """The contract stop id of a job."""
        return self.stops[job_id].stop_id


def build_problem(
    states: Sequence[RouteState],
    now_ms: int,
    travel: TravelTimes,
    new_stops: Sequence[Stop] = (),
    release: Mapping[str, Sequence[str]] | None = None,
) -> LiveProblem:
    """Vehicles start at the driver's position now (or the depot at shift start).

    Done stops are left out; remaining stops were seen by the driver (moving them to another
    route costs disruption) and are committed; ``new_stops`` are optional new jobs.
    ``release`` names, per route, stops that must leave it (a stale driver's stops).
    """
    release = release or {}
    # Stop ids are unique within a route only: a stop may not move to a route whose plan
    # already has its id (the driver app could not tell the two apart).
    ids_on: dict[str, set[str]] = {}
    for state in states:
        for stop in state.plan.stops:
            ids_on.setdefault(stop.stop_id, set()).add(state.route_id)
    places: list[Place] = []
    stops: dict[str, Stop] = {}
    jobs: list[Job] = []
    vehicles: list[Vehicle] = []
    for state in states:
        plan = state.plan
        pos = state.position()
        start_place = len(places)
        places.append(
            Place(f"start:{plan.route_id}", pos.lat if pos else 0.0, pos.lon if pos else 0.0)
        )
        end_place = None
        if plan.depot is not None:
            end_place = len(places)
            places.append(Place(f"depot:{plan.route_id}", plan.depot.lat, plan.depot.lon))
        released = set(release.get(plan.route_id, ()))
        route: list[str] = []
        for stop in state.remaining():
            jid = route_job_id(plan.route_id, stop.stop_id)
            if jid in stops:
                continue  # a stop listed twice on a route keeps its first place
            stops[jid] = stop
            places.append(Place(stop.stop_id, stop.lat, stop.lon))
            locked = stop.stop_id in state.locked and stop.stop_id not in released
            jobs.append(
                _job(
                    jid,
                    stop,
                    len(places) - 1,
                    now_ms,
                    committed=True,
                    locked=locked,
                    seen=state.driver is not None,
                    current=None if stop.stop_id in released else plan.route_id,
                    barred=frozenset(ids_on[stop.stop_id] - {plan.route_id}),
                )
            )
            if stop.stop_id not in released:
                route.append(jid)
        started = state.driver is not None
        start_s = 0.0 if started else max(0.0, _seconds(plan.shift_start_ms, now_ms) or 0.0)
        approaching = state.driver.approaching if state.driver else None
        near = route_job_id(plan.route_id, approaching) if approaching else None
        first = near if near in route and approaching not in released else None
        if first is not None:
            route.remove(first)
            route.insert(0, first)
        vehicles.append(
            Vehicle(
                vehicle_id=plan.route_id,
                start_location=start_place,
                end_location=end_place,
                start_time=start_s,
                shift_end=_seconds(plan.shift_end_ms, now_ms),
                capacity=plan.capacity,
                route=tuple(route),
                first_job=first,
            )
        )
    for stop in new_stops:
        if stop.stop_id in stops:
            continue
        stops[stop.stop_id] = stop
        places.append(Place(stop.stop_id, stop.lat, stop.lon))
        jobs.append(
            _job(
                stop.stop_id,
                stop,
                len(places) - 1,
                now_ms,
                committed=False,
                locked=False,
                seen=False,
                current=None,
                hard=True,
                barred=frozenset(ids_on.get(stop.stop_id, ())),
            )
        )
    problem = Problem(tuple(vehicles), tuple(jobs), travel.matrix(places, now_ms), scale=10)
    return LiveProblem(problem, {s.route_id: s for s in states}, stops, now_ms)


def route_job_id(route_id: str, stop_id: str) -> str:
    """The job id of a route's stop: stop ids need only be unique within their route."""
    return f"{route_id}/{stop_id}"


def _job(
    job_id: str,
    stop: Stop,
    location: int,
    now_ms: int,
    *,
    committed: bool,
    locked: bool,
    seen: bool,
    current: str | None,
    hard: bool = False,
    barred: frozenset[str] = frozenset(),
) -> Job:
    return Job(
        job_id=job_id,
        location=location,
        window_start=_seconds(stop.window_start_ms, now_ms),
        window_end=_seconds(stop.window_end_ms, now_ms),
        service=float(stop.service_s),
        demand=stop.demand,
        priority=stop.priority,
        locked=locked,
        seen=seen and current is not None,
        current_vehicle=current,
        committed=committed,
        hard_window=hard,
        barred=barred,
    )


def plans_from_solution(live: LiveProblem, solution: Solution) -> dict[str, RoutePlan]:
    """New plans (version + 1) for every route whose remaining sequence changed.

    Done stops stay first in their old order; stops the solver dropped from a route that
    had them stay at its end (the driver still carries them; the rationale says why).
    """
    problem = live.problem
    new_seq = solution.sequences()
    served = {j for seq in new_seq.values() for j in seq}
    visits = {v.job_id: v for r in solution.routes for v in r.visits}
    out: dict[str, RoutePlan] = {}
    for vehicle in problem.vehicles:
        state = live.states[vehicle.vehicle_id]
        done = state.driver.done if state.driver else frozenset()
        seq = list(new_seq.get(vehicle.vehicle_id, ()))
        kept = [j for j in vehicle.route if j not in served]
        if tuple(seq) == vehicle.route and not kept:
            continue
        stops = [s for s in state.plan.stops if s.stop_id in done]
        for jid in seq + kept:
            stop = live.stops[jid]
            visit = visits.get(jid)
            arrival = None if visit is None else live.now_ms + round(visit.start * 1000)
            stops.append(_with_arrival(stop, arrival))
        plan = state.plan
        out[plan.route_id] = RoutePlan(
            route_id=plan.route_id,
            driver_id=plan.driver_id,
            version=plan.version + 1,
            stops=stops,
            depot=plan.depot,
            shift_start_ms=plan.shift_start_ms,
            shift_end_ms=plan.shift_end_ms,
            capacity=plan.capacity,
        )
    return out


def _with_arrival(stop: Stop, arrival_ms: int | None) -> Stop:
    return with_fields(stop, planned_arrival_ms=arrival_ms)


def moved_stops(
    before: Mapping[str, Sequence[str]], after: Mapping[str, Sequence[str]]
) -> list[str]:
    """Stops that changed route or position among their route's remaining stops."""
    where_before = {j: (r, i) for r, seq in before.items() for i, j in enumerate(seq)}
    moved = []
    for route, seq in after.items():
        for i, j in enumerate(seq):
            if where_before.get(j, (None, -1)) != (route, i) and j in where_before:
                moved.append(j)
    return sorted(moved)
