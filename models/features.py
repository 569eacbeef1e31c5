"""ETA features of (driver, remaining stop) pairs: one code path for training and the stream.

Everything here is plain numpy over one route at one anchor (the driver's latest fix):
``PlanContext`` is built once per plan version, ``route_features`` turns an anchor into
one row per remaining stop. Training (models/dataset.py) and the stream call the same two.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import h3
import numpy as np
import numpy.typing as npt

from fleet.geo import haversine_m_array
from fleet.records import RoutePlan
from fleet.route_geometry import RouteLine

FloatArray = npt.NDArray[np.float64]

# Numeric columns of FeatureBatch.numeric, in order.
NUMERIC_FEATURES = (
    "remaining_m",
    "stops_before",
    "service_before_s",
    "hour_of_day",
    "day_of_week",
    "recent_speed_mps",
    "zone_speed_origin_mps",
    "zone_speed_dest_mps",
    "path_travel_s",
)
# Categorical columns (zone cells at the zone resolution), encoded by the model.
ZONE_FEATURES = ("origin_zone", "dest_zone")
FEATURES = NUMERIC_FEATURES + ZONE_FEATURES

RECENT_WINDOW_MS = 15 * 60_000  # the driver's recent speed looks this far back
MOVING_MPS = 2.0  # segments slower than this are stops or GPS jitter, not driving
MIN_MOVING_SEGMENTS = 3


def column(name: str) -> int:
    """Index of a numeric feature in FeatureBatch.numeric."""
    return NUMERIC_FEATURES.index(name)


@dataclass(frozen=True, slots=True)
class FeatureBatch:
    """Feature rows: numeric columns (NaN = missing) and zone cells (empty = unknown)."""

    numeric: FloatArray  # shape (n, len(NUMERIC_FEATURES))
    origin_zone: npt.NDArray[np.str_]
    dest_zone: npt.NDArray[np.str_]

    def __post_init__(self) -> None:
        n = self.numeric.shape[0]
        if self.numeric.ndim != 2 or self.numeric.shape[1] != len(NUMERIC_FEATURES):
            raise ValueError(f"numeric features must have shape (n, {len(NUMERIC_FEATURES)})")
        if len(self.origin_zone) != n or len(self.dest_zone) != n:
            raise ValueError(f"zones must have {n} rows like the numeric features")

    def __len__(self) -> int:
        return int(self.numeric.shape[0])

    def col(self, name: str) -> FloatArray:
        """One numeric column (a view)."""
        return self.numeric[:, column(name)]

    def take(self, index: npt.NDArray[Any]) -> FeatureBatch:
        """Rows by index or boolean mask (copies)."""
        return FeatureBatch(self.numeric[index], self.origin_zone[index], self.dest_zone[index])

    @staticmethod
    def concat(batches: Sequence[FeatureBatch]) -> FeatureBatch:
        """Rows of several batches, in order."""
        if not batches:
            return empty_batch()
        return FeatureBatch(
            np.concatenate([b.numeric for b in batches]),
            np.concatenate([b.origin_zone for b in batches]),
            np.concatenate([b.dest_zone for b in batches]),
        )


def empty_batch() -> FeatureBatch:
    """A batch without rows."""
    return FeatureBatch(
        np.zeros((0, len(NUMERIC_FEATURES))), np.array([], dtype=str), np.array([], dtype=str)
    )


@dataclass(frozen=True, slots=True)
class ZoneSpeeds:
    """Historical driving speed per (zone, hour of day), with per-hour and global fallbacks."""

    by_zone_hour: Mapping[tuple[str, int], float]
    by_hour: Mapping[int, float]
    overall: float

    def lookup(self, zones: Sequence[str], hours: npt.ArrayLike) -> FloatArray:
        """Speed of each (zone, hour); an unseen zone takes its hour's, then the overall."""
        hs = np.asarray(hours, dtype=np.float64)
        out = np.empty(len(zones), dtype=np.float64)
        for i, (zone, h) in enumerate(zip(zones, hs, strict=True)):
            hour = int(h) % 24 if math.isfinite(h) else -1
            speed = self.by_zone_hour.get((zone, hour))
            if speed is None:
                speed = self.by_hour.get(hour, self.overall)
            out[i] = speed
        return out

    @staticmethod
    def from_rows(rows: Sequence[tuple[str, int, float, float]]) -> ZoneSpeeds:
        """From (zone, hour, metres, seconds) sums of moving segments."""
        by_zone_hour: dict[tuple[str, int], float] = {}
        hour_m: dict[int, float] = {}
        hour_s: dict[int, float] = {}
        total_m = total_s = 0.0
        for zone, hour, metres, seconds in rows:
            if seconds <= 0:
                continue
            by_zone_hour[(zone, int(hour))] = metres / seconds
            hour_m[hour] = hour_m.get(hour, 0.0) + metres
            hour_s[hour] = hour_s.get(hour, 0.0) + seconds
            total_m += metres
            total_s += seconds
        by_hour = {h: hour_m[h] / hour_s[h] for h in hour_m}
        overall = total_m / total_s if total_s > 0 else 8.0
        return ZoneSpeeds(by_zone_hour, by_hour, overall)


