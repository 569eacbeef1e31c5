"""The stale timer's due time: the timer may skip a driver until then, so no check the timer
would have made earlier can be missed (property: at any time before the due time, the
periodic check changes nothing)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from fleet.tracking.config import TrackingConfig
from fleet.tracking.stale import StaleState
from fleet.tracking.tracker import (
    TIMER_RECHECK_MS,
    DriverTrack,
    check_timers,
    next_timer_ms,
)
from load_tests.scenarios import build_plan

CFG = TrackingConfig()
FORGET_MS = 3_600_000
NOW = 1_800_000_000_000
PLAN = build_plan("rt-due", "drv-due", n_stops=2, start_ms=NOW)  # shift from NOW


def test_silent_driver_on_shift_is_due_when_stale_threshold_passes() -> None:
    track = DriverTrack("drv-due", on_shift=True, last_seen_ms=NOW - 30_000)
    due = next_timer_ms(track, PLAN, NOW, CFG, FORGET_MS)
    assert due == NOW - 30_000 + CFG.stale_after_ms
    assert check_timers(track, None, due - 1, CFG).alerts == []
    assert [a.kind for a in check_timers(track, None, due, CFG).alerts] == ["stale"]


def test_off_shift_driver_waits_for_its_shift_to_open() -> None:
    track = DriverTrack("drv-due", last_seen_ms=NOW - 10 * 60_000)
    assert next_timer_ms(track, PLAN, NOW - 60_000, CFG, FORGET_MS) == NOW + 1


def test_idle_driver_is_due_when_it_may_be_forgotten() -> None:
    track = DriverTrack("drv-due", on_shift=False, last_seen_ms=NOW)
    assert next_timer_ms(track, None, NOW, CFG, FORGET_MS) == NOW + min(FORGET_MS, TIMER_RECHECK_MS)


@given(
    silent_s=st.integers(0, 20_000),
    on_shift=st.sampled_from([True, False, None]),
    stale=st.booleans(),
    later_s=st.integers(0, 20_000),
)
def test_nothing_changes_before_the_due_time(silent_s, on_shift, stale, later_s) -> None:
    now = NOW + 3_600_000
    track = DriverTrack(
        "drv-due", on_shift=on_shift, last_seen_ms=now - silent_s * 1000,
        stale=StaleState(stale),
    )  # fmt: skip
    if check_timers(track, None, now, CFG).alerts:
        return  # the check at `now` acts; the due time applies to a track it left unchanged
    due = next_timer_ms(track, None, now, CFG, FORGET_MS)  # the same plan as the check's
    assert due > now
    t = now + later_s * 1000
    if t < due:
        assert check_timers(track, None, t, CFG).alerts == []
