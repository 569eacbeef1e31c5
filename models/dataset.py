"""Training and evaluation examples from history: plans, pings and stop outcomes.

ClickHouse does the joins (each route's latest plan, its planned stops joined to their
arrival and completion events, the routes' pings, the zone-hour speeds of moving
segments); Python then walks each route's pings and, every ANCHOR_EVERY_MS, asks
``models.features.route_features`` (the code the stream uses) for the remaining stops,
labelled with the actual arrival.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt
import pyarrow as pa

from fleet.history.store import HistoryStore
from fleet.records import LatLon, RoutePlan, Stop
from models.features import (
    RECENT_WINDOW_MS,
    Anchor,
    FeatureBatch,
    PlanContext,
    ZoneSpeeds,
    recent_speed_mps,
    route_features,
)

ANCHOR_EVERY_MS = 5 * 60_000
MOVING_MPS = 2.0
MAX_GAP_S = 120

_PLANS_SQL = """
SELECT route_id, argMax(driver_id, version) AS driver_id, max(version) AS latest,
       argMax(stops, version) AS stops_json, argMax(depot, version) AS depot_json,
       argMax(path, version) AS path_json, argMax(shift_start_ms, version) AS start_ms
FROM fleet.route_plans
GROUP BY route_id
HAVING start_ms >= {since_ms:Int64} AND start_ms < {until_ms:Int64}
ORDER BY route_id
"""

# Every planned stop of those plans with its first arrival and first completion (NULL when
# none): the labels. A completion without an arrival event counts as the arrival. An
# unmatched stop has zero counts (the engine fills defaults), hence the counts.
_STOP_OUTCOMES_SQL = """
WITH plans AS (
    SELECT route_id, argMax(stops, version) AS stops_json,
           argMax(shift_start_ms, version) AS start_ms
    FROM fleet.route_plans GROUP BY route_id
    HAVING start_ms >= {since_ms:Int64} AND start_ms < {until_ms:Int64}
),
outcomes AS (
    SELECT assumeNotNull(route_id) AS route_id, assumeNotNull(stop_id) AS stop_id,
           minIf(ts_ms, type = 'arrived') AS arrived, countIf(type = 'arrived') AS n_arrived,
           minIf(ts_ms, type IN ('delivered', 'failed')) AS done,
           countIf(type IN ('delivered', 'failed')) AS n_done
    FROM fleet.events
    WHERE type IN ('arrived', 'delivered', 'failed') AND stop_id IS NOT NULL
      AND route_id IN (SELECT route_id FROM plans)
    GROUP BY route_id, stop_id
)
SELECT p.route_id AS route_id, tupleElement(s, 'stop_id') AS stop_id,
       if(o.n_arrived > 0, o.arrived, if(o.n_done > 0, o.done, NULL)) AS arrived_ms,
       if(o.n_done > 0, o.done, NULL) AS done_ms
FROM plans AS p
ARRAY JOIN JSONExtract(p.stops_json, 'Array(Tuple(stop_id String))') AS s
LEFT JOIN outcomes AS o ON p.route_id = o.route_id AND tupleElement(s, 'stop_id') = o.stop_id
"""

_PINGS_SQL = """
SELECT toString(route_id) AS route_id, ts_ms, toFloat64(lat) AS lat, toFloat64(lon) AS lon
FROM fleet.pings
WHERE route_id IN (
    SELECT route_id FROM fleet.route_plans GROUP BY route_id
    HAVING argMax(shift_start_ms, version) >= {since_ms:Int64}
       AND argMax(shift_start_ms, version) < {until_ms:Int64})
  AND ts_ms >= {since_ms:Int64}
ORDER BY route_id, ts_ms
"""

# Metres and seconds of moving segments (consecutive pings of one driver) per zone and hour.
_ZONE_SPEEDS_SQL = """
SELECT h3ToString(geoToH3(lat_f, lon_f, {zone_res:UInt8})) AS zone,
       toHour(toDateTime(intDiv(ts_ms, 1000), 'UTC')) AS hour,
       sum(seg_m) AS metres, sum(seg_s) AS seconds
