"""Days of simulated fleet history with structure to learn ETAs from, written into the store.

The world is seeded and has what real traffic has: congestion by zone and hour of day (rush
hours hit some zones harder), drivers faster or slower than average, service times that
vary by stop, noise per leg; optionally a congestion shift from a given moment of one day.

python -m load_tests.history_sim --days 14 --start 2026-10-05
"""

from __future__ import annotations

import argparse
import math
import random
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import h3
import numpy as np

from fleet.geo import EARTH_RADIUS_M, haversine_m
from fleet.records import DeliveryEvent, LatLon, Ping, RoutePlan, Stop

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
CENTER = (52.52, 13.405)  # Berlin
PLAN_SPEED_MPS = 8.0  # what the planner assumes


@dataclass(frozen=True, slots=True)
class CongestionShift:
    """From ``start_ms`` on, speeds in a district are multiplied by ``factor``.

    The district is every zone whose centre lies within ``radius_m`` of ``center`` (an
    incident, a closed bridge, rain over part of the city). With ``every_day`` the shift
    repeats at the same time of day on every later day.
    """

    start_ms: int
    factor: float = 0.6
    radius_m: float = 6_000.0
    center: tuple[float, float] = CENTER
    every_day: bool = False

    def active(self, ts_ms: int) -> bool:
        if ts_ms < self.start_ms:
            return False
        return not self.every_day or ts_ms % DAY_MS >= self.start_ms % DAY_MS


@dataclass(frozen=True, slots=True)
class WorldParams:
    """The simulated city and fleet."""

    seed: int = 7
    drivers: int = 36
    stops: tuple[int, int] = (20, 34)
    radius_m: float = 9_000.0
    territory_m: float = 4_500.0  # a driver's stops lie within this of its territory centre
    free_speed_mps: float = 10.0
    ping_every_s: float = 20.0
    step_s: float = 5.0
    gps_sigma_m: float = 8.0
    first_shift_hour: int = 6
    last_shift_hour: int = 13
    zone_resolution: int = 7
    failed_share: float = 0.02
    shift: CongestionShift | None = None


def _unit(seed: int, *key: object) -> float:
    """A seeded uniform number in [0, 1) for a key: the same key gives the same number."""
    return zlib.crc32(f"{seed}:{key}".encode()) / 2**32


def _offset(lat: float, lon: float, east_m: float, north_m: float) -> tuple[float, float]:
    dlat = math.degrees(north_m / EARTH_RADIUS_M)
    dlon = math.degrees(east_m / (EARTH_RADIUS_M * math.cos(math.radians(lat))))
    return lat + dlat, lon + dlon


@dataclass
class World:
    """Speeds of the city: zone factor x hour profile x driver factor x leg noise x shift."""

    params: WorldParams
    driver_factor: dict[str, float] = field(default_factory=dict)
    _zone_cache: dict[str, tuple[float, float, bool]] = field(default_factory=dict)

    def zone_traits(self, zone: str) -> tuple[float, float, bool]:
        """(free-flow factor, rush-hour strength, hit by the shift) of a zone, seeded."""
        traits = self._zone_cache.get(zone)
        if traits is None:
            seed, shift = self.params.seed, self.params.shift
            lat, lon = h3.cell_to_latlng(zone)
            traits = (
                0.55 + 0.7 * _unit(seed, "free", zone),
                0.1 + 0.45 * _unit(seed, "rush", zone),
                shift is not None and haversine_m(lat, lon, *shift.center) <= shift.radius_m,
            )
            self._zone_cache[zone] = traits
        return traits

    def speed_mps(self, zone: str, ts_ms: int, driver_id: str, leg_noise: float) -> float:
        """True driving speed of a driver in a zone at a moment."""
        free, rush, shifted = self.zone_traits(zone)
        hour = (ts_ms % DAY_MS) / HOUR_MS
        peaks = math.exp(-(((hour - 8.5) / 1.0) ** 2)) + math.exp(-(((hour - 17.0) / 1.3) ** 2))
        factor = free * (1.0 - rush * peaks) * self.driver_factor[driver_id] * leg_noise
        shift = self.params.shift
        if shift is not None and shifted and shift.active(ts_ms):
            factor *= shift.factor
        return self.params.free_speed_mps * max(0.15, factor)


@dataclass(slots=True)
class RouteDay:
    """One driver's day: the plan, its pings and its events."""

    plan: RoutePlan
    pings: list[Ping]
    events: list[DeliveryEvent]


@dataclass(frozen=True, slots=True)
class Driver:
    """A driver's fixed traits: depot, territory, speed factor."""

    driver_id: str
    depot: tuple[float, float]
    territory: tuple[float, float]


