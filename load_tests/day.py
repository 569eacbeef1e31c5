"""The demo's day: hubs, routes of 10-30 stops with windows, drivers who follow them, troubles.

Time is real: every ping, event and order carries the wall clock, because the pipeline's
stale detection and its decisions run on the wall clock (docs/tracking.md). The day is
compressed in space instead: each route is a dense round around a city micro-hub (stops
tens of metres apart, a few seconds of service each), sized so that a shift planned over
``duration_s`` fits mostly into the demo; the windows are slots of that short day. The
demo worker's time thresholds are scaled to match (``DEMO_WORKER_ENV``).

Drivers follow their plan and every RouteUpdate the pipeline publishes for them (new
stops, re-sequenced stops, stops moved away), with GPS noise. Some drivers detour, some go
silent, some are slow; some deliveries fail; new orders arrive during the day, a few of them
impossible to serve.
"""

from __future__ import annotations

import math
import queue
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

import msgspec
from confluent_kafka import Producer

from decision.travel import HaversineTravel
from fleet.clock import now_ms
from fleet.geo import haversine_m
from fleet.records import (
    DeliveryEvent,
    EventType,
    FailureReason,
    LatLon,
    Order,
    Ping,
    RoutePlan,
    RouteUpdate,
    Stop,
)
from fleet.settings import Settings
from fleet.topics import EVENTS, ORDERS, PINGS, ROUTES, topic_name
from load_tests.scenarios import offset
from load_tests.simulator import CENTER, producer_config

FAILURE_REASONS: tuple[FailureReason, ...] = (
    "not_home",
    "access_denied",
    "wrong_address",
    "damaged",
    "refused",
    "other",
)
BROKEN = (
    b'{"driver_id":"drv-x","ts_ms":1,"lat":123.4,"lon":13.4}',
    b'{"driver_id":"drv-x","lat":52.1,"lon":13.4}',
    b"not json",
)


def demo_worker_env(duration_s: float) -> dict[str, str]:
    """Time thresholds of the demo worker, scaled to a day of ``duration_s`` seconds.

    A real shift lasts hours and the defaults are minutes; in a 3-minute day, a driver
    silent for 20 s is as lost as one silent for 2 minutes on a real day.
    """
    scale = max(duration_s / 180.0, 0.5)
    return {
        "FLEET_STALE_AFTER_S": f"{20 * scale:.0f}",
        "FLEET_STALE_CHECK_INTERVAL_S": "2",
        "FLEET_BEHIND_SCHEDULE_S": f"{30 * scale:.0f}",
        "FLEET_BEHIND_SCHEDULE_RESOLVE_S": f"{15 * scale:.0f}",
        "FLEET_DECISION_RETRY_AFTER_S": f"{20 * scale:.0f}",
        "FLEET_DECISION_STALE_REASSIGN_S": f"{15 * scale:.0f}",
        "FLEET_DECISION_COOLDOWN_S": f"{20 * scale:.0f}",
        "FLEET_DECISION_DEBOUNCE_S": "5",
        "FLEET_DECISION_MARGIN_S": "5",
        "FLEET_DECISION_CRITICAL_WITHIN_S": f"{duration_s:.0f}",
        "FLEET_DECISION_TIME_LIMIT_S": "0.5",
        "FLEET_ETA_UPDATE_INTERVAL_S": "2",
    }


