"""Travel times behind one interface: haversine with a speed profile, or a precomputed matrix."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import numpy as np
import numpy.typing as npt

from decision.errors import InvalidProblem, TravelTimeError
from fleet.geo import haversine_m_array

FloatMatrix = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Place:
    """A point a vehicle can be at: a key (stop_id, driver position id) and coordinates."""

    key: str
    lat: float
    lon: float


@dataclass(frozen=True)
class TravelMatrix:
    """Square matrices over a list of places: durations (seconds) and distances (metres)."""

    durations: FloatMatrix
    distances: FloatMatrix

    def __post_init__(self) -> None:
        d, m = self.durations, self.distances
        if d.ndim != 2 or d.shape[0] != d.shape[1] or d.shape != m.shape:
            raise InvalidProblem(f"travel matrices must be square and alike: {d.shape}, {m.shape}")
        if not (np.isfinite(d).all() and np.isfinite(m).all()) or (d < 0).any() or (m < 0).any():
            raise InvalidProblem("travel matrices must be finite and non-negative")

    @property
    def size(self) -> int:
        """Number of places."""
        return int(self.durations.shape[0])


class TravelTimes(Protocol):
    """Prices every leg between places, departing around ``at_ms``."""

    def matrix(self, places: Sequence[Place], at_ms: int) -> TravelMatrix:
        """Durations and distances between every pair of places."""
        ...


# Urban average speed by hour of day (UTC), as a multiplier of the base speed.
DEFAULT_HOURLY_FACTORS: tuple[float, ...] = (
    1.3,
    1.3,
    1.3,
    1.3,
    1.3,
    1.2,
    1.0,
    0.8,
    0.75,
    0.85,
    0.95,
    0.95,
    0.9,
    0.95,
    0.95,
    0.9,
    0.8,
    0.75,
    0.85,
    1.0,
    1.1,
    1.2,
    1.25,
    1.3,
)


@dataclass(frozen=True)
class HaversineTravel:
    """Great-circle distance times a detour factor, driven at a base speed scaled by the hour."""

    speed_mps: float = 8.0
    detour_factor: float = 1.3
    hourly_factors: tuple[float, ...] = DEFAULT_HOURLY_FACTORS

    def __post_init__(self) -> None:
        if not self.speed_mps > 0 or not self.detour_factor >= 1.0:
            raise InvalidProblem(
                f"speed_mps={self.speed_mps} must be > 0, detour_factor={self.detour_factor} >= 1"
            )
        if len(self.hourly_factors) != 24 or min(self.hourly_factors) <= 0:
            raise InvalidProblem("hourly_factors must be 24 positive multipliers")

    def speed_at(self, at_ms: int) -> float:
        """The driving speed (m/s) at a moment."""
        hour = datetime.fromtimestamp(at_ms / 1000, tz=UTC).hour
        return self.speed_mps * self.hourly_factors[hour]

    def matrix(self, places: Sequence[Place], at_ms: int) -> TravelMatrix:
        """Haversine distances (with detour) and the durations at the hour's speed."""
        lat = np.array([p.lat for p in places], dtype=np.float64)
        lon = np.array([p.lon for p in places], dtype=np.float64)
        dist = haversine_m_array(lat[:, None], lon[:, None], lat[None, :], lon[None, :])
        dist = dist * self.detour_factor
        return TravelMatrix(durations=dist / self.speed_at(at_ms), distances=dist)


@dataclass(frozen=True)
class MatrixTravel:
    """A precomputed matrix by place key: where a road-network engine (OSRM, Valhalla) plugs in.

    A place whose key is not in the matrix raises TravelTimeError; ``fallback`` prices it
    instead when given (e.g. a driver's live position, which no engine precomputed).
    """

    keys: tuple[str, ...]
    durations: FloatMatrix
    distances: FloatMatrix
    fallback: TravelTimes | None = None

    def __post_init__(self) -> None:
        TravelMatrix(self.durations, self.distances)  # same checks
        if len(self.keys) != self.durations.shape[0] or len(set(self.keys)) != len(self.keys):
            raise InvalidProblem("MatrixTravel keys must be unique, one per matrix row")

    @property
    def index(self) -> Mapping[str, int]:
        """Row of each key."""
        return {k: i for i, k in enumerate(self.keys)}

    def matrix(self, places: Sequence[Place], at_ms: int) -> TravelMatrix:
        """The sub-matrix over the places; unknown places through the fallback."""
        index = self.index
        rows = [index.get(p.key) for p in places]
        missing = [p.key for p, r in zip(places, rows, strict=True) if r is None]
        if missing and self.fallback is None:
            raise TravelTimeError(f"no travel times for {', '.join(missing[:5])}")
        if not missing:
            sel = np.array(rows, dtype=np.int64)
            return TravelMatrix(self.durations[np.ix_(sel, sel)], self.distances[np.ix_(sel, sel)])
        assert self.fallback is not None
        base = self.fallback.matrix(places, at_ms)
        dur, dist = base.durations.copy(), base.distances.copy()
        known = [i for i, r in enumerate(rows) if r is not None]
        sel = np.array([rows[i] for i in known], dtype=np.int64)
        pos = np.array(known, dtype=np.int64)
        dur[np.ix_(pos, pos)] = self.durations[np.ix_(sel, sel)]
        dist[np.ix_(pos, pos)] = self.distances[np.ix_(sel, sel)]
        return TravelMatrix(dur, dist)


def euclidean_matrix(xy: npt.ArrayLike) -> TravelMatrix:
    """Plane Euclidean distances, travel time equal to distance (Solomon instances)."""
    pts = np.asarray(xy, dtype=np.float64)
    diff = pts[:, None, :] - pts[None, :, :]
    dist = np.sqrt((diff**2).sum(axis=2))
    return TravelMatrix(durations=dist, distances=dist)
