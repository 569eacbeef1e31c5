"""The ingest core as pure logic: de-duplication, event-time order, jump filtering."""

from __future__ import annotations

from fleet.ingest import DriverState, IngestConfig, Ingestor, decode_state, encode_state
from fleet.records import Ping

CFG = IngestConfig(max_speed_mps=50.0, confirm_fixes=3, zone_resolution=7)


def ping(ts: int, lat: float = 52.5, lon: float = 13.4, seq: int | None = None, d: str = "d1"):
    return Ping(driver_id=d, ts_ms=ts, lat=lat, lon=lon, seq=seq)


def test_duplicates_are_dropped_within_and_across_batches():
    ing = Ingestor(CFG)
    r1 = ing.ingest([ping(1000, seq=1), ping(1000, seq=1), ping(2000, seq=2)])
    assert (len(r1.accepted), r1.duplicates) == (2, 1)
    r2 = ing.ingest([ping(2000, seq=2), ping(3000, seq=3)])
    assert (len(r2.accepted), r2.duplicates) == (1, 1)


def test_same_time_different_seq_is_not_a_duplicate():
    ing = Ingestor(CFG)
    r = ing.ingest([ping(1000, seq=1), ping(1000, seq=2)])
    assert (len(r.accepted), r.duplicates) == (2, 0)


def test_late_ping_goes_to_history_but_does_not_move_the_live_position():
    ing = Ingestor(CFG)
    ing.ingest([ping(5000, lat=52.50, seq=5)])
    r = ing.ingest([ping(4000, lat=52.49, seq=4)])
    assert r.late == 1 and len(r.accepted) == 1 and r.moved == [] and r.live == {}
    assert ing.states["d1"].ts_ms == 5000 and ing.states["d1"].lat == 52.50


def test_live_position_is_the_newest_fix_of_the_batch():
    ing = Ingestor(CFG)
    r = ing.ingest([ping(1000, 52.5000), ping(3000, 52.5002), ping(2000, 52.5001)])
    assert r.live["d1"].ping.ts_ms == 3000
    assert r.live["d1"].h3.startswith("89") and r.live["d1"].zone.startswith("87")


def test_single_jump_is_held_and_discarded_when_the_next_fix_is_back():
    ing = Ingestor(CFG)
    ing.ingest([ping(0, 52.5, 13.4)])
    r = ing.ingest([ping(1000, 53.5, 13.4), ping(2000, 52.5001, 13.4)])
    assert r.jumps == 1 and r.jumps_confirmed == 0
    assert r.live["d1"].ping.ts_ms == 2000 and ing.states["d1"].lat == 52.5001


def test_jump_confirmed_by_consistent_following_fixes_moves_the_position():
    ing = Ingestor(CFG)
    ing.ingest([ping(0, 52.5, 13.4)])
    far = [ping(1000 * k, 53.5 + k * 0.0001, 13.4) for k in (1, 2)]
    r = ing.ingest(far)
    assert r.live == {} and ing.states["d1"].lat == 52.5
    r = ing.ingest([ping(3000, 53.5003, 13.4)])
    assert r.jumps_confirmed == 1 and ing.states["d1"].lat == 53.5003


def test_state_round_trips_through_bytes():
    ing = Ingestor(CFG)
    ing.ingest([ping(0, seq=1), ping(1000, 60.0, seq=2)])
    restored = decode_state(encode_state(ing.states["d1"]))
    assert restored == ing.states["d1"] and restored.pending
    assert decode_state(None) == DriverState()


def test_newest_fix_redelivered_after_a_restart_is_a_duplicate():
    """Only the durable state survives a restart; it still recognises the live fix."""
    ing = Ingestor(CFG)
    ing.ingest([ping(1000, seq=1), ping(2000, seq=2)])
    restarted = Ingestor(CFG)
    restarted.states["d1"] = decode_state(encode_state(ing.states["d1"]))
    r = restarted.ingest([ping(2000, seq=2), ping(1000, seq=1)])
    assert r.duplicates == 1 and r.late == 1 and r.moved == []


def test_late_ping_does_not_mark_the_state_changed():
    ing = Ingestor(CFG)
    ing.ingest([ping(5000, seq=5)])
    r = ing.ingest([ping(4000, seq=4)])
    assert r.changed == set() and r.late == 1
