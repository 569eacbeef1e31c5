"""Completion reports on real Redis: a write from an older plan version of a route than one
already filed is dropped, so a stop removed by a new version cannot come back as pending
(a tracking step that ran on the old plan during the edit, or a replay after a crash)."""

from __future__ import annotations

import uuid

import msgspec
import pytest
import redis

from fleet.settings import Settings
from fleet.tracking.completion import (
    COMPLETION_LUA,
    ZONE_KEY,
    ZONES_SUMMARY_KEY,
    completion_args,
    stop_outcomes,
)
from load_tests.scenarios import build_plan

pytestmark = pytest.mark.integration


def test_old_version_cannot_refile_a_removed_stop(stack: Settings) -> None:
    r = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    write = r.register_script(COMPLETION_LUA)
    v1 = build_plan(f"rt-fence-{uuid.uuid4().hex[:6]}", "drv-fence", n_stops=3)
    v2 = msgspec.structs.replace(v1, version=v1.version + 1, stops=v1.stops[:2])
    gone = msgspec.structs.replace(v1, stops=v1.stops[2:])
    removed = stop_outcomes(gone, {}, 7, removed=True, version=v2.version)
    zone = ZONE_KEY.format(removed[0].zone)
    member = removed[0].member

    write(args=completion_args(stop_outcomes(v1, {}, 7), 60))  # v1 filed: 3 pending
    assert r.hget(zone, member) == "pending"
    write(args=completion_args(removed, 60))  # v2 drops the third stop
    assert r.hget(zone, member) is None
    write(args=completion_args(stop_outcomes(v1, {"st-1": "delivered"}, 7), 60))  # late v1
    assert r.hget(zone, member) is None
    first = stop_outcomes(v2, {"st-1": "delivered"}, 7)[0]
    assert r.hget(ZONE_KEY.format(first.zone), first.member) == "pending"  # late v1 dropped
    write(args=completion_args(stop_outcomes(v2, {"st-1": "delivered"}, 7), 60))  # v2 step
    assert r.hget(ZONE_KEY.format(first.zone), first.member) == "delivered"
    summary = msgspec.json.decode(r.hget(ZONES_SUMMARY_KEY, first.zone) or "{}")
    assert summary["delivered"] >= 1
