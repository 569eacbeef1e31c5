"""Poison on every agent's topic through a real worker (issue 9): 200 KB of control bytes, a
tombstone, a number beyond int64, a key that is not the driver, a record of the wrong type;
each ends as a small dead letter with its reason, and fresh drivers' plans, events and
commands sent after them are all applied (the agents went on)."""

from __future__ import annotations

import json
import uuid

import pytest
import redis

from fleet.topics import COMMANDS, DLQ, EVENTS, ROUTES
from load_tests.faults import QUIET_DECISIONS, World, differences, expected_read_model, read_model
from tests.conftest import consume_all, produce, wait_until

pytestmark = pytest.mark.integration

CONTROL = bytes(range(1, 32)) * (200_000 // 31)


def test_poison_on_events_routes_commands_then_fresh_traffic_applies(fleet_env, worker) -> None:
    settings = fleet_env.settings
    worker(fleet_env, **QUIET_DECISIONS)
    world = World(uuid.uuid4().hex[:6], 4)
    bootstrap = fleet_env["FLEET_KAFKA_BOOTSTRAP"]
    driver = world.drivers[0]
    event = json.loads(world.event(driver, "delivered", "st-1", 1000)[1])
    poison: list[tuple[str, bytes | None, bytes | None, str]] = [
        (EVENTS, driver.encode(), CONTROL, "too_large"),
        (EVENTS, driver.encode(), None, "empty"),
        (EVENTS, driver.encode(), json.dumps({**event, "ts_ms": 2**63}).encode(), "out_of_range"),
        (EVENTS, b"someone-else", json.dumps(event).encode(), "key_mismatch"),
        (EVENTS, None, json.dumps(event).encode(), "key_mismatch"),
        (ROUTES, b"rt-x", CONTROL, "too_large"),
        (ROUTES, b"rt-x", b'{"route_id": "rt-x", "version": 18446744073709551616}', "out_of_range"),
        (COMMANDS, b"rt-x", CONTROL, "too_large"),
        (COMMANDS, b"rt-x", None, "empty"),
        (COMMANDS, b"rt-x", b'{"command_id": "c\\n", "route_id": "rt-x"}', "invalid_identifier"),
    ]
    for topic, key, value, _reason in poison:
        produce(bootstrap, fleet_env.topic(topic), [(key, value)])

    # Fresh traffic after the poison, on every partition.
    produce(bootstrap, fleet_env.topic(ROUTES), world.plan_messages())
    produce(bootstrap, fleet_env.topic(EVENTS), world.shifts())
    produce(bootstrap, fleet_env.topic("fleet.pings"), world.pings())
    produce(bootstrap, fleet_env.topic(EVENTS), world.outcomes())
    r = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    routed = lambda: all(  # noqa: E731  (a command needs its route's plan first)
        r.hget(f"fleet:driver:{p.driver_id}", "route_id") == p.route_id
        for p in world.plans.values()
    )
    assert wait_until(routed, 90)
    produce(bootstrap, fleet_env.topic(COMMANDS), world.commands())
    produce(bootstrap, fleet_env.topic(EVENTS), world.last_outcomes())
    expected = expected_read_model(world)
    assert wait_until(lambda: read_model(r, world) == expected, 120), differences(
        read_model(r, world), expected
    )

    letters = [
        json.loads(v)
        for _k, v in consume_all(bootstrap, fleet_env.topic(DLQ), 60, expect=len(poison))
        if v
    ]
    got = sorted((letter["source_topic"], letter["reason"]) for letter in letters)
    assert got == sorted((fleet_env.topic(t), reason) for t, _k, _v, reason in poison)
    assert max(len(json.dumps(letter)) for letter in letters) < 8 * 1024
