"""The ingest core as pure logic: de-duplication, event-time order, jump filtering."""

from __future__ import annotations

from fleet.ingest import DriverState, IngestConfig, decode_state, encode_state, ingest_batch
from fleet.records import Ping

CFG = IngestConfig(max_speed_mps=50.0, confirm_fixes=3, zone_resolution=7)


def ping(ts: int, lat: float = 52.5, lon: float = 13.4, seq: int | None = None, d: str = "d1"):
    return Ping(driver_id=d, ts_ms=ts, lat=lat, lon=lon, seq=seq)


def test_duplicates_are_dropped_within_and_across_batches():
    states: dict[str, DriverState] = {}
    r1 = ingest_batch([ping(1000, seq=1), ping(1000, seq=1), ping(2000, seq=2)], states, CFG)
    assert (len(r1.accepted), r1.duplicates) == (2, 1)
    r2 = ingest_batch([ping(2000, seq=2), ping(3000, seq=3)], states, CFG)
    assert (len(r2.accepted), r2.duplicates) == (1, 1)


def test_same_time_different_seq_is_not_a_duplicate():
    states: dict[str, DriverState] = {}
    r = ingest_batch([ping(1000, seq=1), ping(1000, seq=2)], states, CFG)
    assert (len(r.accepted), r.duplicates) == (2, 0)


def test_late_ping_goes_to_history_but_does_not_move_the_live_position():
    states: dict[str, DriverState] = {}
    ingest_batch([ping(5000, lat=52.50, seq=5)], states, CFG)
    r = ingest_batch([ping(4000, lat=52.49, seq=4)], states, CFG)
    assert r.late == 1 and len(r.accepted) == 1 and r.moved == [] and r.live == {}
    assert states["d1"].ts_ms == 5000 and states["d1"].lat == 52.50


def test_live_position_is_the_newest_fix_of_the_batch():
    states: dict[str, DriverState] = {}
    r = ingest_batch([ping(1000, 52.5000), ping(3000, 52.5002), ping(2000, 52.5001)], states, CFG)
    assert r.live["d1"].ping.ts_ms == 3000
    assert r.live["d1"].h3.startswith("89") and r.live["d1"].zone.startswith("87")


def test_single_jump_is_held_and_discarded_when_the_next_fix_is_back():
    states: dict[str, DriverState] = {}
    ingest_batch([ping(0, 52.5, 13.4)], states, CFG)
    r = ingest_batch([ping(1000, 53.5, 13.4), ping(2000, 52.5001, 13.4)], states, CFG)
    assert r.jumps == 1 and r.jumps_confirmed == 0
    assert r.live["d1"].ping.ts_ms == 2000 and states["d1"].lat == 52.5001


def test_jump_confirmed_by_consistent_following_fixes_moves_the_position():
    states: dict[str, DriverState] = {}
    ingest_batch([ping(0, 52.5, 13.4)], states, CFG)
    far = [ping(1000 * k, 53.5 + k * 0.0001, 13.4) for k in (1, 2)]
    r = ingest_batch(far, states, CFG)
    assert r.live == {} and states["d1"].lat == 52.5
    r = ingest_batch([ping(3000, 53.5003, 13.4)], states, CFG)
    assert r.jumps_confirmed == 1 and states["d1"].lat == 53.5003


def test_state_round_trips_through_bytes():
    states: dict[str, DriverState] = {}
    ingest_batch([ping(0, seq=1), ping(1000, 60.0, seq=2)], states, CFG)
    restored = decode_state(encode_state(states["d1"]))
    assert restored == states["d1"]
    assert decode_state(None) == DriverState()
