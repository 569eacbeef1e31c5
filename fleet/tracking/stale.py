"""Stale-driver detector: silence on shift for too long opens; the next ping resolves."""

from __future__ import annotations

import msgspec

from fleet.tracking.changes import Change
from fleet.tracking.config import TrackingConfig


class StaleState(msgspec.Struct, frozen=True):
    """Serialisable state of the stale detector."""

    is_stale: bool = False


def check_stale(
    state: StaleState, last_seen_ms: int | None, on_shift: bool, now_ms: int, cfg: TrackingConfig
) -> tuple[StaleState, Change | None]:
    """Run by the timer: open after ``stale_after`` of silence on shift; off shift resolves."""
    if state.is_stale:
        if not on_shift:
            return StaleState(False), Change("resolve", now_ms, details={"cause": "shift_end"})
        return state, None
    if not on_shift or last_seen_ms is None:
        return state, None
    silent_ms = now_ms - last_seen_ms
    if silent_ms >= cfg.stale_after_ms:
        # The id derives from the last ping, so a replayed timer finds the same alert.
        details = {"last_seen_ms": last_seen_ms, "silent_s": round(silent_ms / 1000, 1)}
        return StaleState(True), Change("open", now_ms, basis_ms=last_seen_ms, details=details)
    return state, None


def ping_seen(state: StaleState, now_ms: int) -> tuple[StaleState, Change | None]:
    """A ping arrived: a stale driver is back."""
    if state.is_stale:
        return StaleState(False), Change("resolve", now_ms, details={"cause": "pings_resumed"})
    return state, None
