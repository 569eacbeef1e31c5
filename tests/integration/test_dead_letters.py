"""Every agent's invalid input lands on the dead-letter topic and in one metric by source and
reason (``fleet_dead_letters_total{source,reason}``); the agents go on afterwards."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fleet.clock import now_ms
from fleet.records import DispatchCommand, encode
from fleet.topics import COMMANDS, DLQ, EVENTS, PINGS, ROUTES
from load_tests.harness import metric_value, scrape
from load_tests.scenarios import build_plan
from tests.conftest import consume_all, produce, wait_until

pytestmark = pytest.mark.integration

PLAN = build_plan("rt-dl", "drv-dl", n_stops=2)
NOW = now_ms()
# One invalid message per input topic and reason: (topic, key, value, reason).
INVALID: list[tuple[str, bytes, bytes, str]] = [
    (PINGS, b"drv-dl", b"not json", "invalid_json"),
    (PINGS, b"drv-dl", b'{"driver_id":"drv-dl","ts_ms":1763720103250,"lat":123.4,"lon":1}',
     "lat_out_of_range"),
    (EVENTS, b"drv-dl", b"{", "invalid_json"),
    (EVENTS, b"drv-dl", b'{"event_id":"e1","driver_id":"drv-dl","type":"teleported",'
     b'"ts_ms":1763720103250}', "invalid_value"),
    (ROUTES, b"rt-dl", b"[1, 2]", "not_an_object"),
    (COMMANDS, b"rt-dl", b"nope", "invalid_json"),
    # Decodes, but no route is known: the command cannot apply.
    (COMMANDS, b"rt-unknown", encode(DispatchCommand("c1", "rt-unknown", "cancel_route", NOW)),
     "unknown_route"),
    # Handed to the decision agent (lock_stop), which finds no such stop on the route: answered.
    (COMMANDS, b"rt-dl",
     encode(DispatchCommand("c2", "rt-dl", "lock_stop", NOW, stop_id="st-nope")),
     "unknown_stop"),
]  # fmt: skip


def _counted(env: Any) -> dict[tuple[str, str], float]:
    try:
        samples = scrape(int(env["FLEET_METRICS_PORT"]))
    except OSError:
        return {}
    return {
        (source, reason): metric_value(
            samples, "fleet_dead_letters_total", source=source, reason=reason
        )
        for source, _key, _value, reason in INVALID
    }


def test_invalid_input_of_every_agent_is_dead_lettered_and_counted(fleet_env, worker) -> None:
    worker(fleet_env)
    bootstrap = fleet_env["FLEET_KAFKA_BOOTSTRAP"]
    produce(bootstrap, fleet_env.topic(ROUTES), [(b"rt-dl", encode(PLAN))])
    for topic, key, value, _reason in INVALID:
        produce(bootstrap, fleet_env.topic(topic), [(key, value)])

    def all_counted() -> dict[tuple[str, str], float] | None:
        counts = _counted(fleet_env)
        return counts if counts and all(v >= 1 for v in counts.values()) else None

    counts = wait_until(all_counted, 90)
    assert counts, f"not all counted: {_counted(fleet_env)}"
    expected: dict[tuple[str, str], int] = {}
    for source, _key, _value, reason in INVALID:
        expected[(source, reason)] = expected.get((source, reason), 0) + 1
    assert counts == {k: float(v) for k, v in expected.items()}

    letters = consume_all(bootstrap, fleet_env.topic(DLQ), 60, expect=len(INVALID))
    got = sorted((json.loads(v)["source_topic"], json.loads(v)["reason"]) for _k, v in letters if v)
    assert got == sorted((fleet_env.topic(s), r) for s, _k, _v, r in INVALID)
    # The pings' old per-reason counter keeps counting them too.
    samples = scrape(int(fleet_env["FLEET_METRICS_PORT"]))
    assert metric_value(samples, "fleet_pings_rejected_total", reason="invalid_json") == 1
