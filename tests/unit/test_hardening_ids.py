"""Crash-consistency pieces of issue 9 that need no service: alert ids from the triggering
input, failed-delivery alerts per route and stop, Kafka key checks, table partitions."""

from __future__ import annotations

import json

from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given, settings
from hypothesis import strategies as st

from fleet.decode import decode_ping_batch
from fleet.records import DeliveryEvent, Ping
from fleet.tracking.config import TrackingConfig
from fleet.tracking.tracker import DriverTrack, apply_event, apply_pings, apply_plan, plan_geometry
from load_tests.scenarios import build_plan

CFG = TrackingConfig(behind_schedule_ms=600_000, behind_schedule_resolve_ms=300_000)
LIMITS = {"source_topic": "fleet.pings", "now_ms": 2_000_000_000_000, "max_future_ms": 60_000}


def _stuck_pings(n: int) -> tuple[list[Ping], object, DriverTrack]:
    plan = build_plan("rt-b", "drv-b", n_stops=4, leg_m=1600, speed_mps=8, service_s=100)
    start = plan.shift_start_ms
    assert start is not None
    lat, lon = plan.path[0] if plan.path else (0.0, 0.0)
    pings = [Ping("drv-b", start + m * 60_000, lat, lon, seq=m) for m in range(n)]
    return pings, plan_geometry(plan), apply_plan(DriverTrack("drv-b"), plan, 0).track


def _alerts_batched(sizes: list[int]) -> list[tuple[str, str, int]]:
    pings, geo, track = _stuck_pings(sum(sizes))
    seen, i = [], 0
    for size in sizes:
        batch = pings[i : i + size]
        i += size
        result = apply_pings(track, geo, batch, batch[-1].ts_ms, CFG)  # type: ignore[arg-type]
        track = result.track
        seen += [(a.alert_id, a.state, a.opened_ms) for a in result.alerts]
    return seen


def test_behind_schedule_id_does_not_depend_on_batching() -> None:
    one_by_one = _alerts_batched([1] * 16)
    assert [state for _id, state, _at in one_by_one] == ["open"]
    for sizes in ([16], [5, 11], [3, 3, 3, 7], [12, 4]):
        assert _alerts_batched(sizes) == one_by_one


def test_failed_delivery_alerts_are_per_route_and_stop() -> None:
    ids = []
    for route in ("rt-f1", "rt-f2"):
        plan = build_plan(route, "drv-f", n_stops=3)
        track = apply_plan(DriverTrack("drv-f"), plan, 0).track
        event = DeliveryEvent(
            f"ev-{route}", "drv-f", "failed", 5_000, route_id=route, stop_id="st-2", reason="x"
        )
        (alert,) = apply_event(track, plan_geometry(plan), event, CFG).alerts
        ids.append(alert.alert_id)
    assert ids[0] != ids[1]


def _ping(driver_id: str) -> bytes:
    return json.dumps(
        {"driver_id": driver_id, "ts_ms": 1_900_000_000_000, "lat": 1, "lon": 2}
    ).encode()


@given(st.one_of(st.none(), st.binary(max_size=70)))
def test_a_ping_keyed_by_anything_but_its_driver_is_a_key_mismatch(key: bytes | None) -> None:
    batch = decode_ping_batch([(key, _ping("drv-k"))], max_bytes=65536, require_key=True, **LIMITS)
    if key == b"drv-k":
        assert [p.driver_id for p in batch.pings] == ["drv-k"]
    else:
        assert [letter.reason for _k, letter in batch.dead_letters] == ["key_mismatch"]
        assert batch.pings == []


def test_without_require_key_any_key_is_accepted_and_invalid_keeps_its_reason() -> None:
    batch = decode_ping_batch([(b"other", _ping("drv-k"))], max_bytes=65536, **LIMITS)
    assert len(batch.pings) == 1
    bad = decode_ping_batch([(None, b"nope")], max_bytes=65536, require_key=True, **LIMITS)
    assert [letter.reason for _k, letter in bad.dead_letters] == ["invalid_json"]


@settings(deadline=None)  # the first example imports the worker's modules
@given(st.binary(min_size=1, max_size=64))
def test_global_table_partition_needs_no_producer_metadata(key: bytes) -> None:
    from streams.tracking.state import plans_table

    n = plans_table.partitions
    assert n
    # Computed without any producer (none exists at import): Kafka's default partitioner.
    assert plans_table.partition_for_key(key) == DefaultPartitioner()(key, list(range(n)), [])
