"""Geo helpers: great-circle distances and H3 cells (positions at resolution 9, zones at 7)."""

from __future__ import annotations

import math

import h3
import numpy as np
import numpy.typing as npt

EARTH_RADIUS_M = 6_371_008.8
POSITION_RESOLUTION = 9


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres between two WGS84 points."""
    p1 = math.radians(lat1)
    p2 = math.radians(lat2)
    dp = p2 - p1
    dl = math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def haversine_m_array(
    lat1: npt.ArrayLike, lon1: npt.ArrayLike, lat2: npt.ArrayLike, lon2: npt.ArrayLike
) -> npt.NDArray[np.float64]:
    """Vectorised great-circle distances in metres."""
    p1 = np.radians(np.asarray(lat1, dtype=np.float64))
    p2 = np.radians(np.asarray(lat2, dtype=np.float64))
    dl = np.radians(np.asarray(lon2, dtype=np.float64) - np.asarray(lon1, dtype=np.float64))
    a = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return np.asarray(2 * EARTH_RADIUS_M * np.arcsin(np.minimum(1.0, np.sqrt(a))))


def position_cell(lat: float, lon: float) -> str:
    """The resolution-9 H3 cell of a position, as the contract's hex string."""
    return h3.latlng_to_cell(lat, lon, POSITION_RESOLUTION)


def zone_cell(cell: str, resolution: int) -> str:
    """The coarser zone cell (e.g. resolution 7) that contains a finer cell."""
    if h3.get_resolution(cell) <= resolution:
        return cell
    return h3.cell_to_parent(cell, resolution)