def make_drivers(params: WorldParams) -> tuple[World, list[Driver]]:
    """The seeded fleet and its world."""
    rng = random.Random(params.seed)
    world = World(params)
    drivers = []
    depots = [
        _offset(*CENTER, params.radius_m * 0.6 * math.cos(a), params.radius_m * 0.6 * math.sin(a))
        for a in (0.3, 2.4, 4.5)
    ]
    for i in range(params.drivers):
        driver_id = f"drv-{i:03d}"
        r = params.radius_m * math.sqrt(rng.random()) * 0.7
        a = rng.uniform(0, 2 * math.pi)
        world.driver_factor[driver_id] = min(1.35, max(0.7, rng.lognormvariate(0.0, 0.15)))
        drivers.append(
            Driver(driver_id, depots[i % 3], _offset(*CENTER, r * math.cos(a), r * math.sin(a)))
        )
    return world, drivers


def _plan(driver: Driver, day_ms: int, day_index: int, params: WorldParams) -> RoutePlan:
    rng = random.Random(f"{params.seed}:{driver.driver_id}:{day_index}")
    n = rng.randint(*params.stops)
    points = []
    for _ in range(n):
        r = params.territory_m * math.sqrt(rng.random())
        a = rng.uniform(0, 2 * math.pi)
        points.append(_offset(*driver.territory, r * math.cos(a), r * math.sin(a)))
    order, here = [], driver.depot  # nearest neighbour from the depot: a plausible sequence
    while points:
        nxt = min(points, key=lambda p: haversine_m(here[0], here[1], p[0], p[1]))
        points.remove(nxt)
        order.append(nxt)
        here = nxt
    start_ms = (
        day_ms + rng.randint(params.first_shift_hour * 60, params.last_shift_hour * 60) * 60_000
    )
    stops, t_ms, here = [], start_ms, driver.depot
    for k, (lat, lon) in enumerate(order):
        t_ms += int(haversine_m(here[0], here[1], lat, lon) / PLAN_SPEED_MPS * 1000)
        service_s = float(rng.choice((60, 90, 120, 180, 240, 300)))
        stops.append(
            Stop(
                stop_id=f"st-{k + 1:02d}",
                lat=round(lat, 6),
                lon=round(lon, 6),
                window_start_ms=t_ms - HOUR_MS,
                window_end_ms=t_ms + HOUR_MS,
                service_s=service_s,
                demand=1,
                planned_arrival_ms=t_ms,
            )
        )
        t_ms += int(service_s * 1000)
        here = (lat, lon)
    date = f"{day_ms // DAY_MS}"
    return RoutePlan(
        route_id=f"rt-{date}-{driver.driver_id}",
        driver_id=driver.driver_id,
        version=1,
        stops=stops,
        depot=LatLon(*driver.depot),
        shift_start_ms=start_ms,
        shift_end_ms=t_ms + 2 * HOUR_MS,
        capacity=len(stops),
        path=[driver.depot, *((s.lat, s.lon) for s in stops)],
    )


