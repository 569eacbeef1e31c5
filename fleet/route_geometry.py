"""Metric projection of GPS fixes onto a route's planned line: distance along and cross-track."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fleet.geo import EARTH_RADIUS_M
from fleet.records import RoutePlan

FloatArray = npt.NDArray[np.float64]

# Fixes whose distance to two parts of the line differs by less than this are ambiguous
# (out-and-back roads, loops); the part nearest the previous along-route position wins.
AMBIGUITY_M = 30.0
_STOP_CHUNK = 256  # stops projected per numpy pass (bounds the (stops, segments) arrays)


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
        # Segments as separate x and y arrays: projection is a few element-wise operations
        # on (fixes, segments) arrays, cheap even for the one or two fixes of a batch.
        # The rows live in one (7, segments) array, so a batch of lines is joined with one
        # concatenate (project_each).
        delta = np.diff(xy, axis=0)
        packed = np.empty((7, len(delta)), dtype=np.float64)
        packed[0], packed[1] = xy[:-1, 0], xy[:-1, 1]
        packed[2], packed[3] = delta[:, 0], delta[:, 1]
        self._sx, self._sy, self._dx, self._dy = packed[0], packed[1], packed[2], packed[3]
        len2 = self._dx * self._dx + self._dy * self._dy
        np.divide(1.0, len2, out=packed[4], where=len2 > 0)
        packed[4][len2 <= 0] = 0.0
        packed[5] = np.sqrt(len2)
        self._inv_len2, self._seg_len = packed[4], packed[5]
        self._cum = np.concatenate([[0.0], np.cumsum(self._seg_len)])
        packed[6] = self._cum[:-1]
        self._seg_start = packed[6]
        self._packed = packed
        self._frame = (self._lon0, self._kx, self._lat0, self._ky)
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

    def _distances(self, x: FloatArray, y: FloatArray) -> tuple[FloatArray, FloatArray]:
        """(distance, along) of every point to every segment, each of shape (n, segments)."""
        rel_x = x[:, None] - self._sx
        rel_y = y[:, None] - self._sy
        t = (rel_x * self._dx + rel_y * self._dy) * self._inv_len2  # 0 on empty segments
        np.clip(t, 0.0, 1.0, out=t)
        dist = np.hypot(rel_x - t * self._dx, rel_y - t * self._dy)  # point to its foot
        along = self._seg_start + t * self._seg_len
        return dist, along

    def project(
        self, lats: npt.ArrayLike, lons: npt.ArrayLike, hint_along_m: float | None = None
    ) -> Projection:
        """Project fixes in order; ambiguous fixes follow the previous along-route position."""
        x = (np.asarray(lons, dtype=np.float64).reshape(-1) - self._lon0) * self._kx
        y = (np.asarray(lats, dtype=np.float64).reshape(-1) - self._lat0) * self._ky
        dist, along = self._distances(x, y)
        rows = np.arange(len(x))
        nearest = dist.argmin(axis=1)
        best = dist[rows, nearest]
        out_along = along[rows, nearest]
        near = dist <= (best + AMBIGUITY_M)[:, None]
        ambiguous = near.sum(axis=1) > 1
        if hint_along_m is None and not ambiguous.any():
            return Projection(along_m=out_along, cross_m=best)
        hint = hint_along_m
        for i in range(len(x)):
            if hint is not None and ambiguous[i]:
                gap = np.where(near[i], np.abs(along[i] - hint), np.inf)
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
        """Distance along the line of each stop, in visiting order (never decreasing).

        Each stop is projected as ``project_one(stop, hint)`` would, the hint being the
        furthest position so far; the distances to every segment come from one numpy pass
        (the same element-wise arithmetic), and only ambiguous stops look at the hint.
        """
        n = len(plan.stops)
        positions = np.zeros(n, dtype=np.float64)
        for lo in range(0, n, _STOP_CHUNK):
            stops = plan.stops[lo : lo + _STOP_CHUNK]
            lons = np.fromiter((s.lon for s in stops), np.float64, len(stops))
            lats = np.fromiter((s.lat for s in stops), np.float64, len(stops))
            x = (lons - self._lon0) * self._kx
            y = (lats - self._lat0) * self._ky
            dist, along = self._distances(x, y)
            rows = np.arange(len(stops))
            nearest = dist.argmin(axis=1)
            best = dist[rows, nearest]
            first = along[rows, nearest].tolist()
            near = dist <= (best + AMBIGUITY_M)[:, None]
            ambiguous = (near.sum(axis=1) > 1).tolist()
            hint = float(positions[lo - 1]) if lo else 0.0
            for i in range(len(stops)):
                at = first[i]
                if ambiguous[i]:
                    gap = np.where(near[i], np.abs(along[i] - hint), np.inf)
                    at = float(along[i, int(gap.argmin())])
                hint = max(hint, at)
                positions[lo + i] = hint
        return positions


def project_each(
    lines: Sequence[RouteLine],
    lats: Sequence[float],
    lons: Sequence[float],
    hints: Sequence[float | None],
) -> Projection:
    """One fix per line, each with its own hint: ``project_many`` with one fix each."""
    return project_many(lines, [1] * len(lines), lats, lons, hints)


def project_many(
    lines: Sequence[RouteLine],
    counts: Sequence[int],
    lats: Sequence[float],
    lons: Sequence[float],
    hints: Sequence[float | None],
) -> Projection:
    """Several fixes per line, in one pass over all their segments.

    Line ``i`` owns the next ``counts[i]`` fixes (in order); the answers are those of
    ``lines[i].project(its lats, its lons, hints[i])``, element for element. Only fixes near
    two parts of their line are resolved one by one, in order, from the fix before them.
    """
    n_fixes = len(lats)
    if n_fixes == 0:
        empty = np.zeros(0, dtype=np.float64)
        return Projection(along_m=empty, cross_m=empty)
    per_line = np.asarray(counts, dtype=np.intp)
    fix_line = np.repeat(np.arange(len(lines)), per_line)  # the line of each fix
    packed = [line._packed for line in lines]
    seg_count = np.fromiter((p.shape[1] for p in packed), dtype=np.intp, count=len(lines))
    seg_first = np.zeros(len(lines), dtype=np.intp)
    np.cumsum(seg_count[:-1], out=seg_first[1:])
    rows_per_fix = seg_count[fix_line]
    starts = np.zeros(n_fixes, dtype=np.intp)  # first row of each fix
    np.cumsum(rows_per_fix[:-1], out=starts[1:])
    owner = np.repeat(np.arange(n_fixes), rows_per_fix)  # the fix of each row
    seg = np.arange(len(owner)) - starts[owner] + seg_first[fix_line][owner]
    lon0, kx, lat0, ky = np.array([line._frame for line in lines], dtype=np.float64).T
    sx, sy, dx, dy, inv_len2, seg_len, seg_start = np.concatenate(packed, axis=1)[:, seg]

    line_of = fix_line
    x = (np.asarray(lons, dtype=np.float64) - lon0[line_of]) * kx[line_of]
    y = (np.asarray(lats, dtype=np.float64) - lat0[line_of]) * ky[line_of]
    rel_x = x[owner] - sx
    rel_y = y[owner] - sy
    t = (rel_x * dx + rel_y * dy) * inv_len2
    np.clip(t, 0.0, 1.0, out=t)
    dist = np.hypot(rel_x - t * dx, rel_y - t * dy)
    along = seg_start + t * seg_len
    best = np.minimum.reduceat(dist, starts)
    out = np.minimum.reduceat(np.where(dist == best[owner], along, np.inf), starts)
    near = dist <= (best + AMBIGUITY_M)[owner]
    ambiguous = np.add.reduceat(near.astype(np.intp), starts) > 1
    if not ambiguous.any():
        return Projection(along_m=out, cross_m=best)
    # A line's first fix follows the given hint: all of them at once. Along the line never
    # decreases with the segment index, so among equal gaps the smallest along is the first
    # segment's, as argmin picks in ``project``.
    first_fix = np.zeros(len(lines), dtype=np.intp)
    np.cumsum(per_line[:-1], out=first_fix[1:])
    has_fixes = per_line > 0
    hint_of_fix = np.full(n_fixes, np.nan)
    hint_of_fix[first_fix[has_fixes]] = np.array(
        [np.nan if h is None else h for h, on in zip(hints, has_fixes, strict=True) if on]
    )
    follow = ambiguous & ~np.isnan(hint_of_fix)
    if follow.any():
        gap = np.where(near, np.abs(along - hint_of_fix[owner]), np.inf)
        closest = np.minimum.reduceat(gap, starts)
        chosen = np.minimum.reduceat(np.where(gap == closest[owner], along, np.inf), starts)
        out = np.where(follow, chosen, out)
    # Later fixes follow the fix before them: in order, one by one (few are ambiguous).
    is_first = np.zeros(n_fixes, dtype=bool)
    is_first[first_fix[has_fixes]] = True
    ends = starts + rows_per_fix
    for f in np.flatnonzero(ambiguous & ~is_first).tolist():
        hint = float(out[f - 1])
        r0, r1 = int(starts[f]), int(ends[f])
        gap_f = np.where(near[r0:r1], np.abs(along[r0:r1] - hint), np.inf)
        out[f] = along[r0 + int(gap_f.argmin())]
    return Projection(along_m=out, cross_m=best)
