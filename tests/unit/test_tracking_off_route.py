"""Off-route detector as a pure state machine: open, hold, resolve, no flapping."""

from __future__ import annotations

from fleet.tracking.changes import Change
from fleet.tracking.config import TrackingConfig
from fleet.tracking.off_route import OffRouteFix, OffRouteState, step_off_route

CFG = TrackingConfig(
    off_route_m=150.0,
    off_route_resolve_m=100.0,
    off_route_min_ms=15_000,
    off_route_min_fixes=3,
    off_route_resolve_ms=20_000,
)


def run(
    distances: list[float], every_ms: int = 5000, accuracy: float | None = None
) -> tuple[OffRouteState, list[Change]]:
    state, changes = OffRouteState(), []
    for i, d in enumerate(distances):
        state, change = step_off_route(state, OffRouteFix(i * every_ms, d, accuracy), CFG)
        if change is not None:
            changes.append(change)
    return state, changes


def test_opens_after_min_time_and_fixes_beyond_threshold() -> None:
    state, changes = run([10, 200, 220, 240, 260])  # outside from t=5 s; t=20 s is 15 s on
    assert [c.action for c in changes] == ["open"]
    assert changes[0].at_ms == 20_000
    assert changes[0].basis_ms == 5_000
    assert state.is_off


def test_enough_fixes_but_too_little_time_holds() -> None:
    state, changes = run([300, 300, 300], every_ms=1000)
    assert changes == []
    assert not state.is_off and state.run_fixes == 3


def test_long_time_but_too_few_fixes_holds() -> None:
    _state, changes = run([300, 300], every_ms=60_000)
    assert changes == []


def test_one_noisy_fix_never_opens() -> None:
    _, changes = run([10, 20, 600, 15, 12, 700, 8, 10, 9])
    assert changes == []


def test_accuracy_widens_the_threshold() -> None:
    _, loose = run([0, 200, 200, 200, 200, 200], accuracy=80.0)
    _, tight = run([0, 200, 200, 200, 200, 200], accuracy=10.0)
    assert loose == []
    assert [c.action for c in tight] == ["open"]


def test_resolves_only_inside_the_tighter_threshold_for_min_time() -> None:
    # Opens at 20 s; 120 m is back under 150 but not under 100: holds open.
    state, changes = run([0, 300, 300, 300, 300, 120, 120, 120, 120, 120, 120])
    assert [c.action for c in changes] == ["open"]
    assert state.is_off
    state, changes = run([0, 300, 300, 300, 300, 50, 50, 50, 50, 50])
    assert [c.action for c in changes] == ["open", "resolve"]
    assert changes[1].at_ms == 45_000  # inside from 25 s, 20 s later
    assert not state.is_off


def test_one_inside_fix_while_off_route_never_resolves() -> None:
    _, changes = run([0, 300, 300, 300, 300, 20, 300, 300, 20, 300, 300, 300])
    assert [c.action for c in changes] == ["open"]


def test_noise_around_the_threshold_does_not_flap() -> None:
    """Distances oscillating across 150 m open at most once and never resolve above 100 m."""
    distances = [0] + [160, 140] * 30
    _, changes = run(distances)
    assert [c.action for c in changes] == ["open"]
