"""The Redis live read model: writing positions and zone supply, and the spatial queries on it.

Keys (contract "Read models", plus the project's own zone index):
- ``fleet:pos``                GEO set, member driver_id at its latest position;
- ``fleet:pos:ts``             sorted set driver_id -> ts_ms of that position (for expiry);
- ``fleet:driver:{id}``        hash: lat, lon, ts_ms, h3, zone, route_id, seq, status, ...;
- ``fleet:zone:{cell}``        sorted set driver_id -> ts_ms, drivers in an H3 zone cell;
- ``fleet:zones``              sorted set zone cell -> last update ts_ms.
Writes are last-writer-wins on ts_ms (a Lua script), so replays never move a marker back.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import h3
import redis
import shapely
from shapely.geometry import shape

from fleet.errors import FleetError
from fleet.geo import haversine_m
from fleet.ingest import LivePosition
from fleet.settings import Settings

POS_KEY = "fleet:pos"
POS_TS_KEY = "fleet:pos:ts"
ALERTS_OPEN_KEY = "fleet:alerts:open"
ZONES_KEY = "fleet:zones"


def driver_key(driver_id: str) -> str:
    return f"fleet:driver:{driver_id}"


def zone_key(cell: str) -> str:
    return f"fleet:zone:{cell}"


# ARGV: ttl_s, then the positions as one string: 12 values per driver, each value ended by
# the unit separator \x1f (ids, numbers and H3 cells never contain it). One argument instead
# of 12 per ping: redis-py packs each argument in Python (8 % of the worker at 10x).
# Skips drivers whose stored ts_ms is newer. Returns {positions written, Redis TIME in ms}.
# Four commands per position (HMGET, HSET, EXPIRE, the zone's ZADD); the position index, the
# freshness index and the zone list get one variadic command per batch (in chunks under Lua's
# unpack limit): 17 instead of 21 us of Redis per ping in 2,000-ping batches.
FIELD_END = "\x1f"
WRITE_POSITIONS_LUA = """
local ttl = tonumber(ARGV[1])
local v = {}
for value in string.gmatch(ARGV[2], '([^\\031]*)\\031') do v[#v + 1] = value end
local written = 0
local geo = {}
local seen = {}
local zones = {}
for i = 1, #v, 12 do
  local id = v[i]
  local ts = tonumber(v[i + 1])
  local key = 'fleet:driver:' .. id
  local old = redis.call('HMGET', key, 'ts_ms', 'zone', 'status')
  if (not old[1]) or tonumber(old[1]) <= ts then
    local zone = v[i + 5]
    local fields = {'lat', v[i + 2], 'lon', v[i + 3], 'ts_ms', v[i + 1],
      'h3', v[i + 4], 'zone', zone, 'seq', v[i + 7], 'accuracy_m', v[i + 8],
      'speed_mps', v[i + 9], 'heading_deg', v[i + 10], 'updated_ms', v[i + 11]}
    if v[i + 6] ~= '' then fields[#fields + 1] = 'route_id'; fields[#fields + 1] = v[i + 6] end
    if not old[3] then fields[#fields + 1] = 'status'; fields[#fields + 1] = 'idle' end
    redis.call('HSET', key, unpack(fields))
    redis.call('EXPIRE', key, ttl)
    geo[#geo + 1] = v[i + 3]; geo[#geo + 1] = v[i + 2]; geo[#geo + 1] = id
    seen[#seen + 1] = ts; seen[#seen + 1] = id
    if old[2] and old[2] ~= zone then redis.call('ZREM', 'fleet:zone:' .. old[2], id) end
    redis.call('ZADD', 'fleet:zone:' .. zone, ts, id)
    if (zones[zone] or ts) <= ts then zones[zone] = ts end
    written = written + 1
  end
end
for j = 1, #geo, 3000 do
  redis.call('GEOADD', 'fleet:pos', unpack(geo, j, math.min(j + 2999, #geo)))
end
for j = 1, #seen, 2000 do
  redis.call('ZADD', 'fleet:pos:ts', unpack(seen, j, math.min(j + 1999, #seen)))
end
local zs = {}
for zone, ts in pairs(zones) do zs[#zs + 1] = ts; zs[#zs + 1] = zone end
for j = 1, #zs, 2000 do
  redis.call('ZADD', 'fleet:zones', unpack(zs, j, math.min(j + 1999, #zs)))
end
local now = redis.call('TIME')
return {written, tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)}
"""

# ARGV: position cutoff ms, zone cutoff ms. Removes expired markers and zone members.
SWEEP_LUA = """
local expired = redis.call('ZRANGEBYSCORE', 'fleet:pos:ts', '-inf', '(' .. ARGV[1])
for _, id in ipairs(expired) do
  redis.call('ZREM', 'fleet:pos', id)
  redis.call('ZREM', 'fleet:pos:ts', id)
end
local removed = 0
for _, zone in ipairs(redis.call('ZRANGE', 'fleet:zones', 0, -1)) do
  local key = 'fleet:zone:' .. zone
  removed = removed + redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. ARGV[2])
  if redis.call('ZCARD', key) == 0 then redis.call('ZREM', 'fleet:zones', zone) end
end
return {#expired, removed}
"""


def _fmt(value: float | int | None) -> str:
    return "" if value is None else repr(value)


def position_args(positions: Iterable[LivePosition], now_ms: int) -> list[str]:
    """The write script's ARGV after the TTL: every position's 12 values in one string."""
    end = FIELD_END
    now = f"{now_ms}{end}"
    parts = []
    for pos in positions:
        p = pos.ping
        parts.append(
            f"{p.driver_id}{end}{p.ts_ms}{end}{p.lat!r}{end}{p.lon!r}{end}{pos.h3}{end}"
            f"{pos.zone}{end}{p.route_id or ''}{end}{_fmt(p.seq)}{end}{_fmt(p.accuracy_m)}{end}"
            f"{_fmt(p.speed_mps)}{end}{_fmt(p.heading_deg)}{end}{now}"
        )
    return ["".join(parts)]


@dataclass(frozen=True)
class DriverRow:
    """One driver as the spatial queries return it."""

    driver_id: str
    fields: dict[str, str]
    distance_m: float | None = None

    def as_dict(self) -> dict[str, Any]:
        row: dict[str, Any] = {"driver_id": self.driver_id, **self.fields}
        if self.distance_m is not None:
            row["distance_m"] = round(self.distance_m, 1)
        return row


class LiveReader:
    """Spatial and zone queries over the live read model (synchronous, for CLI and tools)."""

    def __init__(self, client: redis.Redis) -> None:
        self.r = client

    @classmethod
    def from_url(cls, url: str) -> LiveReader:
        return cls(redis.Redis.from_url(url, decode_responses=True))

    @classmethod
    def from_settings(cls, settings: Settings) -> LiveReader:
        """The read model of ``settings``, with its Redis user, password and TLS CA."""
        from fleet.clients import redis_client

        return cls(redis_client(settings, decode_responses=True))

    def rows(self, driver_ids: Sequence[str]) -> list[DriverRow]:
        pipe = self.r.pipeline(transaction=False)
        for d in driver_ids:
            pipe.hgetall(driver_key(d))
        return [DriverRow(d, f) for d, f in zip(driver_ids, pipe.execute(), strict=True) if f]

    def driver(self, driver_id: str) -> dict[str, str]:
        return dict(self.r.hgetall(driver_key(driver_id)))  # type: ignore[arg-type]

    def near(
        self, lat: float, lon: float, radius_m: float, limit: int | None = None
    ) -> list[DriverRow]:
        """Drivers within radius_m of a point, nearest first."""
        if not (math.isfinite(radius_m) and radius_m > 0):
            raise FleetError(f"radius_m={radius_m} must be a positive number")
        found: list[list[Any]] = self.r.geosearch(  # type: ignore[assignment]
            POS_KEY,
            longitude=lon,
            latitude=lat,
            radius=radius_m,
            unit="m",
            sort="ASC",
            withdist=True,
            count=limit,
        )
        rows = self.rows([m for m, _ in found])
        dist = {m: float(d) for m, d in found}
        return [DriverRow(r.driver_id, r.fields, dist[r.driver_id]) for r in rows]

    def in_cell(self, cell: str) -> list[DriverRow]:
        """Drivers whose live position lies in an H3 cell of any resolution."""
        if not h3.is_valid_cell(cell):
            raise FleetError(f"cell={cell!r} is not a valid H3 cell")
        res = h3.get_resolution(cell)
        lat, lon = h3.cell_to_latlng(cell)
        radius = max(haversine_m(lat, lon, *v) for v in h3.cell_to_boundary(cell)) * 1.05
        candidates = self.near(lat, lon, radius)
        return [
            r
            for r in candidates
            if h3.latlng_to_cell(float(r.fields["lat"]), float(r.fields["lon"]), res) == cell
        ]

    def within(self, geojson: Mapping[str, Any]) -> list[DriverRow]:
        """Drivers inside a GeoJSON polygon (Feature, FeatureCollection or geometry).

        Pre-filter: a bounding-box GEO search, then H3 polyfill (resolution 9) accepts drivers
        in cells inside the polygon outright; only the rest get an exact shapely test.
        """
        geom = _polygon_from_geojson(geojson)
        minx, miny, maxx, maxy = geom.bounds
        clat, clon = (miny + maxy) / 2, (minx + maxx) / 2
        width = max(haversine_m(clat, minx, clat, maxx), 1.0)
        height = max(haversine_m(miny, clon, maxy, clon), 1.0)
        found: list[str] = self.r.geosearch(  # type: ignore[assignment]
            POS_KEY,
            longitude=clon,
            latitude=clat,
            width=width * 1.01,
            height=height * 1.01,
            unit="m",
        )
        inner = set(h3.geo_to_cells(shapely.geometry.mapping(geom), 9))
        shapely.prepare(geom)
        inside: dict[str, bool] = {}
        out = []
        for row in self.rows(list(found)):
            cell = row.fields.get("h3", "")
            if cell in inner and cell not in inside:
                # A cell whose centre is inside may still straddle the edge.
                inside[cell] = _cell_inside(geom, cell)
            if inside.get(cell) or geom.contains(
                shapely.Point(float(row.fields["lon"]), float(row.fields["lat"]))
            ):
                out.append(row)
        return out

    def zone_counts(self, since_ms: int) -> dict[str, int]:
        """Drivers per zone cell with a position at or after since_ms."""
        zones: list[str] = self.r.zrange(ZONES_KEY, 0, -1)  # type: ignore[assignment]
        pipe = self.r.pipeline(transaction=False)
        for z in zones:
            pipe.zcount(zone_key(z), since_ms, "+inf")
        return {z: int(n) for z, n in zip(zones, pipe.execute(), strict=True) if int(n) > 0}

    def open_alerts(self) -> dict[str, dict[str, Any]]:
        raw: dict[str, str] = self.r.hgetall(ALERTS_OPEN_KEY)  # type: ignore[assignment]
        return {k: json.loads(v) for k, v in raw.items()}


def _cell_inside(geom: shapely.Geometry, cell: str) -> bool:
    boundary = [(lon, lat) for lat, lon in h3.cell_to_boundary(cell)]
    return bool(geom.contains(shapely.Polygon(boundary)))


def _polygon_from_geojson(data: Mapping[str, Any]) -> shapely.Geometry:
    if data.get("type") == "FeatureCollection":
        geoms = [shape(f["geometry"]) for f in data.get("features", [])]
        geom = shapely.union_all(geoms) if geoms else None
    elif data.get("type") == "Feature":
        geom = shape(data["geometry"])
    else:
        geom = shape(data)
    if geom is None or geom.is_empty or geom.geom_type not in ("Polygon", "MultiPolygon"):
        raise FleetError("the area must be a GeoJSON Polygon or MultiPolygon")
    return geom
