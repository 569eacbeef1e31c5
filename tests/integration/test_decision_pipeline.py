"""Decisions end to end: real Kafka, a real `fleet worker`, real Redis.

Orders become assignments or unassigned_order alerts; each command type and each trigger
produces its RouteUpdate (or, in proposal mode, its proposal); a re-plan below the margin
produces nothing.
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
from fleet.history.errors import StoreBusy
from fleet.records import (
    Alert,
    DeliveryEvent,
    DispatchCommand,
    Order,
    Ping,
    RoutePlan,
    RouteUpdate,
    encode,
)
from fleet.topics import (
    ALERTS,
    COMMANDS,
    DLQ,
    EVENTS,
    ORDERS,
    PINGS,
    ROUTE_PROPOSALS,
    ROUTE_UPDATES,
    ROUTES,
)
from load_tests.harness import metric_value, scrape
from load_tests.scenarios import build_plan, offset
from tests.conftest import consume_all, produce, wait_until

pytestmark = pytest.mark.integration

FAST = {"FLEET_DECISION_TIME_LIMIT_S": 0.5}
QUIET = {  # triggers off unless a test turns one on
    "FLEET_DECISION_ON_BEHIND_SCHEDULE": "false",
    "FLEET_DECISION_ON_OFF_ROUTE": "false",
    "FLEET_DECISION_ON_STALE": "false",
    "FLEET_DECISION_ON_FAILED_DELIVERY": "false",
    "FLEET_DECISION_ON_ETA_WINDOW_RISK": "false",
}
EAGER = {  # triggers solved at once, issued on any gain
    "FLEET_DECISION_DEBOUNCE_S": 0,
    "FLEET_DECISION_COOLDOWN_S": 0,
    "FLEET_DECISION_MARGIN_S": 0,
    "FLEET_DECISION_MARGIN_RATIO": 0,
}


def _env(**overrides: Any) -> dict[str, Any]:
    """Worker settings: a short solver budget, every trigger off, then ``overrides``."""
    return {**FAST, **QUIET, **overrides}


def _send(env: Any, base: str, items: list[tuple[str, msgspec.Struct]]) -> None:
    produce(
        env["FLEET_KAFKA_BOOTSTRAP"],
        env.topic(base),
        [(key.encode(), encode(value)) for key, value in items],
    )


def _read(env: Any, base: str, kind: type[Any], timeout: float = 5) -> list[Any]:
    raw = consume_all(env["FLEET_KAFKA_BOOTSTRAP"], env.topic(base), timeout)
    return [msgspec.json.decode(v, type=kind) for _, v in raw if v]


def _updates(env: Any, base: str = ROUTE_UPDATES) -> list[RouteUpdate]:
    return _read(env, base, RouteUpdate)


def _wait_updates(env: Any, predicate: Any, base: str = ROUTE_UPDATES) -> list[RouteUpdate]:
    found = wait_until(lambda: [u for u in _updates(env, base) if predicate(u)], 120, 1.0)
    assert found, f"no matching update on {base}"
    return list(found)


def _dead_letters(env: Any) -> list[dict[str, Any]]:
    raw = consume_all(env["FLEET_KAFKA_BOOTSTRAP"], env.topic(DLQ), 5)
    return [json.loads(v) for _, v in raw if v]


def _wait_dead_letters(env: Any, reasons: set[str]) -> list[dict[str, Any]]:
    got = wait_until(lambda: reasons <= {d["reason"] for d in _dead_letters(env)}, 120, 1.0)
    assert got, f"dead letters {reasons} missing: {_dead_letters(env)}"
    return _dead_letters(env)


def _route(run: str, name: str, start_ms: int, n_stops: int = 8, seed: int = 0) -> RoutePlan:
    """A plan whose stops zig-zag back and forth (a re-plan gains), straight lines as path.

    The first stop stays first (it is the one the driver approaches, which a re-plan keeps).
    """
    import numpy as np

    plan = build_plan(
        f"rt-{run}-{name}", f"drv-{run}-{name}", n_stops=n_stops, start_ms=start_ms,
        rng=np.random.default_rng(seed),
    )  # fmt: skip
    stops = [msgspec.structs.replace(s, stop_id=f"{name}{s.stop_id}") for s in plan.stops]
    order = [0, *range(2, n_stops, 2), *range(1, n_stops, 2)]  # 0, 2, 4, ..., 1, 3, ...
    return msgspec.structs.replace(
        plan, stops=[stops[i] for i in order], path=None, shift_end_ms=start_ms + 8 * 3_600_000
    )


def _start_drivers(env: Any, run: str, plans: list[RoutePlan], at: int) -> None:
    """shift_start and a first fix at the depot for each driver, once the plans are indexed."""
    r = redis.Redis.from_url(env["FLEET_REDIS_URL"], decode_responses=True)
    _send(env, ROUTES, [(p.route_id, p) for p in plans])
    indexed = lambda: all(  # noqa: E731
        r.hget(f"fleet:driver:{p.driver_id}", "route_id") == p.route_id for p in plans
    )
    assert wait_until(indexed, 60)
    events = [(p.driver_id, DeliveryEvent(f"ev-{run}-{p.driver_id}", p.driver_id,
                                          "shift_start", at)) for p in plans]  # fmt: skip
    _send(env, EVENTS, events)
    assert all(p.depot for p in plans)
    pings = [(p.driver_id, Ping(p.driver_id, at, p.depot.lat, p.depot.lon, seq=1))  # type: ignore[union-attr]
             for p in plans]  # fmt: skip
    _send(env, PINGS, pings)


def _history(env: Any, sql: str, expect: int) -> list[dict[str, Any]] | None:
    """Rows of a history query once there are ``expect`` of them (None while busy or short)."""
    try:
        store = open_reader(env.settings)
    except StoreBusy:
        return None
    try:
        rows = [json.loads(line) for line in store.query(sql).splitlines() if line.strip()]
    except StoreBusy:
        return None
    finally:
        store.close()
    return rows if len(rows) >= expect else None


def _ids(update: RouteUpdate) -> list[str]:
    return [s.stop_id for s in update.plan.stops]


def test_orders_commands_and_failed_delivery_in_auto_mode(fleet_env, worker):
    """An order is assigned (rationale with candidates) or alerted; optimize keeps a locked
    stop in place; bad commands and orders are dead-lettered; a failed stop comes back."""
    worker(fleet_env, **_env(FLEET_DECISION_ON_FAILED_DELIVERY="true",
                             FLEET_DECISION_RETRY_AFTER_S=60))  # fmt: skip
    run = uuid.uuid4().hex[:8]
    t0 = now_ms()
    a, b = _route(run, "a", t0, seed=1), _route(run, "b", t0, seed=2)
    _start_drivers(fleet_env, run, [a, b], t0)

    near = a.stops[2]
    lat, lon = offset(near.lat, near.lon, 120.0, 80.0)
    ok = Order(f"ord-{run}-ok", lat, lon, now_ms(), window_start_ms=t0,
               window_end_ms=t0 + 4 * 3_600_000, service_s=60, demand=1)  # fmt: skip
    far_lat, far_lon = offset(52.5, 13.4, 60_000.0, 60_000.0)
    late = Order(f"ord-{run}-late", far_lat, far_lon, now_ms(), window_end_ms=now_ms() + 30_000)
    _send(fleet_env, ORDERS, [(ok.order_id, ok), (late.order_id, late), (ok.order_id, ok)])
    bad = b'{"order_id": "ord-bad", "lat": 123.0, "lon": 13.4, "created_ms": %d}' % now_ms()
    produce(fleet_env["FLEET_KAFKA_BOOTSTRAP"], fleet_env.topic(ORDERS), [(b"ord-bad", bad)])

    # the receiving route (a neighbour that traded stops with it may get an update too)
    (assigned,) = _wait_updates(fleet_env, lambda u: u.cause == "assign" and ok.order_id in _ids(u))
    assert assigned.caused_by == f"order:{ok.order_id}"
    assert ok.order_id in _ids(assigned)
    rationale = assigned.rationale or {}
    assert {"objective_before", "objective_after", "terms_before", "terms_after",
            "moved_stops", "solver_ms", "candidates"} <= set(rationale)  # fmt: skip
    assert {c["route_id"] for c in rationale["candidates"]} == {a.route_id, b.route_id}
    assert [c["route_id"] for c in rationale["candidates"] if c["chosen"]] == [assigned.route_id]

    alerts = wait_until(
        lambda: [x for x in _read(fleet_env, ALERTS, Alert) if x.kind == "unassigned_order"], 60
    )
    (alert,) = alerts
    assert alert.driver_id == late.order_id and alert.details["reason"] == "window_unreachable"
    r = redis.Redis.from_url(fleet_env["FLEET_REDIS_URL"], decode_responses=True)
    assert r.hget("fleet:alerts:open", alert.alert_id) is not None

    # lock b's third stop, then optimize b: the lock keeps its place, the rest is re-planned.
    locked = b.stops[2].stop_id
    t = now_ms()
    commands = [
        DispatchCommand(f"cmd-{run}-1", b.route_id, "lock_stop", t, stop_id=locked),
        DispatchCommand(f"cmd-{run}-2", b.route_id, "optimize", t),
        DispatchCommand(f"cmd-{run}-3", f"rt-{run}-nope", "optimize", t),
        DispatchCommand(f"cmd-{run}-4", b.route_id, "lock_stop", t, stop_id="st-nope"),
        DispatchCommand(f"cmd-{run}-5", b.route_id, "accept_proposal", t, proposal_id="prop-x"),
        DispatchCommand(f"cmd-{run}-6", b.route_id, "unlock_stop", t, stop_id=locked),
    ]  # fmt: skip
    _send(fleet_env, COMMANDS, [(c.route_id, c) for c in commands])
    (optimized,) = _wait_updates(fleet_env, lambda u: u.cause == "optimize")
    assert optimized.route_id == b.route_id and optimized.caused_by == f"command:cmd-{run}-2"
    assert _ids(optimized).index(locked) == [s.stop_id for s in b.stops].index(locked)
    assert _ids(optimized) != [s.stop_id for s in b.stops]  # the zig-zag was improved
    assert sorted(_ids(optimized)) == sorted(s.stop_id for s in b.stops)
    letters = _wait_dead_letters(fleet_env, {"unknown_route", "unknown_stop", "unknown_proposal",
                                             "lat_out_of_range"})  # fmt: skip
    assert sum(d["reason"] == "lat_out_of_range" for d in letters) == 1

    # a failed delivery: a new attempt later, on a or its neighbour
    now_a = [u for u in _updates(fleet_env) if u.route_id == a.route_id]
    current = max(now_a, key=lambda u: u.version).plan if now_a else a
    failed_stop = current.stops[0].stop_id
    failed = DeliveryEvent(f"ev-{run}-f", a.driver_id, "failed", now_ms(), a.route_id,
                           failed_stop, reason="not_home")  # fmt: skip
    _send(fleet_env, EVENTS, [(a.driver_id, failed)])
    (retry,) = _wait_updates(fleet_env, lambda u: u.cause == "failed_delivery")
    assert f"{failed_stop}.r1" in _ids(retry)
    assert retry.caused_by == f"stop:{a.route_id}/{failed_stop}"
    placed = [u for u in _updates(fleet_env) if u.cause == "assign" and ok.order_id in _ids(u)]
    assert len(placed) == 1  # the duplicate order was assigned once


def test_triggers_become_proposals_and_accept_applies_them(fleet_env, worker):
    """Proposal mode: off_route, behind_schedule and optimize re-plans wait on
    fleet.route-proposals; accept_proposal applies one; accepting it again is stale."""
    worker(fleet_env, **_env(**EAGER, FLEET_DECISION_APPLY="propose",
                             FLEET_DECISION_ON_OFF_ROUTE="true",
                             FLEET_DECISION_ON_BEHIND_SCHEDULE="true",
                             FLEET_OFF_ROUTE_MIN_S=1, FLEET_OFF_ROUTE_MIN_FIXES=2))  # fmt: skip
    run = uuid.uuid4().hex[:8]
    t0 = now_ms()
    off = _route(run, "off", t0, seed=3)
    late = _route(run, "late", t0 - 40 * 60_000, seed=4)
    _start_drivers(fleet_env, run, [off, late], now_ms())

    # off: the driver is 600 m beside the line to its first stop; late: stuck at the depot.
    first = off.stops[0]
    assert off.depot is not None and late.depot is not None
    mid = ((off.depot.lat + first.lat) / 2, (off.depot.lon + first.lon) / 2)
    side = offset(mid[0], mid[1], 600.0, 600.0)
    t = now_ms()
    pings = [(off.driver_id, Ping(off.driver_id, t + k * 1500, side[0], side[1], seq=2 + k))
             for k in range(4)]  # fmt: skip
    pings += [(late.driver_id, Ping(late.driver_id, t + k * 1500, late.depot.lat,
                                    late.depot.lon, seq=2 + k)) for k in range(4)]  # fmt: skip
    _send(fleet_env, PINGS, pings)

    proposals = _wait_updates(
        fleet_env,
        lambda u: (u.cause, u.route_id) in {("off_route", off.route_id),
                                            ("behind_schedule", late.route_id)},
        ROUTE_PROPOSALS,
    )  # fmt: skip
    while {p.cause for p in proposals} != {"off_route", "behind_schedule"}:
        proposals = _wait_updates(
            fleet_env, lambda u: u.cause in ("off_route", "behind_schedule"), ROUTE_PROPOSALS
        )
    assert all(p.proposal_id for p in proposals)
    assert not [u for u in _updates(fleet_env) if u.cause in ("off_route", "behind_schedule")]
    proposal = next(p for p in proposals if p.cause == "off_route")
    assert proposal.caused_by is not None and proposal.caused_by.startswith("alert:")
    assert (proposal.rationale or {})["objective_after"] < (proposal.rationale or {})[
        "objective_before"
    ]

    t = now_ms()
    accept = [
        DispatchCommand(f"cmd-{run}-a", off.route_id, "accept_proposal", t,
                        proposal_id=proposal.proposal_id),
        DispatchCommand(f"cmd-{run}-b", off.route_id, "accept_proposal", t,
                        proposal_id=proposal.proposal_id),
        DispatchCommand(f"cmd-{run}-c", late.route_id, "optimize", t, scope="zone"),
    ]  # fmt: skip
    _send(fleet_env, COMMANDS, [(c.route_id, c) for c in accept])
    (applied,) = _wait_updates(fleet_env, lambda u: u.cause == "dispatch:accept_proposal")
    assert applied.route_id == off.route_id and _ids(applied) == _ids(proposal)
    assert (applied.rationale or {})["proposal_id"] == proposal.proposal_id
    _wait_dead_letters(fleet_env, {"stale_proposal"})
    zone = _wait_updates(fleet_env, lambda u: u.cause == "optimize", ROUTE_PROPOSALS)
    assert late.route_id in {u.route_id for u in zone}
    assert (zone[0].rationale or {})["scope"] == "zone"

    # history: the proposal and its application, each with its rationale
    sql = (
        "SELECT applied, cause, proposal_id, objective_before FROM fleet.decisions"
        f" WHERE route_id = '{off.route_id}' AND version = {proposal.version}"
        f" AND (applied = 1 OR proposal_id = '{proposal.proposal_id}') ORDER BY applied"
    )
    rows = wait_until(lambda: _history(fleet_env, sql, expect=2), 120, 1.0)
    assert [(r["applied"], r["cause"]) for r in rows] == [
        (0, "off_route"),
        (1, "dispatch:accept_proposal"),
    ]
    assert rows[0]["proposal_id"] == proposal.proposal_id
    assert rows[0]["objective_before"] == (proposal.rationale or {})["objective_before"]


def test_a_replan_below_the_margin_produces_nothing(fleet_env, worker):
    """behind_schedule opens and is solved, but the gain is under the margin: no update."""
    port = int(fleet_env["FLEET_METRICS_PORT"])
    worker(fleet_env, **_env(**{**EAGER, "FLEET_DECISION_MARGIN_S": 1e9},
                             FLEET_DECISION_ON_BEHIND_SCHEDULE="true"))  # fmt: skip
    run = uuid.uuid4().hex[:8]
    late = _route(run, "late", now_ms() - 40 * 60_000, seed=5)
    _start_drivers(fleet_env, run, [late], now_ms())
    assert late.depot is not None
    t = now_ms()
    pings = [(late.driver_id, Ping(late.driver_id, t + k * 1500, late.depot.lat,
                                   late.depot.lon, seq=2 + k)) for k in range(3)]  # fmt: skip
    _send(fleet_env, PINGS, pings)

    def judged() -> float:
        samples = scrape(port)
        return metric_value(
            samples, "fleet_decisions_total", cause="behind_schedule", outcome="below_margin"
        )

    assert wait_until(judged, 120, 1.0) >= 1
    opened = [x for x in _read(fleet_env, ALERTS, Alert) if x.kind == "behind_schedule"]
    assert opened and opened[0].route_id == late.route_id
    assert not [u for u in _updates(fleet_env) if u.cause == "behind_schedule"]
    assert not _updates(fleet_env, ROUTE_PROPOSALS)


def test_a_long_stale_driver_has_urgent_stops_reassigned(fleet_env, worker):
    """stale beyond the setting: the silent driver's urgent stops go to the nearby route."""
    worker(fleet_env, **_env(FLEET_DECISION_ON_STALE="true", FLEET_DECISION_STALE_REASSIGN_S=1,
                             FLEET_DECISION_CRITICAL_WITHIN_S=14_400, FLEET_STALE_AFTER_S=3,
                             FLEET_STALE_CHECK_INTERVAL_S=0.5))  # fmt: skip
    run = uuid.uuid4().hex[:8]
    t0 = now_ms()
    silent = _route(run, "sil", t0, n_stops=4, seed=6)
    helper = _route(run, "hlp", t0, n_stops=4, seed=7)
    _send(fleet_env, ROUTES, [(helper.route_id, helper)])  # no driver yet: never stale
    _start_drivers(fleet_env, run, [silent], t0)

    updates = _wait_updates(fleet_env, lambda u: u.cause == "reassign_stale")
    while {u.route_id for u in updates} != {silent.route_id, helper.route_id}:
        updates = _wait_updates(fleet_env, lambda u: u.cause == "reassign_stale")
    by_route = {u.route_id: u for u in updates}
    moved = set((by_route[silent.route_id].rationale or {})["moved_stops"])
    assert moved and not moved & set(_ids(by_route[silent.route_id]))
    assert moved <= set(_ids(by_route[helper.route_id]))
    assert by_route[silent.route_id].caused_by.startswith("alert:")  # type: ignore[union-attr]


