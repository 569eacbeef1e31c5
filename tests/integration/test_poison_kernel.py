"""The kernel's poison classes through a real worker, then fresh drivers reach Redis and history.

Classes: a 200 KB message of control bytes (its dead letter used to exceed Kafka's 1 MB and
crash ingest), `seq = 2^63` (used to block history forever), a time before 2000, an
identifier with a final newline. Each must end as a small dead letter with its reason, and
the valid pings sent after them must all land, live and in history.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import msgspec
import pytest
import redis

from fleet.clock import now_ms
from fleet.history.access import open_reader
from fleet.history.errors import HistoryError
from fleet.records import Ping
from fleet.topics import DLQ, PINGS
from tests.conftest import consume_all, produce, wait_until

pytestmark = pytest.mark.integration

DRIVERS = 8
PINGS_EACH = 5


def _ping(**fields: Any) -> bytes:
    message = {"driver_id": "poison-1", "ts_ms": now_ms() - 5000, "lat": 52.5, "lon": 13.4}
    return json.dumps({**message, **fields}).encode()


def _history_count(settings: Any, run: str) -> int:
    try:
        store = open_reader(settings)
    except HistoryError:
        return -1
    try:
        out = store.query(
            "SELECT count() AS n FROM fleet.pings WHERE startsWith(driver_id, {p:String})",
            params={"p": f"fresh-{run}-"},
        )
        return int(json.loads(out)["n"])
    except HistoryError:
        return -1
    finally:
        store.close()


def test_poison_then_fresh_drivers_reach_redis_and_history_in_full(fleet_env, worker) -> None:
    settings = fleet_env.settings
    handle = worker(fleet_env)
    run = uuid.uuid4().hex[:6]
    control = bytes(range(1, 32)) * (200_000 // 31)
    poison = {
        "too_large": control,
        "out_of_range": _ping(seq=2**63),
        "old": _ping(ts_ms=1),
        "invalid_identifier": _ping(driver_id="drv-1\n"),
    }
    keys = [f"fresh-{run}-{d}".encode() for d in range(DRIVERS)]
    # Every partition gets the poison first (keyed like the fresh drivers), valid pings after.
    messages = [(key, raw) for key in keys for raw in poison.values()]
    t0 = now_ms() - 60_000
    fresh = [
        Ping(key.decode(), t0 + k * 1000, 52.5 + d * 0.01, 13.4 + k * 0.0001, seq=k + 1)
        for d, key in enumerate(keys)
        for k in range(PINGS_EACH)
    ]
    messages += [(p.driver_id.encode(), msgspec.json.encode(p)) for p in fresh]
    produce(settings.kafka_bootstrap, fleet_env.topic(PINGS), messages)

    r = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    live = lambda: all(  # noqa: E731
        r.hget(f"fleet:driver:{key.decode()}", "seq") == str(PINGS_EACH) for key in keys
    )
    assert wait_until(live, 90), handle.tail()
    assert wait_until(lambda: _history_count(settings, run) == len(fresh), 120)

    letters = [
        json.loads(v)
        for _, v in consume_all(
            settings.kafka_bootstrap, fleet_env.topic(DLQ), 60, expect=len(keys) * len(poison)
        )
        if v
    ]
    assert len(letters) == len(keys) * len(poison)
    reasons = sorted({letter["reason"] for letter in letters})
    assert reasons == ["invalid_identifier", "out_of_range", "too_large"]
    assert max(len(json.dumps(letter)) for letter in letters) < 8 * 1024
    large = [letter for letter in letters if letter["reason"] == "too_large"]
    assert all(letter["raw_bytes"] == len(control) for letter in large)
