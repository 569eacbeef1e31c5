"""Labelled tracking scenarios: drivers on their path with GPS noise, detours, silence, delays."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from fleet.geo import EARTH_RADIUS_M
from fleet.records import DeliveryEvent, LatLon, Ping, RoutePlan, Stop


def offset(lat: float, lon: float, east_m: float, north_m: float) -> tuple[float, float]:
    """The point ``east_m``/``north_m`` metres from (lat, lon) (local flat approximation)."""
    dlat = north_m / EARTH_RADIUS_M
    dlon = east_m / (EARTH_RADIUS_M * math.cos(math.radians(lat)))
    return lat + math.degrees(dlat), lon + math.degrees(dlon)


def build_plan(
    route_id: str,
    driver_id: str,
    *,
    origin: tuple[float, float] = (52.50, 13.40),
    n_stops: int = 10,
    leg_m: float = 1500.0,
    speed_mps: float = 8.0,
    service_s: float = 120.0,
    start_ms: int = 1_763_704_800_000,
    version: int = 1,
    rng: np.random.Generator | None = None,
) -> RoutePlan:
    """A plan whose path zig-zags from the depot through ``n_stops`` stops ``leg_m`` apart.

    Each leg turns by up to 60 degrees (seeded), so the path has real corners; planned
    arrivals assume ``speed_mps`` and ``service_s`` at each stop.
    """
    rng = rng or np.random.default_rng(0)
    lat, lon = origin
    heading = float(rng.uniform(0, 2 * math.pi))
    path = [(lat, lon)]
    stops = []
    t_ms = start_ms
    for i in range(n_stops):
        heading += float(rng.uniform(-math.pi / 3, math.pi / 3))
        # A mid-leg vertex makes the path denser than the stop line, like a routed path.
        east, north = leg_m * 0.5 * math.sin(heading), leg_m * 0.5 * math.cos(heading)
        for _half in range(2):
            lat, lon = offset(lat, lon, east, north)
            path.append((lat, lon))
        t_ms += int(leg_m / speed_mps * 1000)
        stops.append(
            Stop(
                stop_id=f"st-{i + 1}",
                lat=lat,
                lon=lon,
                service_s=service_s,
                planned_arrival_ms=t_ms,
                window_start_ms=t_ms - 1_800_000,
                window_end_ms=t_ms + 1_800_000,
            )
        )
        t_ms += int(service_s * 1000)
    return RoutePlan(
        route_id=route_id,
        driver_id=driver_id,
        version=version,
        stops=stops,
        depot=LatLon(origin[0], origin[1]),
        shift_start_ms=start_ms,
        shift_end_ms=t_ms + 3_600_000,
        path=path,
    )


@dataclass(frozen=True, slots=True)
class Detour:
    """The driver leaves the path sideways by ``distance_m`` for ``duration_s``."""

    start_s: float
    duration_s: float
    distance_m: float
    ramp_s: float = 20.0  # time to drive out to full distance (and back)


@dataclass(frozen=True, slots=True)
class Silence:
    """The app sends nothing from ``start_s`` for ``duration_s``."""

    start_s: float
    duration_s: float


@dataclass(frozen=True, slots=True)
class DriverScenario:
    """How one simulated driver behaves."""

    driver_id: str
    plan: RoutePlan
    sigma_m: float = 15.0
    ping_every_s: float = 5.0
    speed_factor: float = 1.0  # below 1: a slow driver falls behind the plan
    detours: tuple[Detour, ...] = ()
    silences: tuple[Silence, ...] = ()
    outlier_rate: float = 0.0  # share of fixes thrown 200-600 m off (multipath)
    seed: int = 0


@dataclass(slots=True)
class Labels:
    """Ground truth: intervals (ms) in which each condition truly held."""

    off_route: list[tuple[int, int]] = field(default_factory=list)
    qualifying_detours: list[tuple[int, int]] = field(default_factory=list)
    stale: list[tuple[int, int]] = field(default_factory=list)


@dataclass(slots=True)
class SimulatedDriver:
    """A driver's pings and events in time order, with the labels."""

    scenario: DriverScenario
    pings: list[Ping]
    events: list[DeliveryEvent]
    labels: Labels
    end_ms: int


def _cumulative(points: list[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """Local xy (metres, relative to the first point) and cumulative distance of a path."""
    lat0, lon0 = points[0]
    ky = EARTH_RADIUS_M * math.pi / 180
    kx = ky * math.cos(math.radians(lat0))
    xy = np.array([((lo - lon0) * kx, (la - lat0) * ky) for la, lo in points])
    cum = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(xy, axis=0), axis=1))])
    return xy, cum