def test_a_reassigned_stop_keeps_its_place_in_automatic_replans(fleet_env, worker):
    """A stop a dispatcher moved to another route (reassign) is pinned: the behind_schedule
    re-plan of that route improves the rest and leaves the moved stop where it was put."""
    worker(fleet_env, **_env(**EAGER, FLEET_DECISION_ON_BEHIND_SCHEDULE="true"))
    run = uuid.uuid4().hex[:8]
    a = _route(run, "a", now_ms(), seed=6)
    late = _route(run, "late", now_ms() - 40 * 60_000, seed=7)
    r = redis.Redis.from_url(fleet_env["FLEET_REDIS_URL"], decode_responses=True)
    _send(fleet_env, ROUTES, [(p.route_id, p) for p in (a, late)])
    indexed = lambda: all(  # noqa: E731
        r.hget(f"fleet:driver:{p.driver_id}", "route_id") == p.route_id for p in (a, late)
    )
    assert wait_until(indexed, 60)
    # the stop of a nearest the late route's first stop: a re-plan free to move it would
    # put it right after that stop, not where the reassign put it (the end)
    head = late.stops[0]
    moved = min(a.stops, key=lambda s: (s.lat - head.lat) ** 2 + (s.lon - head.lon) ** 2).stop_id
    reassign = DispatchCommand(f"cmd-{run}-r", a.route_id, "reassign", now_ms(),
                               to_driver_id=late.driver_id, stop_ids=[moved])  # fmt: skip
    _send(fleet_env, COMMANDS, [(a.route_id, reassign)])
    (edited,) = _wait_updates(
        fleet_env, lambda u: u.cause == "dispatch:reassign" and u.route_id == late.route_id
    )
    place = _ids(edited).index(moved)
    assert place > 1

    # the late driver starts, stuck at the depot: behind_schedule re-plans its route
    assert late.depot is not None
    t = now_ms()
    _send(fleet_env, EVENTS, [(late.driver_id, DeliveryEvent(f"ev-{run}-s", late.driver_id,
                                                             "shift_start", t))])  # fmt: skip
    pings = [(late.driver_id, Ping(late.driver_id, t + k * 1500, late.depot.lat,
                                   late.depot.lon, seq=1 + k)) for k in range(4)]  # fmt: skip
    _send(fleet_env, PINGS, pings)
    replans = _wait_updates(
        fleet_env, lambda u: u.cause == "behind_schedule" and u.route_id == late.route_id
    )
    for replan in replans:
        assert _ids(replan).index(moved) == place
    assert _ids(replans[0]) != _ids(edited)  # the rest of the zig-zag was improved
