"""Off-route detector: cross-track distance with hysteresis in distance, time and fix count."""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from fleet.tracking.changes import Change
from fleet.tracking.config import TrackingConfig


class OffRouteState(msgspec.Struct, frozen=True):
    """Serialisable state: whether off route, and the run of fixes pointing the other way."""

    is_off: bool = False
    run_start_ms: int | None = None
    run_fixes: int = 0
    max_distance_m: float = 0.0


@dataclass(frozen=True, slots=True)
class OffRouteFix:
    """One fix as the detector sees it."""

    ts_ms: int
    cross_m: float
    accuracy_m: float | None = None


def classify_fix(fix: OffRouteFix, cfg: TrackingConfig) -> str:
    """``outside`` (beyond the open threshold widened by accuracy), ``inside`` or ``between``."""
    # A fix that claims poor accuracy needs a larger distance before it counts as off route.
    if fix.cross_m > cfg.off_route_m + max(0.0, fix.accuracy_m or 0.0):
        return "outside"
    if fix.cross_m <= cfg.off_route_resolve_m:
        return "inside"
    return "between"


def step_off_route(
    state: OffRouteState, fix: OffRouteFix, cfg: TrackingConfig
) -> tuple[OffRouteState, Change | None]:
    """Advance the detector by one fix (fixes in time order)."""
    kind = classify_fix(fix, cfg)
    if not state.is_off:
        return _step_on_route(state, fix, kind, cfg)
    return _step_off_route(state, fix, kind, cfg)


def _step_on_route(
    state: OffRouteState, fix: OffRouteFix, kind: str, cfg: TrackingConfig
) -> tuple[OffRouteState, Change | None]:
    if kind == "inside":
        return OffRouteState(), None
    if kind == "between":  # neither confirms nor breaks a run
        return state, None
    start = fix.ts_ms if state.run_start_ms is None else state.run_start_ms
    fixes = state.run_fixes + 1
    peak = max(state.max_distance_m, fix.cross_m)
    if fixes >= cfg.off_route_min_fixes and fix.ts_ms - start >= cfg.off_route_min_ms:
        change = Change(
            "open",
            fix.ts_ms,
            basis_ms=start,
            details={"distance_m": round(fix.cross_m, 1), "since_ms": start},
        )
        return OffRouteState(is_off=True, max_distance_m=peak), change
    return OffRouteState(False, start, fixes, peak), None


def _step_off_route(
    state: OffRouteState, fix: OffRouteFix, kind: str, cfg: TrackingConfig
) -> tuple[OffRouteState, Change | None]:
    peak = max(state.max_distance_m, fix.cross_m)
    if kind == "outside":
        return OffRouteState(is_off=True, max_distance_m=peak), None
    if kind == "between":
        return OffRouteState(True, state.run_start_ms, state.run_fixes, peak), None
    start = fix.ts_ms if state.run_start_ms is None else state.run_start_ms
    fixes = state.run_fixes + 1
    if fixes >= cfg.off_route_min_fixes and fix.ts_ms - start >= cfg.off_route_resolve_ms:
        change = Change(
            "resolve",
            fix.ts_ms,
            details={"distance_m": round(fix.cross_m, 1), "max_distance_m": round(peak, 1)},
        )
        return OffRouteState(), change
    return OffRouteState(True, start, fixes, peak), None
