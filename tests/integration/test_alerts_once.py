"""An alert change already on fleet.alerts is not sent again when the worker recomputes it
(a replay after a crash, or input a previous owner of the partition had taken): the worker
reads the topic's tail back before its first send (streams/tracking/sent_alerts.py)."""

from __future__ import annotations

import json
import uuid

import pytest
import redis

from fleet.live import ALERTS_OPEN_KEY
from fleet.topics import ALERTS, EVENTS, ROUTES
from load_tests.faults import QUIET_DECISIONS, World
from tests.conftest import consume_all, produce, wait_until

pytestmark = pytest.mark.integration


def test_alert_already_on_the_topic_is_not_sent_twice(fleet_env, worker) -> None:
    bootstrap = fleet_env["FLEET_KAFKA_BOOTSTRAP"]
    r = redis.Redis.from_url(fleet_env.settings.redis_url, decode_responses=True)
    world = World(uuid.uuid4().hex[:6], 2)
    first, second = world.drivers
    ids = world.open_alert_ids()
    # What a previous owner sent before it died: the opening of the first driver's alert.
    earlier = {"alert_id": ids[first], "state": "open", "driver_id": first}
    produce(bootstrap, fleet_env.topic(ALERTS), [(first.encode(), json.dumps(earlier).encode())])

    handle = worker(fleet_env, **QUIET_DECISIONS)
    produce(bootstrap, fleet_env.topic(ROUTES), world.plan_messages())
    produce(bootstrap, fleet_env.topic(EVENTS), world.shifts())
    produce(bootstrap, fleet_env.topic(EVENTS), world.outcomes())  # st-2 fails: alert opens

    assert wait_until(lambda: set(r.hkeys(ALERTS_OPEN_KEY)) >= set(ids.values()), 90), handle.tail()
    messages = [json.loads(v) for _k, v in consume_all(bootstrap, fleet_env.topic(ALERTS)) if v]
    sent = [(m["alert_id"], m["state"]) for m in messages if m["driver_id"] in world.plans]
    assert sent.count((ids[first], "open")) == 1  # the earlier one only
    assert sent.count((ids[second], "open")) == 1  # a new change is sent as before
