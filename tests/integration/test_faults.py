"""Fault suite (short version, issue 9): SIGKILL the worker while it takes pings, events and
commands, restart it, flush Redis; the end state must equal what the input implies.

Expected values are computed from the input (``load_tests/faults.py``, whose long run is the
load-test version), not timed: every driver's live position is its last ping, its route
lost one stop by command (version 2) and got delivered, failed, delivered on the other
three; exactly one failed-delivery alert per driver is open, with the id derived from the
failing event, opened once; each command has its RouteUpdate; history holds every ping
once. After a FLUSHDB the worker writes the same read model again (rebuild).
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

from fleet import services
from fleet.topics import ALERTS, COMMANDS, EVENTS, PINGS, ROUTE_UPDATES, ROUTES
from load_tests.faults import (
    PINGS_EACH,
    QUIET_DECISIONS,
    Messages,
    World,
    alert_changes,
    differences,
    expected_alert_changes,
    expected_read_model,
    read_model,
    route_update_keys,
    routed,
)
from load_tests.gateway_process import throwaway_kafka
from tests.conftest import consume_all, produce, wait_until
from tests.integration.test_gateway_kafka_outage import free_port_pair
from tests.integration.test_poison_kernel import _history_count

pytestmark = pytest.mark.integration

DRIVERS = 6


def kill_while(handle: Any, env: Any, topic: str, messages: Messages) -> None:
    """Send ``messages``, SIGKILL the worker while it takes them, start it again."""
    produce(env["FLEET_KAFKA_BOOTSTRAP"], env.topic(topic), messages)
    time.sleep(0.3)
    handle.kill()
    handle.start()


def test_sigkill_during_pings_events_commands_then_flushdb(fleet_env, worker) -> None:
    settings = fleet_env.settings
    r = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    db = r.connection_pool.connection_kwargs.get("db", 0)
    handle = worker(fleet_env, FLEET_READ_MODEL_CHECK_S=1, **QUIET_DECISIONS)
    world = World(uuid.uuid4().hex[:6], DRIVERS)
    bootstrap = fleet_env["FLEET_KAFKA_BOOTSTRAP"]

    produce(bootstrap, fleet_env.topic(ROUTES), world.plan_messages())
    produce(bootstrap, fleet_env.topic(EVENTS), world.shifts())
    assert wait_until(lambda: routed(r, world), 90), handle.tail()

    kill_while(handle, fleet_env, PINGS, world.pings())
    kill_while(handle, fleet_env, EVENTS, world.outcomes())
    kill_while(handle, fleet_env, COMMANDS, world.commands())
    produce(bootstrap, fleet_env.topic(EVENTS), world.last_outcomes())

    expected = expected_read_model(world)
    assert wait_until(lambda: read_model(r, world) == expected, 120), (
        differences(read_model(r, world), expected), handle.tail(),
    )  # fmt: skip

    # Alerts: the one alert per driver, with the id from its failing event, opened once.
    alerts = alert_changes(consume_all(bootstrap, fleet_env.topic(ALERTS)), world)
    assert alerts == expected_alert_changes(world)
    # RouteUpdates: every command's version 2, caused by that command.
    updates = route_update_keys(consume_all(bootstrap, fleet_env.topic(ROUTE_UPDATES)), world)
    assert updates == world.route_updates()
    # History: every ping once.
    assert wait_until(lambda: _history_count(settings, world.run) == DRIVERS * PINGS_EACH, 120)

    # Redis loses everything: the worker writes the same read model again.
    if db == 0:
        pytest.skip("FLUSHDB only on a Redis DB of its own (FLEET_REDIS_URL=.../<n>, n > 0)")
    r.flushdb()
    assert wait_until(lambda: read_model(r, world) == expected, 60), differences(
        read_model(r, world), expected
    )


def test_broker_stopped_and_restarted_while_events_flow(fleet_env, worker, stack, tmp_path: Path):
    """The worker's broker goes down for 15 s right after a burst of pings and outcomes
    (its own throwaway broker: the shared one is never stopped) and comes back; commands and
    the last outcomes follow. The end state equals what the input implies, as above."""
    port = free_port_pair()
    broker = throwaway_kafka(tmp_path / "broker", port, stack)
    bootstrap = f"127.0.0.1:{port}"
    r = redis.Redis.from_url(fleet_env.settings.redis_url, decode_responses=True)
    try:
        broker.up(lambda _m: None)
        settings = fleet_env.settings.model_copy(update={"kafka_bootstrap": bootstrap})
        services.ensure_topics(settings)
        handle = worker(
            fleet_env, FLEET_KAFKA_BOOTSTRAP=bootstrap, FLEET_READ_MODEL_CHECK_S=1,
            **QUIET_DECISIONS,
        )  # fmt: skip
        world = World(uuid.uuid4().hex[:6], DRIVERS)
        produce(bootstrap, fleet_env.topic(ROUTES), world.plan_messages())
        produce(bootstrap, fleet_env.topic(EVENTS), world.shifts())
        assert wait_until(lambda: routed(r, world), 90), handle.tail()

        produce(bootstrap, fleet_env.topic(PINGS), world.pings())
        produce(bootstrap, fleet_env.topic(EVENTS), world.outcomes())
        time.sleep(0.3)  # the worker is taking them when the broker goes
        broker.down(lambda _m: None)
        time.sleep(15)
        broker.up(lambda _m: None)
        produce(bootstrap, fleet_env.topic(COMMANDS), world.commands())
        produce(bootstrap, fleet_env.topic(EVENTS), world.last_outcomes())

        expected = expected_read_model(world)
        assert wait_until(lambda: read_model(r, world) == expected, 180), (
            differences(read_model(r, world), expected), handle.tail(),
        )  # fmt: skip
        assert handle.alive(), handle.tail()  # the outage did not take the worker down
        alerts = alert_changes(consume_all(bootstrap, fleet_env.topic(ALERTS)), world)
        assert alerts == expected_alert_changes(world)
        updates = route_update_keys(consume_all(bootstrap, fleet_env.topic(ROUTE_UPDATES)), world)
        assert updates == world.route_updates()
        assert wait_until(lambda: _history_count(settings, world.run) == DRIVERS * PINGS_EACH, 120)
    finally:
        broker.down(lambda _m: None)