def drive(world: World, driver: Driver, plan: RoutePlan) -> RouteDay:
    """Drive a plan through the world: pings with GPS noise, arrivals and deliveries."""
    params = world.params
    rng = np.random.default_rng(zlib.crc32(plan.route_id.encode()) + params.seed)
    assert plan.shift_start_ms is not None and plan.path is not None
    did, rid = driver.driver_id, plan.route_id
    t_ms = plan.shift_start_ms
    events = [DeliveryEvent(f"ev-{rid}-start", did, "shift_start", t_ms, route_id=rid)]
    pings: list[Ping] = []
    seq, next_ping = 0, t_ms
    pos = plan.path[0]
    step_ms = int(params.step_s * 1000)

    def emit_pings(
        until_ms: int, at: tuple[float, float], moving_to: tuple[float, float] | None, speed: float
    ) -> None:
        nonlocal seq, next_ping
        while next_ping <= until_ms:
            lat, lon = at
            if moving_to is not None:  # where the driver was at next_ping on this step
                back = (until_ms - next_ping) / 1000 * speed
                lat, lon = _toward(at, moving_to, -back)
            e, n = rng.normal(0.0, params.gps_sigma_m, 2)
            lat, lon = _offset(lat, lon, float(e), float(n))
            seq += 1
            pings.append(
                Ping(
                    did,
                    next_ping,
                    round(lat, 6),
                    round(lon, 6),
                    seq=seq,
                    accuracy_m=params.gps_sigma_m,
                    route_id=rid,
                )
            )
            next_ping += int(params.ping_every_s * 1000)

    for stop in plan.stops:
        target = (stop.lat, stop.lon)
        leg_noise = float(rng.lognormal(0.0, 0.12))
        while True:
            zone = h3.latlng_to_cell(pos[0], pos[1], params.zone_resolution)
            speed = world.speed_mps(zone, t_ms, did, leg_noise)
            left = haversine_m(pos[0], pos[1], *target)
            if left <= speed * params.step_s:
                t_ms += int(left / speed * 1000)
                pos = target
                emit_pings(t_ms, pos, None, 0.0)
                break
            pos = _toward(pos, target, speed * params.step_s)
            t_ms += step_ms
            emit_pings(t_ms, pos, target, speed)
        t_ms += int(rng.uniform(0, 45_000))  # parking
        events.append(
            DeliveryEvent(
                f"ev-{rid}-{stop.stop_id}-arr",
                did,
                "arrived",
                t_ms,
                route_id=rid,
                stop_id=stop.stop_id,
            )
        )
        t_ms += int(stop.service_s * float(rng.lognormal(0.0, 0.25)) * 1000)
        emit_pings(t_ms, pos, None, 0.0)
        failed = rng.random() < params.failed_share
        events.append(
            DeliveryEvent(
                f"ev-{rid}-{stop.stop_id}-done",
                did,
                "failed" if failed else "delivered",
                t_ms,
                route_id=rid,
                stop_id=stop.stop_id,
                reason="not_home" if failed else None,
            )
        )
    events.append(DeliveryEvent(f"ev-{rid}-end", did, "shift_end", t_ms, route_id=rid))
    return RouteDay(plan, pings, events)


def _toward(a: tuple[float, float], b: tuple[float, float], step_m: float) -> tuple[float, float]:
    """The point ``step_m`` metres from a towards b (negative: back from a, away from b)."""
    d = haversine_m(a[0], a[1], b[0], b[1])
    if d == 0.0:
        return a
    t = step_m / d
    return a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t


def simulate_days(params: WorldParams, start_ms: int, days: int) -> Iterator[list[RouteDay]]:
    """Each day's routes, one list per day, from midnight ``start_ms`` (UTC) on."""
    world, drivers = make_drivers(params)
    for day in range(days):
        day_ms = start_ms + day * DAY_MS
        yield [drive(world, d, _plan(d, day_ms, day, params)) for d in drivers]


def write_days(settings: object, params: WorldParams, start_ms: int, days: int) -> dict[str, int]:
    """Simulate and insert into the configured history store; counts of rows written."""
    from fleet.clock import now_ms
    from fleet.history.access import open_owner
    from fleet.history.rows import event_rows, ping_rows, route_plan_rows
    from fleet.settings import Settings

    assert isinstance(settings, Settings)
    store = open_owner(settings)
    counts = {"days": 0, "routes": 0, "pings": 0, "events": 0}
    try:
        for routes in simulate_days(params, start_ms, days):
            ingested = now_ms()
            pings = [p for r in routes for p in r.pings]
            events = [e for r in routes for e in r.events]
            store.insert("route_plans", route_plan_rows([r.plan for r in routes], ingested), None)
            store.insert("pings", ping_rows(pings, ingested), None)
            store.insert("events", event_rows(events, ingested), None)
            counts["days"] += 1
            counts["routes"] += len(routes)
            counts["pings"] += len(pings)
            counts["events"] += len(events)
    finally:
        store.close()
    return counts


def main() -> None:
    from fleet.errors import FleetError
    from fleet.history.cli import parse_time_ms
    from fleet.settings import get_settings

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--start", default="2026-10-05", help="first day (UTC midnight)")
    parser.add_argument("--drivers", type=int, default=WorldParams().drivers)
    parser.add_argument("--seed", type=int, default=WorldParams().seed)
    parser.add_argument("--shift-at", default=None, help="moment of a congestion shift")
    parser.add_argument("--shift-factor", type=float, default=0.6)
    args = parser.parse_args()
    start = parse_time_ms(args.start) // DAY_MS * DAY_MS
    shift = None
    if args.shift_at:
        shift = CongestionShift(parse_time_ms(args.shift_at), args.shift_factor)
    params = WorldParams(seed=args.seed, drivers=args.drivers, shift=shift)
    try:
        counts = write_days(get_settings(), params, start, args.days)
    except FleetError as exc:
        raise SystemExit(f"history_sim: error: {exc}") from None
    print(" ".join(f"{k}={v}" for k, v in counts.items()))


if __name__ == "__main__":
    main()
