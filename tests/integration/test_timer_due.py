"""The stale timer looks only at due drivers (streams/tracking/state.py, due index), and a
plan change still reaches a quiet driver: it makes the driver due at once."""

from __future__ import annotations

import time
import uuid

import msgspec
import pytest
import redis

from fleet.records import encode
from fleet.topics import EVENTS, PINGS, ROUTES
from load_tests.faults import QUIET_DECISIONS, World
from load_tests.harness import metric_value, scrape
from tests.conftest import produce, wait_until

pytestmark = pytest.mark.integration


def test_plan_change_reaches_a_driver_the_timer_is_not_due_to_check(fleet_env, worker) -> None:
    bootstrap = fleet_env["FLEET_KAFKA_BOOTSTRAP"]
    r = redis.Redis.from_url(fleet_env.settings.redis_url, decode_responses=True)
    env = {**QUIET_DECISIONS, "FLEET_STALE_AFTER_S": "4", "FLEET_STALE_CHECK_INTERVAL_S": "1"}
    handle = worker(fleet_env, **env)  # warm-up (every driver checked) ends after 4 s
    world = World(uuid.uuid4().hex[:6], 1)
    (driver,) = world.drivers
    plan = world.plans[driver]
    produce(bootstrap, fleet_env.topic(ROUTES), world.plan_messages())
    produce(bootstrap, fleet_env.topic(EVENTS), world.shifts())
    produce(bootstrap, fleet_env.topic(PINGS), world.pings()[:5])
    # Off shift: nothing is due for this driver for minutes (idle-forget is hours away).
    produce(bootstrap, fleet_env.topic(EVENTS), [world.event(driver, "shift_end", None, 20_000)])
    key = f"fleet:driver:{driver}"
    assert wait_until(lambda: r.hget(key, "stops_total") == "4", 60), handle.tail()
    time.sleep(8)  # warm-up over; the timer has walked and set the driver's next check

    shorter = msgspec.structs.replace(plan, version=2, stops=plan.stops[:3])
    produce(bootstrap, fleet_env.topic(ROUTES), [(plan.route_id.encode(), encode(shorter))])
    assert wait_until(lambda: r.hget(key, "stops_total") == "3", 30), (
        r.hgetall(key), handle.tail(),
    )  # fmt: skip


def test_warm_up_walks_look_at_due_drivers_only(fleet_env, worker) -> None:
    """During the warm-up after a start the timer checks each driver once, not on every
    walk; a plan change still reaches a quiet driver then."""
    bootstrap = fleet_env["FLEET_KAFKA_BOOTSTRAP"]
    r = redis.Redis.from_url(fleet_env.settings.redis_url, decode_responses=True)
    env = {**QUIET_DECISIONS, "FLEET_STALE_AFTER_S": "600", "FLEET_STALE_CHECK_INTERVAL_S": "1"}
    handle = worker(fleet_env, **env)  # the whole test runs in the warm-up
    world = World(uuid.uuid4().hex[:6], 20)
    produce(bootstrap, fleet_env.topic(ROUTES), world.plan_messages())
    produce(bootstrap, fleet_env.topic(PINGS), world.pings())
    keys = [f"fleet:driver:{d}" for d in world.drivers]
    assert wait_until(lambda: all(r.hget(k, "stops_total") == "4" for k in keys), 60), handle.tail()
    port = int(fleet_env["FLEET_METRICS_PORT"])

    def due() -> float:
        return metric_value(scrape(port), "fleet_stale_timer_due_drivers")

    # Every driver was due once; after a walk, none until a change (the old walk: 20 each).
    assert wait_until(lambda: due() == 0, 30), (due(), handle.tail())
    time.sleep(3)  # three more walks
    assert due() == 0

    driver = world.drivers[0]
    plan = world.plans[driver]
    shorter = msgspec.structs.replace(plan, version=2, stops=plan.stops[:3])
    produce(bootstrap, fleet_env.topic(ROUTES), [(plan.route_id.encode(), encode(shorter))])
    assert wait_until(lambda: r.hget(keys[0], "stops_total") == "3", 30), (
        r.hgetall(keys[0]), handle.tail(),
    )  # fmt: skip