FROM (
    SELECT ts_ms, toFloat64(lat) AS lat_f, toFloat64(lon) AS lon_f,
           greatCircleDistance(lagInFrame(lon_f) OVER w, lagInFrame(lat_f) OVER w,
                               lon_f, lat_f) AS seg_m,
           (ts_ms - lagInFrame(ts_ms) OVER w) / 1000 AS seg_s,
           lagInFrame(ts_ms) OVER w AS prev_ms
    FROM fleet.pings
    WHERE ts_ms >= {since_ms:Int64} AND ts_ms < {until_ms:Int64}
    WINDOW w AS (PARTITION BY driver_id ORDER BY ts_ms ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)
)
WHERE prev_ms > 0 AND seg_s > 0 AND seg_s <= {max_gap_s:Int64}
  AND seg_m / seg_s > {moving_mps:Float64} AND seg_m / seg_s < 45
GROUP BY zone, hour
"""


@dataclass(frozen=True, slots=True)
class Examples:
    """Labelled feature rows with where and when each comes from."""

    batch: FeatureBatch
    actual_s: npt.NDArray[np.float64]
    anchor_ms: npt.NDArray[np.int64]
    arrival_ms: npt.NDArray[np.int64]
    route_id: npt.NDArray[np.str_]
    stop_id: npt.NDArray[np.str_]

    def __len__(self) -> int:
        return len(self.actual_s)

    def take(self, index: npt.NDArray[Any]) -> Examples:
        """Rows by index or boolean mask."""
        return Examples(
            self.batch.take(index),
            self.actual_s[index],
            self.anchor_ms[index],
            self.arrival_ms[index],
            self.route_id[index],
            self.stop_id[index],
        )


def _json_rows(store: HistoryStore, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    data = store.query(sql, "JSONEachRow", params)
    decoder = msgspec.json.Decoder()
    return [decoder.decode(line) for line in data.splitlines() if line.strip()]


def _arrow(store: HistoryStore, sql: str, params: dict[str, Any]) -> pa.Table:
    data = store.query(sql, "ArrowStream", params)
    if not data:
        return pa.table({})
    return pa.ipc.open_stream(data).read_all()


def _decode_or_none(text: str | None, kind: Any) -> Any:
    return None if not text else msgspec.json.decode(text, type=kind)


def load_plans(store: HistoryStore, since_ms: int, until_ms: int) -> list[RoutePlan]:
    """Latest version of every route whose shift starts in [since_ms, until_ms)."""
    params = {"since_ms": since_ms, "until_ms": until_ms}
    plans = []
    for row in _json_rows(store, _PLANS_SQL, params):
        plans.append(
            RoutePlan(
                route_id=row["route_id"],
                driver_id=row["driver_id"],
                version=int(row["latest"]),
                stops=msgspec.json.decode(row["stops_json"], type=list[Stop]),
                depot=_decode_or_none(row["depot_json"], LatLon),
                shift_start_ms=row["start_ms"],
                path=_decode_or_none(row["path_json"], list[tuple[float, float]]),
            )
        )
    return plans


def load_zone_speeds(
    store: HistoryStore, since_ms: int, until_ms: int, zone_resolution: int
) -> ZoneSpeeds:
    """Historical moving speed per (zone, hour) from the pings of a period."""
    params = {
        "since_ms": since_ms,
        "until_ms": until_ms,
        "zone_res": zone_resolution,
        "max_gap_s": MAX_GAP_S,
        "moving_mps": MOVING_MPS,
    }
    rows = _json_rows(store, _ZONE_SPEEDS_SQL, params)
    return ZoneSpeeds.from_rows(
        [(r["zone"], int(r["hour"]), float(r["metres"]), float(r["seconds"])) for r in rows]
    )


def _outcomes(
    store: HistoryStore, since_ms: int, until_ms: int
) -> dict[str, dict[str, tuple[float, float]]]:
    out: dict[str, dict[str, tuple[float, float]]] = {}
    params = {"since_ms": since_ms, "until_ms": until_ms}
    for row in _json_rows(store, _STOP_OUTCOMES_SQL, params):
        arrived = math.nan if row["arrived_ms"] is None else float(row["arrived_ms"])
        done = math.nan if row["done_ms"] is None else float(row["done_ms"])
        out.setdefault(row["route_id"], {})[row["stop_id"]] = (arrived, done)
    return out


def _route_pings(
    store: HistoryStore, since_ms: int, until_ms: int
) -> Iterator[tuple[str, npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64]]]:
    table = _arrow(store, _PINGS_SQL, {"since_ms": since_ms, "until_ms": until_ms})
    if table.num_rows == 0:
        return
    routes = table.column("route_id").to_numpy(zero_copy_only=False).astype(str)
    ts = table.column("ts_ms").to_numpy().astype(np.int64)
    lat = table.column("lat").to_numpy().astype(np.float64)
    lon = table.column("lon").to_numpy().astype(np.float64)
    cuts = np.flatnonzero(routes[1:] != routes[:-1]) + 1
    for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(routes)], strict=True):
        yield str(routes[lo]), ts[lo:hi], lat[lo:hi], lon[lo:hi]


def route_examples(
    ctx: PlanContext,
    outcomes: dict[str, tuple[float, float]],
    ts: npt.NDArray[np.int64],
    lat: npt.NDArray[np.float64],
    lon: npt.NDArray[np.float64],
    speeds: ZoneSpeeds,
) -> list[tuple[FeatureBatch, npt.NDArray[np.float64], int, list[str]]]:
    """(features, actual arrival ms, anchor ms, stop ids) at every anchor of one route."""
    arrived = np.array([outcomes.get(s, (math.nan, math.nan))[0] for s in ctx.stop_ids])
    done = np.array([outcomes.get(s, (math.nan, math.nan))[1] for s in ctx.stop_ids])
    if not np.isfinite(arrived).any() or len(ts) < 2:
        return []
    # The driver never moves back along the plan: progress is the running maximum.
    along = np.maximum.accumulate(ctx.line.project(lat, lon, 0.0).along_m)
    last_arrival = np.nanmax(arrived)
    buckets = ts // ANCHOR_EVERY_MS
    anchors = np.flatnonzero(np.r_[True, buckets[1:] != buckets[:-1]] & (ts < last_arrival))
    out = []
    for i in anchors:
        t = int(ts[i])
        with np.errstate(invalid="ignore"):
            passed = (arrived <= t) | (done <= t)
            serving = np.flatnonzero((arrived <= t) & ~(done <= t))
        remaining = np.flatnonzero(~passed)
        labelled = np.isfinite(arrived[remaining])
        if not labelled.any():
            continue
        left = 0.0
        if len(serving):
            k = int(serving[-1])
            left = max(0.0, float(ctx.service_s[k]) - (t - float(arrived[k])) / 1000.0)
        j0 = int(np.searchsorted(ts, t - RECENT_WINDOW_MS, side="right"))
        speed = recent_speed_mps(ts[j0 : i + 1], lat[j0 : i + 1], lon[j0 : i + 1], t)
        anchor = Anchor(t, float(lat[i]), float(lon[i]), float(along[i]), speed, left)
        batch = route_features(ctx, anchor, remaining.tolist(), speeds).take(labelled)
        stops = remaining[labelled]
        out.append((batch, arrived[stops], t, [ctx.stop_ids[k] for k in stops]))
    return out


def load_examples(
    store: HistoryStore, since_ms: int, until_ms: int, speeds: ZoneSpeeds, zone_resolution: int
) -> Examples:
    """Every labelled (anchor, remaining stop) of the routes whose shift starts in the period."""
    plans = {p.route_id: p for p in load_plans(store, since_ms, until_ms)}
    outcomes = _outcomes(store, since_ms, until_ms)
    batches, actual, anchor_ms, arrival_ms, routes, stops = [], [], [], [], [], []
    for route_id, ts, lat, lon in _route_pings(store, since_ms, until_ms):
        plan = plans.get(route_id)
        if plan is None or not plan.stops:
            continue
        ctx = PlanContext.from_plan(plan, zone_resolution)
        for batch, arrivals, t, stop_ids in route_examples(
            ctx, outcomes.get(route_id, {}), ts, lat, lon, speeds
        ):
            batches.append(batch)
            actual.append((arrivals - t) / 1000.0)
            anchor_ms.append(np.full(len(stop_ids), t, dtype=np.int64))
            arrival_ms.append(arrivals.astype(np.int64))
            routes.append(np.full(len(stop_ids), route_id))
            stops.append(np.array(stop_ids))
    if not batches:
        return Examples(
            FeatureBatch.concat([]),
            *(np.zeros(0, dtype=t) for t in (np.float64, np.int64, np.int64, str, str)),
        )  # type: ignore[arg-type]
    return Examples(
        FeatureBatch.concat(batches),
        np.concatenate(actual),
        np.concatenate(anchor_ms),
        np.concatenate(arrival_ms),
        np.concatenate(routes).astype(str),
        np.concatenate(stops).astype(str),
    )
