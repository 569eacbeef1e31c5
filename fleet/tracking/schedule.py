"""Behind-schedule detector: lag against the plan's arrival times, with hysteresis."""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np

from fleet.records import RoutePlan
from fleet.tracking.changes import Change
from fleet.tracking.config import TrackingConfig


class BehindState(msgspec.Struct, frozen=True):
    """Serialisable state of the behind-schedule detector."""

    is_behind: bool = False


def planned_time_at(
    plan: RoutePlan, stop_along_m: np.ndarray, next_index: int, along_m: float | None
) -> int | None:
    """When the plan expected the driver where it is now: heading to stop ``next_index``.

    Between the previous stop's planned departure and the next stop's planned arrival the
    time is interpolated by distance along the line. None when the plan has no times.
    """
    stops = plan.stops
    if next_index >= len(stops) or stops[next_index].planned_arrival_ms is None:
        return None
    arrive = int(stops[next_index].planned_arrival_ms)  # type: ignore[arg-type]
    if next_index == 0:
        depart, from_m = plan.shift_start_ms, 0.0
    else:
        prev = stops[next_index - 1]
        depart = None
        if prev.planned_arrival_ms is not None:
            depart = prev.planned_arrival_ms + int(prev.service_s * 1000)
        from_m = float(stop_along_m[next_index - 1])
    to_m = float(stop_along_m[next_index])
    if depart is None or along_m is None or to_m <= from_m or depart >= arrive:
        return depart if depart is not None and depart < arrive else arrive
    share = min(1.0, max(0.0, (along_m - from_m) / (to_m - from_m)))
    return int(depart + share * (arrive - depart))


def expected_stop_id(plan: RoutePlan, now_ms: int) -> str | None:
    """The stop the plan has the driver at or heading to at ``now_ms``."""
    for stop in plan.stops:
        if stop.planned_arrival_ms is not None and stop.planned_arrival_ms >= now_ms:
            return stop.stop_id
    return plan.stops[-1].stop_id if plan.stops else None


def step_behind(
    state: BehindState, lag_ms: int, at_ms: int, details: dict[str, Any], cfg: TrackingConfig
) -> tuple[BehindState, Change | None]:
    """Open above the lag threshold; resolve only once back under the lower one."""
    if not state.is_behind and lag_ms > cfg.behind_schedule_ms:
        return BehindState(True), Change("open", at_ms, basis_ms=at_ms, details=details)
    if state.is_behind and lag_ms < cfg.behind_schedule_resolve_ms:
        return BehindState(False), Change("resolve", at_ms, details=details)
    return state, None
