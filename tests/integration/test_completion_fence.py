"""Completion reports on real Redis: summaries always equal a recount of their details, and
a write from an older plan version of a route than one already filed is dropped, so a stop
removed by a new version cannot come back as pending (a tracking step that ran on the old
plan during the edit, or a replay after a crash)."""

from __future__ import annotations

import uuid

import msgspec
import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from fleet.settings import Settings
from fleet.tracking.completion import (
    COMPLETION_LUA,
    WINDOW_KEY,
    WINDOWS_SUMMARY_KEY,
    ZONE_KEY,
    ZONES_SUMMARY_KEY,
    StopOutcome,
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


_STEP = st.tuples(
    st.integers(0, 5),  # which stop
    st.sampled_from(["pending", "delivered", "failed", ""]),  # "" = removed from the plan
    st.integers(1, 3),  # plan version of the write
)


@settings(max_examples=40, deadline=None)
@given(steps=st.lists(st.lists(_STEP, min_size=1, max_size=4), min_size=1, max_size=12))
def test_summaries_equal_a_recount_after_any_writes(stack: Settings, steps) -> None:
    """Summaries are kept by counting only real state changes; after any sequence of writes
    (repeats, removals, old versions, several stops per call) they equal a full recount."""
    r = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    write = r.register_script(COMPLETION_LUA)
    run = uuid.uuid4().hex[:8]
    zone, window = f"prop-{run}", f"prop-{run}-T10"
    preexisting = {f"rt-{run}-old:st-9": "delivered", f"rt-{run}-old:st-8": "pending"}
    r.hset(ZONE_KEY.format(zone), mapping=preexisting)  # filed before the counts existed
    for call in steps:
        outcomes = [
            StopOutcome(
                zone, window, f"rt-{run}-{stop % 2}:st-{stop}", state, f"rt-{run}-{stop % 2}", v
            )
            for stop, state, v in call
        ]
        write(args=completion_args(outcomes, 60))
        for key, summary, field in (
            (ZONE_KEY.format(zone), ZONES_SUMMARY_KEY, zone),
            (WINDOW_KEY.format(window), WINDOWS_SUMMARY_KEY, window),
        ):
            values = r.hvals(key)
            raw = r.hget(summary, field)
            if not values:
                assert raw is None
                continue
            got = msgspec.json.decode(raw or "{}")
            assert (got["total"], got["delivered"], got["failed"]) == (
                len(values),
                values.count("delivered"),
                values.count("failed"),
            )