def _sideways(elapsed_s: float, detours: tuple[Detour, ...]) -> float:
    """True lateral distance from the path at ``elapsed_s`` (trapezoid per detour)."""
    for d in detours:
        if d.start_s <= elapsed_s <= d.start_s + d.duration_s:
            into = elapsed_s - d.start_s
            out = d.start_s + d.duration_s - elapsed_s
            return d.distance_m * min(1.0, into / d.ramp_s, out / d.ramp_s)
    return 0.0


def _silent(elapsed_s: float, silences: tuple[Silence, ...]) -> bool:
    return any(s.start_s <= elapsed_s < s.start_s + s.duration_s for s in silences)


def simulate(sc: DriverScenario, threshold_m: float = 150.0) -> SimulatedDriver:
    """Drive the plan's path: pings with noise, events at stops, ground-truth labels.

    ``threshold_m`` defines when a detour counts as truly off route (lateral distance above
    it); qualifying detours are those reaching >= 300 m and lasting >= 60 s.
    """
    rng = np.random.default_rng(sc.seed)
    plan = sc.plan
    assert plan.path is not None and plan.shift_start_ms is not None
    lat0, lon0 = plan.path[0]
    ky = EARTH_RADIUS_M * math.pi / 180
    kx = ky * math.cos(math.radians(lat0))
    xy, cum = _cumulative(list(plan.path))
    stop_along = [cum[2 * (i + 1)] for i in range(len(plan.stops))]
    speed = 8.0 * sc.speed_factor
    start = plan.shift_start_ms
    pings: list[Ping] = []
    events = [DeliveryEvent(f"ev-{sc.driver_id}-start", sc.driver_id, "shift_start", start)]
    labels = Labels()
    along, elapsed, seq, stop_i, service_left = 0.0, 0.0, 0, 0, 0.0
    off_since: float | None = None
    dt = sc.ping_every_s
    while stop_i < len(plan.stops):
        # Move: serve the current stop, else drive towards it.
        if service_left > 0:
            service_left -= dt
            if service_left <= 0:
                stop = plan.stops[stop_i]
                ts = start + int(elapsed * 1000)
                events.append(
                    DeliveryEvent(
                        f"ev-{sc.driver_id}-{stop.stop_id}",
                        sc.driver_id,
                        "delivered",
                        ts,
                        route_id=plan.route_id,
                        stop_id=stop.stop_id,
                    )
                )
                stop_i += 1
        else:
            along = min(stop_along[stop_i], along + speed * dt)
            if along >= stop_along[stop_i]:
                service_left = plan.stops[stop_i].service_s
        elapsed += dt
        ts = start + int(elapsed * 1000)
        seg = min(int(np.searchsorted(cum, along, side="right")) - 1, len(cum) - 2)
        d = xy[seg + 1] - xy[seg]
        seg_len = float(np.linalg.norm(d)) or 1.0
        u = d / seg_len
        base = xy[seg] + u * (along - cum[seg])
        lateral = _sideways(elapsed, sc.detours)
        true_xy = base + np.array([-u[1], u[0]]) * lateral
        # Ground truth: truly off route while the lateral distance exceeds the threshold.
        if lateral > threshold_m and off_since is None:
            off_since = elapsed
        elif lateral <= threshold_m and off_since is not None:
            labels.off_route.append((start + int(off_since * 1000), ts))
            off_since = None
        if _silent(elapsed, sc.silences):
            continue
        noise = rng.normal(0.0, sc.sigma_m, 2)
        if sc.outlier_rate and rng.random() < sc.outlier_rate:
            angle = rng.uniform(0, 2 * math.pi)
            noise = rng.uniform(200, 600) * np.array([math.cos(angle), math.sin(angle)])
        x, y = (float(v) for v in true_xy + noise)
        seq += 1
        pings.append(
            Ping(
                sc.driver_id,
                ts,
                lat0 + y / ky,
                lon0 + x / kx,
                seq=seq,
                accuracy_m=sc.sigma_m,
                route_id=plan.route_id,
            )
        )
    end = start + int(elapsed * 1000)
    if off_since is not None:
        labels.off_route.append((start + int(off_since * 1000), end))
    for d in sc.detours:
        if d.distance_m >= 300 and d.duration_s >= 60:
            labels.qualifying_detours.append(
                (start + int(d.start_s * 1000), start + int((d.start_s + d.duration_s) * 1000))
            )
    labels.stale = [
        (start + int(s.start_s * 1000), start + int((s.start_s + s.duration_s) * 1000))
        for s in sc.silences
    ]
    events.append(DeliveryEvent(f"ev-{sc.driver_id}-end", sc.driver_id, "shift_end", end))
    return SimulatedDriver(sc, pings, events, labels, end)
