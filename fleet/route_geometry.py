"""Metric projection of GPS fixes onto a route's planned line: distance along and cross-track."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fleet.geo import EARTH_RADIUS_M
from fleet.records import RoutePlan

FloatArray = npt.NDArray[np.float64]

# Fixes whose distance to two parts of the line differs by less than this are ambiguous
# (out-and-back roads, loops); the part nearest the previous along-route position wins.
AMBIGUITY_M = 30.0


@dataclass(frozen=True, slots=True)
class Projection:
    """Where fixes fall on a route line, in metres (one entry per fix)."""

    along_m: FloatArray
    cross_m: FloatArray


def plan_vertices(plan: RoutePlan) -> list[tuple[float, float]]:
    """The planned line as (lat, lon): the plan's path, else depot then stops in order."""
    if plan.path is not None and len(plan.path) >= 2:
        return [(float(lat), float(lon)) for lat, lon in plan.path]
    points = [(plan.depot.lat, plan.depot.lon)] if plan.depot is not None else []
    points.extend((s.lat, s.lon) for s in plan.stops)
    return points


class RouteLine:
    """A polyline in a local equirectangular frame (metres), built once per plan version.

    An equirectangular frame centred on the route keeps errors far below GPS noise over
    the tens of kilometres a delivery route spans, and makes projection plain vector maths.
    """

    def __init__(self, vertices: list[tuple[float, float]]) -> None:
        if not vertices:
            raise ValueError("a route line needs at least one vertex")
        coords = np.asarray(vertices, dtype=np.float64)
        self._lat0 = float(coords[:, 0].mean())
        self._lon0 = float(coords[:, 1].mean())
        self._ky = EARTH_RADIUS_M * math.pi / 180.0
        self._kx = self._ky * math.cos(math.radians(self._lat0))
        xy = self.to_xy(coords[:, 0], coords[:, 1])
        keep = np.ones(len(xy), dtype=bool)
        keep[1:] = np.any(np.diff(xy, axis=0) != 0.0, axis=1)  # drop repeated vertices
        xy = xy[keep]
        if len(xy) == 1:  # a single point still projects: everything is at along 0
            xy = np.vstack([xy, xy])
        self._start = xy[:-1]
        self._delta = np.diff(xy, axis=0)
        self._len2 = np.einsum("ij,ij->i", self._delta, self._delta)
        seg_len = np.sqrt(self._len2)
        self._cum = np.concatenate([[0.0], np.cumsum(seg_len)])
        self.length_m = float(self._cum[-1])

    @classmethod
    def from_plan(cls, plan: RoutePlan) -> RouteLine:
        """The line of a plan (path, or depot and stops)."""
        return cls(plan_vertices(plan))

    def to_xy(self, lats: npt.ArrayLike, lons: npt.ArrayLike) -> FloatArray:
        """WGS84 degrees → local metres (x east, y north), shape (n, 2)."""
        lat = np.asarray(lats, dtype=np.float64)
        lon = np.asarray(lons, dtype=np.float64)
        return np.stack([(lon - self._lon0) * self._kx, (lat - self._lat0) * self._ky], axis=-1)

    def _distances(self, xy: FloatArray) -> tuple[FloatArray, FloatArray]:
        """(distance, along) of every point to every segment, each of shape (n, segments)."""
        rel = xy[:, None, :] - self._start[None, :, :]
        dot = np.einsum("nsk,sk->ns", rel, self._delta)
        with np.errstate(invalid="ignore", divide="ignore"):
            t = np.where(self._len2 > 0, dot / self._len2, 0.0)
        t = np.clip(t, 0.0, 1.0)
        foot = self._start[None, :, :] + t[:, :, None] * self._delta[None, :, :]
        dist = np.linalg.norm(xy[:, None, :] - foot, axis=2)
        along = self._cum[:-1][None, :] + t * np.sqrt(self._len2)[None, :]
        return dist, along

    def project(
        self, lats: npt.ArrayLike, lons: npt.ArrayLike, hint_along_m: float | None = None
    ) -> Projection:
        """Project fixes in order; ambiguous fixes follow the previous along-route position."""
        xy = self.to_xy(np.atleast_1d(lats), np.atleast_1d(lons))
        dist, along = self._distances(xy)
        best = dist.min(axis=1)
        nearest = dist.argmin(axis=1)
        rows = np.arange(len(xy))
        out_along = along[rows, nearest]
        ambiguous = np.count_nonzero(dist <= best[:, None] + AMBIGUITY_M, axis=1) > 1
        hint = hint_along_m
        for i in range(len(xy)):
            if hint is not None and ambiguous[i]:
                candidates = dist[i] <= best[i] + AMBIGUITY_M
                gap = np.where(candidates, np.abs(along[i] - hint), np.inf)
                out_along[i] = along[i, int(gap.argmin())]
            hint = float(out_along[i])
        return Projection(along_m=out_along, cross_m=best)

    def project_one(
        self, lat: float, lon: float, hint_along_m: float | None = None
    ) -> tuple[float, float]:
        """(along_m, cross_m) of one fix."""
        p = self.project([lat], [lon], hint_along_m)
        return float(p.along_m[0]), float(p.cross_m[0])

    def stop_positions(self, plan: RoutePlan) -> FloatArray:
        """Distance along the line of each stop, in visiting order (never decreasing)."""
        positions = np.zeros(len(plan.stops), dtype=np.float64)
        hint = 0.0
        for i, stop in enumerate(plan.stops):
            along, _ = self.project_one(stop.lat, stop.lon, hint)
            hint = max(hint, along)
            positions[i] = hint
        return positions