@dataclass(frozen=True)
class DayParams:
    """The shape of the demo's day."""

    drivers: int = 200
    duration_s: float = 180.0
    seed: int = 12
    hubs: int = 6
    stops: tuple[int, int] = (10, 30)
    leg_m: tuple[float, float] = (30.0, 55.0)  # between stops, at a 180 s day
    service_s: tuple[float, float] = (2.0, 4.5)
    windows: int = 4  # delivery slots of the day
    ping_every_s: float = 2.0  # as tracking apps do (1 s doubles the load for little)
    gps_sigma_m: float = 6.0
    detour_share: float = 0.05
    detour_m: float = 500.0
    detour_s: float = 40.0
    silence_share: float = 0.03
    silence_s: float = 50.0
    slow_share: float = 0.05
    slow_factor: float = 0.45
    failed_share: float = 0.012  # of stop visits
    orders: int | None = None  # new orders during the day (default drivers / 8, at least 4)
    unservable_orders: int = 2  # far away with a short window: nobody can serve them
    invalid_rate: float = 0.002  # share of deliberately broken pings (dead letters)
    speed_mps: float = 8.0  # the planner's base speed (FLEET_DECISION_SPEED_MPS)

    @property
    def scale(self) -> float:
        return max(self.duration_s / 180.0, 0.5)

    @property
    def order_count(self) -> int:
        return self.orders if self.orders is not None else max(4, self.drivers // 8)


@dataclass(frozen=True)
class Troubles:
    """What goes wrong for one driver (seconds into the day)."""

    detour_at_s: float | None = None
    silence_at_s: float | None = None
    speed_factor: float = 1.0
    fails_first_stop: bool = False  # the first stop visited fails (besides the random share)


@dataclass
class DayRoute:
    """A driver's first plan with its hub and territory."""

    plan: RoutePlan
    hub: tuple[float, float]
    territory: tuple[float, float]
    troubles: Troubles


@dataclass
class Day:
    """The generated day: hubs, routes, windows and the order schedule."""

    params: DayParams
    start_ms: int
    hubs: list[tuple[float, float]]
    routes: list[DayRoute]
    windows: list[tuple[int, int]]  # (start_ms, end_ms) of each delivery slot
    order_times_s: list[float]
    unservable_times_s: list[float]
    run: str

    def window_of(self, ms: int | None) -> int | None:
        """Index of the slot an arrival time falls in (None before the day)."""
        if ms is None:
            return None
        for i, (start, end) in enumerate(self.windows):
            if start <= ms < end:
                return i
        return len(self.windows) - 1 if ms >= self.windows[-1][1] else None


def make_day(params: DayParams, start_ms: int, run: str) -> Day:
    """Hubs around the centre, one dense round per driver, slots, and when orders arrive."""
    rng = random.Random(params.seed)
    travel = HaversineTravel(speed_mps=params.speed_mps)
    hubs = []
    for k in range(params.hubs):
        angle = 2 * math.pi * k / params.hubs + rng.uniform(-0.3, 0.3)
        radius = rng.uniform(2_500, 6_000)
        hubs.append(offset(*CENTER, radius * math.cos(angle), radius * math.sin(angle)))
    slot_ms = int(params.duration_s * 1000 / params.windows)
    windows = [
        (start_ms + k * slot_ms, start_ms + (k + 1) * slot_ms) for k in range(params.windows)
    ]
    # A day longer than the demo: later slots hold the stops planned after it.
    windows += [
        (start_ms + k * slot_ms, start_ms + (k + 1) * slot_ms)
        for k in range(params.windows, 3 * params.windows)
    ]
    routes = [
        _route(params, rng, travel, hubs[i % len(hubs)], i, start_ms, run, windows)
        for i in range(params.drivers)
    ]
    assign_troubles(params, rng, routes)
    span = params.duration_s
    order_times = sorted(rng.uniform(0.1 * span, 0.7 * span) for _ in range(params.order_count))
    unservable = sorted(
        rng.uniform(0.2 * span, 0.6 * span) for _ in range(params.unservable_orders)
    )
    return Day(params, start_ms, hubs, routes, windows, order_times, unservable, run)


def _route(
    params: DayParams,
    rng: random.Random,
    travel: HaversineTravel,
    hub: tuple[float, float],
    i: int,
    start_ms: int,
    run: str,
    windows: list[tuple[int, int]],
) -> DayRoute:
    """A round from the hub through a block of streets, row by row (a serpentine: the line
    never crosses itself, so a fix projects onto one place of it)."""
    angle = rng.uniform(0, 2 * math.pi)
    reach = rng.uniform(120, 450) * params.scale
    territory = offset(*hub, reach * math.cos(angle), reach * math.sin(angle))
    n = rng.randint(*params.stops)
    per_row = rng.randint(4, 7)
    gap = rng.uniform(50.0, 80.0) * params.scale
    leg = rng.uniform(*params.leg_m) * params.scale
    turn = rng.uniform(0, 2 * math.pi)
    rows = (n + per_row - 1) // per_row
    points = []
    for k in range(n):
        row, col = divmod(k, per_row)
        if row % 2:
            col = per_row - 1 - col
        x = (col - (per_row - 1) / 2) * leg + rng.uniform(-4, 4)
        y = (row - (rows - 1) / 2) * gap + rng.uniform(-4, 4)
        east = x * math.cos(turn) - y * math.sin(turn)
        north = x * math.sin(turn) + y * math.cos(turn)
        points.append(offset(*territory, east, north))
    stops, t_ms, prev = [], start_ms, hub
    for k, (lat, lon) in enumerate(points):
        t_ms += travel_ms(travel, prev, (lat, lon), t_ms)
        service = round(rng.uniform(*params.service_s) * params.scale, 1)
        slot = next((w for w in windows if w[0] <= t_ms < w[1]), windows[-1])
        grace = 2 * (slot[1] - slot[0])  # a window spans three slots: 3 hours of an 8-hour day
        stops.append(
            Stop(
                stop_id=f"st-{k + 1:02d}",
                lat=round(lat, 6),
                lon=round(lon, 6),
                window_start_ms=slot[0],
                window_end_ms=slot[1] + grace,
                service_s=service,
                demand=1,
                planned_arrival_ms=t_ms,
            )
        )
        t_ms += int(service * 1000)
        prev = (lat, lon)
    t_ms += travel_ms(travel, prev, hub, t_ms)
    driver_id = f"drv-{i:04d}"
    plan = RoutePlan(
        route_id=f"rt-{run}-{i:04d}",
        driver_id=driver_id,
        version=1,
        stops=stops,
        depot=LatLon(round(hub[0], 6), round(hub[1], 6)),
        shift_start_ms=start_ms,
        shift_end_ms=max(t_ms, start_ms + int(params.duration_s * 1000)) + 120_000,
        capacity=n + 8,
        path=[hub, *((s.lat, s.lon) for s in stops), hub],
    )
    return DayRoute(plan, hub, territory, Troubles())


def assign_troubles(params: DayParams, rng: random.Random, routes: list[DayRoute]) -> None:
    """Each trouble for its share of the drivers, and at least one driver of each kind, so
    every day shows every kind; the earliest first stop of the day fails."""
    n = len(routes)
    span = params.duration_s

    def pick(share: float) -> list[int]:
        return rng.sample(range(n), min(n, max(1, round(share * n))))

    for i in pick(params.detour_share):
        routes[i].troubles = replace(routes[i].troubles, detour_at_s=rng.uniform(0.1, 0.5) * span)
    for i in pick(params.silence_share):
        routes[i].troubles = replace(
            routes[i].troubles, silence_at_s=rng.uniform(0.15, 0.45) * span
        )
    for i in pick(params.slow_share):
        routes[i].troubles = replace(routes[i].troubles, speed_factor=params.slow_factor)
    first = min(range(n), key=lambda i: routes[i].plan.stops[0].planned_arrival_ms or 0)
    routes[first].troubles = replace(routes[first].troubles, fails_first_stop=True)


def travel_ms(
    travel: HaversineTravel, a: tuple[float, float], b: tuple[float, float], at_ms: int
) -> int:
    """Planned driving time between two points, as the decision engine estimates it."""
    return int(haversine_m(*a, *b) * travel.detour_factor / travel.speed_at(at_ms) * 1000)


# --- driving --------------------------------------------------------------------------------


Emit = Callable[[str, str, Ping | DeliveryEvent], None]  # (topic base, key, message)


@dataclass
class DayDriver:
    """One driver: drives its current plan stop to stop, serves, reports, follows updates."""

    route: DayRoute
    rng: random.Random
    travel: HaversineTravel
    params: DayParams
    plan: RoutePlan = field(init=False)
    pos: tuple[float, float] = field(init=False)
    done: dict[str, str] = field(default_factory=dict)  # stop_id -> delivered/failed
    target: Stop | None = None
    serving_left_s: float = 0.0
    arrived_ms: dict[str, int] = field(default_factory=dict)  # stop_id -> actual arrival
    arrivals: list[tuple[str, str, int]] = field(default_factory=list)  # not yet reported
    seq: int = 0
    speed_factor: float = 1.0

    def __post_init__(self) -> None:
        self.plan = self.route.plan
        self.pos = self.route.hub
        self.speed_factor = self.route.troubles.speed_factor * self.rng.uniform(0.95, 1.25)

    @property
    def driver_id(self) -> str:
        return self.plan.driver_id

    def remaining(self) -> list[Stop]:
        return [s for s in self.plan.stops if s.stop_id not in self.done]

    def follow(self, update: RoutePlan) -> bool:
        """Take a newer plan version (from a RouteUpdate); return whether it was newer."""
        if update.version <= self.plan.version or update.driver_id != self.driver_id:
            return False
        self.plan = update
        kept = {s.stop_id for s in self.remaining()}
        if self.target is not None and self.serving_left_s <= 0 and self.target.stop_id not in kept:
            self.target = None  # moved away: head for the new next stop
        return True

    def silent(self, elapsed_s: float) -> bool:
        at = self.route.troubles.silence_at_s
        return at is not None and at <= elapsed_s < at + self.params.silence_s

    def in_trouble(self, elapsed_s: float) -> bool:
        """Silent or on a detour: not where a dispatcher would send a new order."""
        return self.silent(elapsed_s) or self._detour_m(elapsed_s) > 0.0

    def step(self, dt_s: float, ts: int, elapsed_s: float, emit: Emit) -> None:
        """Advance ``dt_s`` seconds: drive, arrive, serve, report; then ping (unless silent)."""
        if self.silent(elapsed_s):
            return  # phone dead, van parked: nothing moves, nothing is sent
        detoured = self._detour_m(elapsed_s)
        if detoured == 0.0:
            self._progress(dt_s, ts, emit)
        self._ping(ts, detoured, emit)

    def _progress(self, dt_s: float, ts: int, emit: Emit) -> None:
        if self.serving_left_s > 0 and self.target is not None:
            self.serving_left_s -= dt_s
            if self.serving_left_s <= 0:
                self._complete(self.target, ts, emit)
                self.target = None
            return
        if self.target is None:
            remaining = self.remaining()
            self.target = remaining[0] if remaining else None
        goal = (self.target.lat, self.target.lon) if self.target else self.route.hub
        speed = self.travel.speed_at(ts) / self.travel.detour_factor * self.speed_factor
        left = haversine_m(*self.pos, *goal)
        step = speed * dt_s
        if left > step:
            t = step / left
            self.pos = (
                self.pos[0] + (goal[0] - self.pos[0]) * t,
                self.pos[1] + (goal[1] - self.pos[1]) * t,
            )
            return
        self.pos = goal
        stop = self.target
        if stop is None or stop.stop_id in self.arrived_ms:
            return  # at the hub, or waiting
        if stop.window_start_ms is not None and ts < stop.window_start_ms:
            return  # early for its window: wait at the door
        self.arrived_ms[stop.stop_id] = ts
        self.arrivals.append((self.plan.route_id, stop.stop_id, ts))
        self._event("arrived", stop, ts, emit)
        self.serving_left_s = max(stop.service_s * self.rng.lognormvariate(0.0, 0.25), 0.5)

    def _complete(self, stop: Stop, ts: int, emit: Emit) -> None:
        failed = self.rng.random() < self.params.failed_share or (
            self.route.troubles.fails_first_stop and not self.done
        )
        outcome: EventType = "failed" if failed else "delivered"
        self.done[stop.stop_id] = outcome
        reason: FailureReason | None = self.rng.choice(FAILURE_REASONS) if failed else None
        self._event(outcome, stop, ts, emit, reason)

    def _event(
        self, kind: EventType, stop: Stop, ts: int, emit: Emit, reason: FailureReason | None = None
    ) -> None:
        event = DeliveryEvent(
            f"ev-{self.plan.route_id}-{stop.stop_id}-{kind}",
            self.driver_id,
            kind,
            ts,
            route_id=self.plan.route_id,
            stop_id=stop.stop_id,
            reason=reason,
            lat=round(self.pos[0], 6),
            lon=round(self.pos[1], 6),
        )
        emit(EVENTS, self.driver_id, event)

    def _detour_m(self, elapsed_s: float) -> float:
        at = self.route.troubles.detour_at_s
        if at is None or not at <= elapsed_s <= at + self.params.detour_s:
            return 0.0
        ramp = 8.0
        into, out = elapsed_s - at, at + self.params.detour_s - elapsed_s
        return self.params.detour_m * min(1.0, into / ramp, out / ramp)

    def _ping(self, ts: int, detour_m: float, emit: Emit) -> None:
        lat, lon = self.pos
        if detour_m:  # a wrong turn away from the territory: clearly off the round
            t_lat, t_lon = self.route.territory
            dn, de = (
                (lat - t_lat) * 111_320.0,
                (lon - t_lon) * 111_320.0 * math.cos(math.radians(lat)),
            )
            norm = math.hypot(dn, de)
            if norm < 1.0:
                dn, de, norm = 0.0, 1.0, 1.0
            lat, lon = offset(lat, lon, de / norm * detour_m, dn / norm * detour_m)
        sigma = self.params.gps_sigma_m
        lat, lon = offset(lat, lon, self.rng.gauss(0, sigma), self.rng.gauss(0, sigma))
        self.seq += 1
        ping = Ping(
            self.driver_id,
            ts,
            round(lat, 6),
            round(lon, 6),
            seq=self.seq,
            accuracy_m=sigma,
            route_id=self.plan.route_id,
        )
        emit(PINGS, self.driver_id, ping)


# --- the day in a thread --------------------------------------------------------------------


@dataclass
class DayCounts:
    """What the simulation sent."""

    pings: int = 0
    events: int = 0
    orders: list[Order] = field(default_factory=list)
    unservable: set[str] = field(default_factory=set)
    plans_followed: int = 0
    invalid: int = 0


class DaySimulation(threading.Thread):
    """Publishes the day in real time: plans and shift starts, then pings, events, orders."""

    def __init__(
        self,
        settings: Settings,
        day: Day,
        on_arrival: Callable[[str, str, int], None] = lambda *_: None,
        roles: Mapping[str, Settings] | None = None,
    ) -> None:
        super().__init__(daemon=True, name="demo-day")
        self.settings = settings
        self.day = day
        self.params = day.params
        self.rng = random.Random(day.params.seed + 1)
        self.travel = travel = HaversineTravel(speed_mps=day.params.speed_mps)
        self.drivers = {
            r.plan.driver_id: DayDriver(
                r, random.Random(f"{day.params.seed}:{i}"), travel, day.params
            )
            for i, r in enumerate(day.routes)
        }
        self.updates: queue.Queue[RouteUpdate] = queue.Queue()
        self.on_arrival = on_arrival
        self.stop_event = threading.Event()
        self.counts = DayCounts()
        self.lock = threading.Lock()
        self.error: BaseException | None = None
        # One producer per client identity (the secure profile's roles: gateway for pings
        # and events, planner for routes, dispatch for orders); one for all otherwise.
        roles = dict(roles or {})
        made: dict[int, Producer] = {}
        self._producers: dict[str, Producer] = {}
        for base in (PINGS, EVENTS, ROUTES, ORDERS):
            role = roles.get(base, settings)
            if id(role) not in made:
                made[id(role)] = Producer(producer_config(role.kafka_bootstrap, role))
            self._producers[base] = made[id(role)]
        self._all = list(made.values())
        self._topics = {b: topic_name(settings, b) for b in (PINGS, EVENTS, ROUTES, ORDERS)}

    def emit(self, base: str, key: str, value: bytes) -> None:
        while True:
            try:
                self._producers[base].produce(self._topics[base], key=key.encode(), value=value)
                break
            except BufferError:
                self._producers[base].poll(0.05)
        if base == PINGS:
            self.counts.pings += 1
        elif base == EVENTS:
            self.counts.events += 1

    def _flush(self) -> None:
        for producer in self._all:
            producer.flush(30)

    def _emit_message(self, base: str, key: str, message: Ping | DeliveryEvent) -> None:
        self.emit(base, key, msgspec.json.encode(message))

    def publish_plans(self) -> None:
        """Every plan on fleet.routes and every shift start, before the first ping."""
        for d in self.drivers.values():
            plan = d.plan
            self.emit(ROUTES, plan.route_id, msgspec.json.encode(plan))
            start = DeliveryEvent(
                f"ev-{plan.route_id}-shift_start",
                plan.driver_id,
                "shift_start",
                now_ms(),
                route_id=plan.route_id,
            )
            self.emit(EVENTS, plan.driver_id, msgspec.json.encode(start))
        self._flush()

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # surfaced by the demo, never a silent stop
            self.error = exc

    def _run(self) -> None:
        every = self.params.ping_every_s
        began = last = time.monotonic()
        orders = list(self.day.order_times_s)
        unservable = list(self.day.unservable_times_s)
        tick = 0
        while not self.stop_event.is_set():  # the demo stops the day (drivers drive on till then)
            now = time.monotonic()
            elapsed, dt, last = now - began, now - last, now  # a late tick moves them further
            ts = now_ms()
            with self.lock:
                self._follow_updates()
                for d in self.drivers.values():
                    d.step(dt, ts, elapsed, self._emit_message)
                    for arrival in d.arrivals:
                        self.on_arrival(*arrival)
                    d.arrivals.clear()
                while orders and orders[0] <= elapsed:
                    orders.pop(0)
                    self._order(ts, elapsed)
                while unservable and unservable[0] <= elapsed:
                    unservable.pop(0)
                    self._order(ts, elapsed, servable=False)
                if self.rng.random() < self.params.invalid_rate * len(self.drivers):
                    self.emit(PINGS, "drv-x", self.rng.choice(BROKEN))
                    self.counts.invalid += 1
            for producer in self._all:
                producer.poll(0)
            tick += 1
            self.stop_event.wait(max(0.0, began + tick * every - time.monotonic()))
        self._flush()

    def _follow_updates(self) -> None:
        while True:
            try:
                update = self.updates.get_nowait()
            except queue.Empty:
                return
            driver = self.drivers.get(update.plan.driver_id)
            if driver is not None and driver.follow(update.plan):
                self.counts.plans_followed += 1

    def _order(self, ts: int, elapsed_s: float, *, servable: bool = True) -> None:
        """A new order next to one of the next stops of a driver at work (or far away)."""
        n = len(self.counts.orders)
        order_id = f"ord-{self.day.run}-{n + 1:03d}"
        service_s = round(3.0 * self.params.scale, 1)
        if servable:
            lat, lon, window = self._servable_spot(ts, elapsed_s, service_s)
        else:  # 25 km out of town, due in 20 s: no route can get there in time
            lat, lon = offset(*CENTER, 25_000.0, -12_000.0)
            window = (ts, ts + 20_000)
            self.counts.unservable.add(order_id)
        order = Order(
            order_id,
            round(lat, 6),
            round(lon, 6),
            ts,
            window_start_ms=window[0],
            window_end_ms=window[1],
            service_s=service_s,
            demand=1,
        )
        self.emit(ORDERS, order_id, msgspec.json.encode(order))
        self.counts.orders.append(order)

    def _servable_spot(
        self, ts: int, elapsed_s: float, service_s: float
    ) -> tuple[float, float, tuple[int, int]]:
        """Where and when a servable order is due, as a dispatcher's day has them.

        The spot is 50-150 m (scaled with the day) from the next or the one-after stop of a
        driver at work (not silent, not on a detour), so that driver passes by soon; the
        window opens now and ends like the day's own stops (its slot and the two after, past
        the end of the day), and never before twice the time that driver needs at the
        planner's speed to get there through the stops before it (the order is solved a
        moment after it is sent, and drivers are not all fast).
        """
        working = [
            d
            for d in self.drivers.values()
            if len(d.remaining()) > 2 and not d.in_trouble(elapsed_s)
        ]
        if not working:  # late in the day: next to a first stop, as before
            stop = self.day.routes[0].plan.stops[0]
            return stop.lat, stop.lon, (ts, self.day.windows[-1][1])
        driver = self.rng.choice(working)
        ahead = driver.remaining()[: self.rng.randint(1, 2)]
        reach = self.rng.uniform(50.0, 150.0) * self.params.scale
        bearing = self.rng.uniform(0.0, 2 * math.pi)
        near = ahead[-1]
        lat, lon = offset(near.lat, near.lon, reach * math.cos(bearing), reach * math.sin(bearing))
        need_ms, at = 0, driver.pos
        for stop in ahead:
            need_ms += travel_ms(self.travel, at, (stop.lat, stop.lon), ts) + int(
                stop.service_s * 1000
            )
            at = (stop.lat, stop.lon)
        need_ms += travel_ms(self.travel, at, (lat, lon), ts) + int(service_s * 1000)
        slot = self.day.windows[self.day.window_of(ts) or 0]
        end = max(slot[1] + 2 * (slot[1] - slot[0]), ts + 2 * need_ms)
        return lat, lon, (ts, end)