@dataclass(frozen=True, slots=True)
class PlanContext:
    """What features need from one plan version, computed once."""

    route_id: str
    stop_ids: tuple[str, ...]
    stop_along_m: FloatArray
    service_s: FloatArray
    stop_zones: npt.NDArray[np.str_]
    line: RouteLine
    zone_resolution: int

    @staticmethod
    def from_plan(plan: RoutePlan, zone_resolution: int) -> PlanContext:
        """Stop positions along the planned line, service times and zones of a plan."""
        line = RouteLine.from_plan(plan)
        return PlanContext(
            route_id=plan.route_id,
            stop_ids=tuple(s.stop_id for s in plan.stops),
            stop_along_m=line.stop_positions(plan),
            service_s=np.array([max(0.0, s.service_s) for s in plan.stops], dtype=np.float64),
            stop_zones=np.array(
                [h3.latlng_to_cell(s.lat, s.lon, zone_resolution) for s in plan.stops], dtype=str
            ),
            line=line,
            zone_resolution=zone_resolution,
        )

    def index_of(self, stop_id: str) -> int | None:
        """Position of a stop in the plan, or None."""
        try:
            return self.stop_ids.index(stop_id)
        except ValueError:
            return None


@dataclass(frozen=True, slots=True)
class Anchor:
    """The driver's latest fix: the moment predictions are made for (event time)."""

    ts_ms: int
    lat: float
    lon: float
    along_m: float
    recent_speed_mps: float = math.nan
    service_left_s: float = 0.0  # still to serve at the stop the driver is at


def recent_speed_mps(
    ts_ms: npt.ArrayLike, lat: npt.ArrayLike, lon: npt.ArrayLike, anchor_ms: int
) -> float:
    """The driver's moving speed over the last RECENT_WINDOW_MS of fixes (NaN if unknown).

    Only segments faster than MOVING_MPS count, so time spent at stops does not drag it down.
    """
    t = np.asarray(ts_ms, dtype=np.float64)
    keep = (t <= anchor_ms) & (t > anchor_ms - RECENT_WINDOW_MS)
    t = t[keep]
    if len(t) < MIN_MOVING_SEGMENTS + 1:
        return math.nan
    la = np.asarray(lat, dtype=np.float64)[keep]
    lo = np.asarray(lon, dtype=np.float64)[keep]
    d = haversine_m_array(la[:-1], lo[:-1], la[1:], lo[1:])
    dt = np.diff(t) / 1000.0
    with np.errstate(divide="ignore", invalid="ignore"):
        moving = (dt > 0) & (d / dt > MOVING_MPS)
    if np.count_nonzero(moving) < MIN_MOVING_SEGMENTS:
        return math.nan
    return float(d[moving].sum() / dt[moving].sum())


def _hour_and_weekday(ts_ms: int) -> tuple[float, float]:
    moment = datetime.fromtimestamp(ts_ms / 1000, tz=UTC)
    return moment.hour + moment.minute / 60.0, float(moment.weekday())


def route_features(
    ctx: PlanContext, anchor: Anchor, remaining: Sequence[int], speeds: ZoneSpeeds
) -> FeatureBatch:
    """One feature row per remaining stop (plan indices, in visiting order) at the anchor."""
    idx = np.asarray(sorted(remaining), dtype=np.int64)
    n = len(idx)
    if n == 0:
        return empty_batch()
    hour, weekday = _hour_and_weekday(anchor.ts_ms)
    origin = h3.latlng_to_cell(anchor.lat, anchor.lon, ctx.zone_resolution)
    service = ctx.service_s[idx]
    service_before = anchor.service_left_s + np.concatenate([[0.0], np.cumsum(service)[:-1]])
    dest_zones = ctx.stop_zones[idx]
    origin_zones = np.array([origin] * n, dtype=str)
    hours = np.full(n, hour)
    numeric = np.empty((n, len(NUMERIC_FEATURES)), dtype=np.float64)
    numeric[:, column("remaining_m")] = np.maximum(0.0, ctx.stop_along_m[idx] - anchor.along_m)
    numeric[:, column("stops_before")] = np.arange(n, dtype=np.float64)
    numeric[:, column("service_before_s")] = service_before
    numeric[:, column("hour_of_day")] = hour
    numeric[:, column("day_of_week")] = weekday
    numeric[:, column("recent_speed_mps")] = anchor.recent_speed_mps
    numeric[:, column("zone_speed_origin_mps")] = speeds.lookup([origin] * n, hours)
    dest_speed = speeds.lookup(list(dest_zones), hours)
    numeric[:, column("zone_speed_dest_mps")] = dest_speed
    # Driving time leg by leg, each leg at the historical speed of the zone it ends in.
    legs = np.diff(numeric[:, column("remaining_m")], prepend=0.0)
    numeric[:, column("path_travel_s")] = np.cumsum(np.maximum(legs, 0.0) / dest_speed)
    return FeatureBatch(numeric, origin_zones, dest_zones.astype(str))
