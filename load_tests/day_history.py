"""Past days of the demo's world written as history, so the demo's ETA model learns the world
it serves (dense rounds, short service times) rather than a full-scale city.

Each simulated day holds two demo days per hour from 06:00 to 20:30 UTC: its plans, its
drivers' pings (one per 5 s) and events, driven offline by the very code the live demo uses.
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from decision.travel import HaversineTravel
from fleet.history.access import open_owner
from fleet.history.rows import event_rows, ping_rows, route_plan_rows
from fleet.records import DeliveryEvent, Ping, RoutePlan
from fleet.settings import Settings, get_settings
from load_tests.day import DayDriver, DayParams, make_day

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
FIRST_HOUR, LAST_HOUR = 6, 20
PING_EVERY_S = 5


@dataclass
class Kept:
    """What a driver sent: its events and one ping in ``PING_EVERY_S``."""

    pings: list[Ping] = field(default_factory=list)
    events: list[DeliveryEvent] = field(default_factory=list)

    def __call__(self, _base: str, _key: str, message: Ping | DeliveryEvent) -> None:
        if isinstance(message, DeliveryEvent):
            self.events.append(message)
        elif message.seq is not None and message.seq % PING_EVERY_S == 0:
            self.pings.append(message)


def simulate_day(
    params: DayParams, day_ms: int, index: int
) -> Iterator[tuple[list[RoutePlan], list[Ping], list[DeliveryEvent]]]:
    """The demo days of one calendar day, one per hour: plans, pings, events."""
    travel = HaversineTravel(speed_mps=params.speed_mps)
    rng = random.Random(params.seed * 1000 + index)
    for half_hour in range(2 * FIRST_HOUR, 2 * LAST_HOUR + 2):
        run = f"{index % 100:02d}{half_hour:02d}"
        seeded = replace(params, seed=params.seed * 1000 + index * 48 + half_hour)
        # A start at a random moment: the trainer anchors examples at 5-minute clock marks,
        # which then fall anywhere in these short days (with a recent speed to read).
        start_ms = day_ms + half_hour * HOUR_MS // 2 + int(rng.uniform(0, 300_000))
        day = make_day(seeded, start_ms, run)
        keep = Kept()
        for i, route in enumerate(day.routes):
            driver = DayDriver(route, random.Random(f"{seeded.seed}:{i}"), travel, seeded)
            for t in range(int(params.duration_s * 1.6)):  # the rest of the day, too
                driver.step(1.0, day.start_ms + t * 1000, float(t), keep)
        yield [r.plan for r in day.routes], keep.pings, keep.events


def write_history(settings: Settings, params: DayParams, start_ms: int, days: int) -> int:
    """Simulate ``days`` calendar days from midnight ``start_ms`` into the configured store;
    the number of routes written."""
    store = open_owner(settings)
    routes = 0
    try:
        for index in range(days):
            for plans, pings, events in simulate_day(params, start_ms + index * DAY_MS, index):
                ingested = start_ms + (index + 1) * DAY_MS
                store.insert("route_plans", route_plan_rows(plans, ingested), None)
                store.insert("pings", ping_rows(pings, ingested), None)
                store.insert("events", event_rows(events, ingested), None)
                routes += len(plans)
    finally:
        store.close()
    return routes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=4)
    parser.add_argument("--start", default="2026-10-05", help="first day (UTC date)")
    parser.add_argument("--drivers", type=int, default=30, help="drivers of each demo day")
    args = parser.parse_args()
    start = datetime.fromisoformat(args.start).replace(tzinfo=UTC)
    routes = write_history(
        get_settings(), DayParams(drivers=args.drivers), int(start.timestamp() * 1000), args.days
    )
    print(f"days={args.days} routes={routes}")


if __name__ == "__main__":
    main()
