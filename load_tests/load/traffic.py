"""The load generator: a fleet on routes sending pings, events, orders and dispatcher edits.

Every driver follows its own closed route (``load_tests.simulator``) published as a RoutePlan,
reports an arrival and a delivery (or a failed attempt) at each stop, and sends one ping per
interval. Some drivers detour (off-route alerts), some go offline and replay their queue in
one burst (stale alerts, lag spikes); a share of pings is sent twice and a share of messages
is invalid. The generator keeps the ledger the no-loss verdict is checked against: each
driver's valid pings carry seq 1..n, so n and the last ts_ms say what history and Redis must
hold.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec
from confluent_kafka import Producer

from fleet.clock import now_ms
from fleet.records import DeliveryEvent, DispatchCommand, LatLon, Order, Ping, RoutePlan, Stop
from fleet.topics import COMMANDS, EVENTS, ORDERS, PINGS, ROUTES
from load_tests.load.config import Scenario
from load_tests.simulator import METRES_PER_DEG_LAT, SimDriver, _dist_m, make_fleet, producer_config

DETOUR_M = 400.0
DETOUR_S = 90.0
DETOUR_RAMP_S = 15.0
GPS_NOISE_M = 5.0
INVALID_MESSAGES = (
    b'{"driver_id":"%s","ts_ms":%d,"lat":123.4,"lon":13.4}',  # lat out of range
    b'{"driver_id":"%s","ts_ms":%d,"lon":13.4}',  # lat missing
    b'{"driver_id":"%s","ts_ms":%d,"lat":true,"lon":13.4',  # not JSON
)


@dataclass
class LoadDriver:
    """A simulated driver with its plan, its planned troubles and its ledger."""

    sim: SimDriver
    plan: RoutePlan
    detour_at_s: float | None = None
    offline_at_s: float | None = None
    offline_s: float = 0.0
    last_sent: float = 0.0  # monotonic time of the last ping slot
    last_ts_ms: int = 0  # ts_ms of the newest valid ping
    queue: list[bytes] = field(default_factory=list)  # pings held while offline

    @property
    def driver_id(self) -> str:
        return self.sim.driver_id


@dataclass
class Ledger:
    """What was sent: the ground truth of the verdicts."""

    valid_pings: int = 0
    duplicates: int = 0
    invalid: int = 0
    events: int = 0
    orders: int = 0
    commands: int = 0
    plans: int = 0
    burst_pings: int = 0
    queued: int = 0  # valid pings held by offline drivers, not sent yet
    bursts: list[tuple[float, int]] = field(default_factory=list)  # (elapsed_s, pings)
    sent_wall_ms: dict[str, int] = field(default_factory=dict)  # "order:id"/"command:id" -> ms
    last_ts: dict[str, int] = field(default_factory=dict)  # driver -> newest valid ts_ms
    seq: dict[str, int] = field(default_factory=dict)  # driver -> valid pings sent (1..n)


def plan_for(sim: SimDriver, start_ms: int, version: int = 1) -> RoutePlan:
    """The closed route a simulated driver drives, as a plan (stops at its corners)."""
    points = [*sim.path, sim.path[0]]
    stops = []
    t_ms = start_ms
    for i in range(1, len(points)):
        t_ms += int(_dist_m(points[i - 1], points[i]) / sim.speed_mps * 1000)
        stops.append(
            Stop(
                stop_id=f"st-{i}",
                lat=points[i][0],
                lon=points[i][1],
                planned_arrival_ms=t_ms,
                window_start_ms=t_ms - 3_600_000,
                window_end_ms=t_ms + 3_600_000,
                demand=1,
            )
        )
    return RoutePlan(
        route_id=sim.route_id,
        driver_id=sim.driver_id,
        version=version,
        stops=stops,
        depot=LatLon(points[0][0], points[0][1]),
        shift_start_ms=start_ms,
        shift_end_ms=max(t_ms, start_ms) + 3_600_000,
        capacity=200,
        path=points,
    )


class Traffic:
    """Produces a scenario's traffic into one run's topics, tick by tick."""

    def __init__(
        self, scenario: Scenario, bootstrap: str, topic: Callable[[str], str], prefix: str
    ) -> None:
        self.scenario = scenario
        self.topic = {base: topic(base) for base in (PINGS, EVENTS, ROUTES, ORDERS, COMMANDS)}
        self.prefix = prefix
        self.producer = Producer(producer_config(bootstrap))
        self.encoder = msgspec.json.Encoder()
        self.rng = random.Random(11)
        self.ledger = Ledger()
        self.generation = 0
        self.drivers = [self._new_driver(sim) for sim in make_fleet(scenario.drivers, 11, prefix)]
        self.rng.shuffle(self.drivers)  # round-robin order: neighbours in id differ in phase
        self.started = 0.0
        self.slots_done = 0
        self.slots_due = 0.0
        self.next_driver = 0
        self.rotated = 0
        self.next_order_s = 0.0
        self.next_command_s = 0.0

    # --- set-up --------------------------------------------------------------------------
    def _new_driver(self, sim: SimDriver) -> LoadDriver:
        sc = self.scenario
        rng = self.rng
        span = max(sc.total_s - sc.warmup_s, 1.0)
        driver = LoadDriver(sim, plan_for(sim, now_ms()))
        if rng.random() < sc.detour_share and span > DETOUR_S + 10:
            driver.detour_at_s = sc.warmup_s + rng.uniform(0, span - DETOUR_S - 10)
        if rng.random() < sc.offline_share and span > sc.offline_s + 5:
            driver.offline_at_s = sc.warmup_s + rng.uniform(0, span - sc.offline_s - 5)
            driver.offline_s = sc.offline_s
        return driver

    def publish_plans(self) -> None:
        """Every driver's plan and shift start (sent before any ping)."""
        for d in self.drivers:
            self._start_shift(d)
        self.flush()

    def _start_shift(self, d: LoadDriver) -> None:
        self._send(ROUTES, d.plan.route_id, self.encoder.encode(d.plan))
        self.ledger.plans += 1
        event = DeliveryEvent(f"ev-{d.driver_id}-start", d.driver_id, "shift_start", now_ms(),
                              route_id=d.plan.route_id)  # fmt: skip
        self._send(EVENTS, d.driver_id, self.encoder.encode(event))
        self.ledger.events += 1

    # --- sending -------------------------------------------------------------------------
    def _send(self, base: str, key: str, value: bytes) -> None:
        topic = self.topic[base]
        while True:
            try:
                self.producer.produce(topic, key=key.encode(), value=value)
                return
            except BufferError:  # local queue full: let librdkafka drain it
                self.producer.poll(0.05)

    def start(self) -> None:
        self.started = time.monotonic()
        for d in self.drivers:
            d.last_sent = self.started

    def tick(self) -> float:
        """Send what is due now; return the elapsed seconds."""
        now = time.monotonic()
        elapsed = now - self.started
        sc = self.scenario
        self.slots_due += sc.rate_at(elapsed) * (now - getattr(self, "_last_tick", now))
        self._last_tick = now
        n = len(self.drivers)
        ts = now_ms()
        while self.slots_done < int(self.slots_due):
            d = self.drivers[self.next_driver]
            self.next_driver = (self.next_driver + 1) % n
            self.slots_done += 1
            self._ping(d, now, elapsed, ts)
        if sc.shift_rotation_s > 0:
            self._rotate(elapsed)
        if sc.orders_per_min > 0 and elapsed >= self.next_order_s:
            self._order(ts)
            self.next_order_s = elapsed + 60.0 / sc.orders_per_min
        if sc.commands_per_min > 0 and elapsed >= self.next_command_s:
            self._command(ts)
            self.next_command_s = elapsed + 60.0 / sc.commands_per_min
        self.producer.poll(0)
        return elapsed

    def _ping(self, d: LoadDriver, now: float, elapsed: float, ts: int) -> None:
        sim = d.sim
        leg = sim.leg
        sim.advance(now - d.last_sent)
        d.last_sent = now
        if sim.leg != leg:
            self._stop_reached(d, leg, ts)
        ping = sim.ping(ts, self.rng, GPS_NOISE_M)
        if d.detour_at_s is not None and d.detour_at_s <= elapsed <= d.detour_at_s + DETOUR_S:
            ping = self._detoured(d, ping, elapsed - d.detour_at_s)
        raw = self.encoder.encode(ping)
        ledger = self.ledger
        ledger.valid_pings += 1
        ledger.seq[d.driver_id] = sim.seq
        ledger.last_ts[d.driver_id] = ts
        if d.offline_at_s is not None and elapsed >= d.offline_at_s:
            if elapsed < d.offline_at_s + d.offline_s:
                d.queue.append(raw)
                ledger.queued += 1
                return
            self._replay(d, elapsed)
        self._send(PINGS, d.driver_id, raw)
        r = self.rng.random()
        if r < self.scenario.duplicate_rate:
            self._send(PINGS, d.driver_id, raw)
            ledger.duplicates += 1
        elif r < self.scenario.duplicate_rate + self.scenario.invalid_rate:
            bad = self.rng.choice(INVALID_MESSAGES) % (d.driver_id.encode(), ts)
            self._send(PINGS, d.driver_id, bad)
            ledger.invalid += 1

    def _replay(self, d: LoadDriver, elapsed: float) -> None:
        """The app is back online: its offline queue goes out at once, in order."""
        for raw in d.queue:
            self._send(PINGS, d.driver_id, raw)
        self.ledger.burst_pings += len(d.queue)
        self.ledger.queued -= len(d.queue)
        self.ledger.bursts.append((elapsed, len(d.queue)))
        d.queue.clear()
        d.offline_at_s = None

    def _detoured(self, d: LoadDriver, ping: Ping, into_s: float) -> Ping:
        """The fix moved sideways off the current leg (a trapezoid in time)."""
        sim = d.sim
        a, b = sim.path[sim.leg], sim.path[(sim.leg + 1) % len(sim.path)]
        out_s = DETOUR_S - into_s
        metres = DETOUR_M * min(1.0, into_s / DETOUR_RAMP_S, out_s / DETOUR_RAMP_S)
        cos_lat = math.cos(math.radians(a[0]))
        dy, dx = (b[0] - a[0]), (b[1] - a[1]) * cos_lat
        norm = math.hypot(dx, dy) or 1.0
        north, east = dx / norm * metres, -dy / norm * metres  # left of the direction of travel
        return msgspec.structs.replace(
            ping,
            lat=round(ping.lat + north / METRES_PER_DEG_LAT, 6),
            lon=round(ping.lon + east / (METRES_PER_DEG_LAT * cos_lat), 6),
        )

    def _stop_reached(self, d: LoadDriver, leg: int, ts: int) -> None:
        """Arrived at the stop ending ``leg``: an arrival, then a delivery or a failed attempt."""
        stop = d.plan.stops[leg % len(d.plan.stops)]
        common = {"route_id": d.plan.route_id, "stop_id": stop.stop_id}
        lap = d.sim.seq
        arrived = DeliveryEvent(f"ev-{d.driver_id}-{stop.stop_id}-{lap}-a", d.driver_id,
                                "arrived", ts, **common)  # type: ignore[arg-type]  # fmt: skip
        self._send(EVENTS, d.driver_id, self.encoder.encode(arrived))
        if self.rng.random() < self.scenario.failed_share:
            done = DeliveryEvent(f"ev-{d.driver_id}-{stop.stop_id}-{lap}-f", d.driver_id,
                                 "failed", ts, reason="not_home", **common)  # type: ignore[arg-type]  # fmt: skip
        else:
            done = DeliveryEvent(f"ev-{d.driver_id}-{stop.stop_id}-{lap}-d", d.driver_id,
                                 "delivered", ts, **common)  # type: ignore[arg-type]  # fmt: skip
        self._send(EVENTS, d.driver_id, self.encoder.encode(done))
        self.ledger.events += 2

    def _order(self, ts: int) -> None:
        d = self.rng.choice(self.drivers)
        lat, lon = d.sim.pos
        order_id = f"ord-{self.prefix}-{self.ledger.orders}"
        order = Order(order_id, round(lat + self.rng.uniform(-0.005, 0.005), 6),
                      round(lon + self.rng.uniform(-0.005, 0.005), 6), ts,
                      window_start_ms=ts, window_end_ms=ts + 4 * 3_600_000, service_s=120.0,
                      demand=1)  # fmt: skip
        self._send(ORDERS, order_id, self.encoder.encode(order))
        self.ledger.sent_wall_ms[f"order:{order_id}"] = ts
        self.ledger.orders += 1

    def _command(self, ts: int) -> None:
        d = self.rng.choice(self.drivers)
        lat, lon = d.sim.pos
        command_id = f"cmd-{self.prefix}-{self.ledger.commands}"
        stop = Stop(f"st-add-{self.ledger.commands}", round(lat + 0.002, 6), round(lon, 6),
                    window_end_ms=ts + 3 * 3_600_000, service_s=60.0, demand=1)  # fmt: skip
        command = DispatchCommand(command_id, d.plan.route_id, "add_stop", ts,
                                  issued_by="dispatcher:load", stop=stop)  # fmt: skip
        self._send(COMMANDS, d.plan.route_id, self.encoder.encode(command))
        self.ledger.sent_wall_ms[f"command:{command_id}"] = ts
        self.ledger.commands += 1

    def _rotate(self, elapsed: float) -> None:
        """Shift change: drivers end their shift in turn and new drivers start theirs."""
        sc = self.scenario
        n = len(self.drivers)
        due = int(elapsed * n / sc.shift_rotation_s)
        while self.rotated < due:
            i = self.rotated % n
            old = self.drivers[i]
            ts = now_ms()
            end = DeliveryEvent(f"ev-{old.driver_id}-end", old.driver_id, "shift_end", ts,
                                route_id=old.plan.route_id)  # fmt: skip
            self._send(EVENTS, old.driver_id, self.encoder.encode(end))
            self.ledger.events += 1
            if old.queue:
                self._replay(old, elapsed)
            generation = self.rotated // n + 1
            sim = make_fleet(1, 1000 * generation + i, f"{self.prefix}g{generation}x{i}")[0]
            new = self._new_driver(sim)
            new.last_sent = time.monotonic()
            self.drivers[i] = new
            self._start_shift(new)
            self.rotated += 1

    def finish(self) -> None:
        """Drivers still offline come back; everything sent is flushed."""
        elapsed = time.monotonic() - self.started
        for d in self.drivers:
            if d.queue:
                self._replay(d, elapsed)
        self.flush()

    def flush(self, timeout_s: float = 60.0) -> None:
        remaining = self.producer.flush(timeout_s)
        if remaining:
            raise RuntimeError(f"{remaining} messages not delivered to Kafka in {timeout_s} s")
