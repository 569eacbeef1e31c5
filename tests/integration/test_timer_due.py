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
