"""Stale detector: silence on shift opens, pings resuming resolve, off shift never opens."""

from __future__ import annotations

from fleet.records import DeliveryEvent, Ping
from fleet.tracking.config import TrackingConfig
from fleet.tracking.stale import StaleState, check_stale, ping_seen
from fleet.tracking.tracker import DriverTrack, apply_event, apply_pings, check_timers

CFG = TrackingConfig(stale_after_ms=120_000)


def test_opens_once_after_the_silence_threshold_and_holds() -> None:
    state, change = check_stale(StaleState(), 1_000, True, 120_999, CFG)
    assert change is None and not state.is_stale
    state, change = check_stale(state, 1_000, True, 121_000, CFG)
    assert change is not None and change.action == "open" and change.basis_ms == 1_000
    state, change = check_stale(state, 1_000, True, 500_000, CFG)
    assert change is None and state.is_stale


def test_a_ping_resolves_and_a_fresh_driver_is_untouched() -> None:
    state, change = ping_seen(StaleState(True), 5_000)
    assert change is not None and change.action == "resolve" and not state.is_stale
    state, change = ping_seen(StaleState(), 5_000)
    assert change is None


def test_off_shift_silence_is_not_stale() -> None:
    _, change = check_stale(StaleState(), 0, False, 10**9, CFG)
    assert change is None


def test_driver_lifecycle_open_resolve_with_the_same_alert_id() -> None:
    track = apply_event(
        DriverTrack("drv-st"), None, DeliveryEvent("ev-1", "drv-st", "shift_start", 0), CFG
    ).track
    track = apply_pings(track, None, [Ping("drv-st", 1_000, 52.5, 13.4)], 1_000, CFG).track
    assert check_timers(track, None, 100_000, CFG).alerts == []
    opened = check_timers(track, None, 125_000, CFG)
    again = check_timers(track, None, 125_000, CFG)  # a replayed timer tick
    assert [(a.kind, a.state) for a in opened.alerts] == [("stale", "open")]
    assert opened.alerts[0].alert_id == again.alerts[0].alert_id
    track = opened.track
    assert check_timers(track, None, 200_000, CFG).alerts == []
    back = apply_pings(track, None, [Ping("drv-st", 210_000, 52.5, 13.4)], 210_000, CFG)
    assert [(a.state, a.alert_id) for a in back.alerts] == [("resolved", opened.alerts[0].alert_id)]
    assert back.alerts[0].opened_ms == 125_000


def test_shift_end_resolves_an_open_stale_alert() -> None:
    track = DriverTrack("drv-se", on_shift=True, last_seen_ms=0)
    track = check_timers(track, None, 130_000, CFG).track
    result = apply_event(track, None, DeliveryEvent("ev-e", "drv-se", "shift_end", 140_000), CFG)
    assert [(a.kind, a.state) for a in result.alerts] == [("stale", "resolved")]
