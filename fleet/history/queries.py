"""The reporting queries over history, in one place, shared by both backends.

Every query takes ``{since_ms:Int64}`` and ``{until_ms:Int64}`` (a half-open period) and,
where it places things on the map, ``{zone_res:UInt8}`` (H3 resolution of a zone). Reads go
through ``HistoryStore.query``, which applies FINAL: each identity counts once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from fleet.history.store import HistoryStore

ZONE_RESOLUTION = 7
HOUR_MS = 3_600_000

# Latest version of every plan, one row per planned stop, with the stop's outcome from the
# last delivered/failed event of that stop ('pending' when there is none).
_STOP_OUTCOMES = """
WITH plans AS (
    SELECT route_id,
           argMax(driver_id, version) AS driver_id,
           argMax(stops, version) AS stops_json,
           argMax(shift_start_ms, version) AS shift_start_ms
    FROM fleet.route_plans
    GROUP BY route_id
),
stops AS (
    SELECT route_id, driver_id,
           tupleElement(s, 'stop_id') AS stop_id,
           tupleElement(s, 'lat') AS lat,
           tupleElement(s, 'lon') AS lon,
           coalesce(tupleElement(s, 'planned_arrival_ms'), tupleElement(s, 'window_start_ms'),
                    shift_start_ms) AS planned_ms
    FROM plans
    ARRAY JOIN JSONExtract(stops_json, 'Array(Tuple(stop_id String, lat Float64, lon Float64,
        window_start_ms Nullable(Int64), planned_arrival_ms Nullable(Int64)))') AS s
),
outcomes AS (
    SELECT assumeNotNull(route_id) AS route_id, assumeNotNull(stop_id) AS stop_id,
           argMax(type, ts_ms) AS outcome
    FROM fleet.events
    WHERE type IN ('delivered', 'failed') AND route_id IS NOT NULL AND stop_id IS NOT NULL
    GROUP BY route_id, stop_id
),
stop_outcomes AS (
    SELECT st.driver_id AS driver_id, st.lat AS lat, st.lon AS lon, st.planned_ms AS planned_ms,
           if(o.outcome = '', 'pending', toString(o.outcome)) AS outcome
    FROM stops AS st
    LEFT JOIN outcomes AS o ON st.route_id = o.route_id AND st.stop_id = o.stop_id
    WHERE st.planned_ms >= {since_ms:Int64} AND st.planned_ms < {until_ms:Int64}
)
"""

_COMPLETION_COLUMNS = """
       count() AS planned,
       countIf(outcome = 'delivered') AS delivered,
       countIf(outcome = 'failed') AS failed,
       round(100 * delivered / planned, 1) AS completion_pct
FROM stop_outcomes
"""


# Each route's latest planned stops with their zone, and each stop's first arrival (or
# outcome): what ETA accuracy joins predictions to (also models/accuracy.py).
ETA_STOPS_AND_ARRIVALS = """
WITH plans AS (
    SELECT route_id, argMax(stops, version) AS stops_json
    FROM fleet.route_plans GROUP BY route_id
),
stops AS (
    SELECT route_id, tupleElement(s, 'stop_id') AS stop_id,
           h3ToString(geoToH3(tupleElement(s, 'lat'), tupleElement(s, 'lon'),
                              {zone_res:UInt8})) AS zone
    FROM plans
    ARRAY JOIN JSONExtract(stops_json, 'Array(Tuple(stop_id String, lat Float64, lon Float64))')
        AS s
),
arrivals AS (
    SELECT assumeNotNull(route_id) AS route_id, assumeNotNull(stop_id) AS stop_id,
           min(ts_ms) AS arrived_ms
    FROM fleet.events
    WHERE type IN ('arrived', 'delivered', 'failed')
      AND route_id IS NOT NULL AND stop_id IS NOT NULL
    GROUP BY route_id, stop_id
)
"""


@dataclass(frozen=True, slots=True)
class Report:
    """A named reporting query and what its rows mean."""

    name: str
    description: str
    sql: str


REPORTS: dict[str, Report] = {
    r.name: r
    for r in (
        Report(
            "completion_by_driver",
            "Planned stops (latest plan version) delivered, failed and completion % per driver",
            _STOP_OUTCOMES
            + "SELECT driver_id,"
            + _COMPLETION_COLUMNS
            + "GROUP BY driver_id ORDER BY driver_id",
        ),
        Report(
            "completion_by_zone",
            "Completion % per H3 zone of the stop's location",
            _STOP_OUTCOMES
            + "SELECT h3ToString(geoToH3(lat, lon, {zone_res:UInt8})) AS zone,"
            + _COMPLETION_COLUMNS
            + "GROUP BY zone ORDER BY zone",
        ),
        Report(
            "completion_by_hour_of_day",
            "Completion % per hour of day (UTC) of the stop's planned time",
            _STOP_OUTCOMES
            + "SELECT toHour(toDateTime(intDiv(planned_ms, 1000), 'UTC')) AS hour_of_day,"
            + _COMPLETION_COLUMNS
            + "GROUP BY hour_of_day ORDER BY hour_of_day",
        ),
        Report(
            "pings_per_minute",
            "Pings and distinct drivers per minute of ping time",
            """
SELECT intDiv(ts_ms, 60000) * 60000 AS minute_ms, count() AS pings,
       uniqExact(driver_id) AS drivers
FROM fleet.pings
WHERE ts_ms >= {since_ms:Int64} AND ts_ms < {until_ms:Int64}
GROUP BY minute_ms ORDER BY minute_ms""",
        ),
        Report(
            "alerts_per_hour_by_kind",
            "Alerts opened per hour and kind",
            """
SELECT intDiv(opened_ms, 3600000) * 3600000 AS hour_ms, toString(kind) AS kind,
       count() AS opened
FROM fleet.alerts
WHERE state = 'open' AND opened_ms >= {since_ms:Int64} AND opened_ms < {until_ms:Int64}
GROUP BY hour_ms, kind ORDER BY hour_ms, kind""",
        ),
        Report(
            "dead_letters_by_reason",
            "Rejected inputs per source topic and reason",
            """
SELECT toString(source_topic) AS source_topic, toString(reason) AS reason,
       count() AS dead_letters
FROM fleet.dead_letters
WHERE received_ms >= {since_ms:Int64} AND received_ms < {until_ms:Int64}
GROUP BY source_topic, reason ORDER BY dead_letters DESC, source_topic, reason""",
        ),
        Report(
            "eta_error_by_hour_and_zone",
            "p50 error (mean absolute, bias) and p10-p90 coverage of the ETAs computed before "
            "each stop's arrival, per hour of arrival and H3 zone of the stop",
            ETA_STOPS_AND_ARRIVALS
            + """SELECT intDiv(a.arrived_ms, 3600000) * 3600000 AS hour_ms, st.zone AS zone,
       count() AS predictions,
       round(avg(abs(e.p50_ms - a.arrived_ms)) / 1000, 1) AS mae_s,
       round(avg(e.p50_ms - a.arrived_ms) / 1000, 1) AS bias_s,
       round(100 * avg(a.arrived_ms BETWEEN e.p10_ms AND e.p90_ms), 1) AS coverage_pct
FROM fleet.etas AS e
INNER JOIN arrivals AS a ON toString(e.route_id) = a.route_id AND e.stop_id = a.stop_id
INNER JOIN stops AS st ON a.route_id = st.route_id AND a.stop_id = st.stop_id
WHERE e.computed_ms <= a.arrived_ms
  AND a.arrived_ms >= {since_ms:Int64} AND a.arrived_ms < {until_ms:Int64}
GROUP BY hour_ms, zone ORDER BY hour_ms, zone""",
        ),
    )
}

# The time column that --since/--to of `fleet history export` filters on, per table.
TIME_COLUMNS = {
    "pings": "ts_ms",
    "events": "ts_ms",
    "alerts": "changed_ms",
    "etas": "computed_ms",
    "route_plans": "ifNull(shift_start_ms, ingested_ms)",
    "dead_letters": "received_ms",
}
# Fixed-point coordinates leave as floats, which every Parquet reader handles natively.
EXPORT_CASTS = {"pings": " REPLACE (toFloat64(lat) AS lat, toFloat64(lon) AS lon)"}


def export_sql(table: str) -> str:
    """All rows of a table in a period, ordered as stored."""
    return (
        f"SELECT *{EXPORT_CASTS.get(table, '')} FROM fleet.{table} "
        f"WHERE {TIME_COLUMNS[table]} >= {{since_ms:Int64}} "
        f"AND {TIME_COLUMNS[table]} < {{until_ms:Int64}}"
    )


def run_report(
    store: HistoryStore,
    name: str,
    since_ms: int,
    until_ms: int,
    zone_resolution: int = ZONE_RESOLUTION,
) -> list[dict[str, Any]]:
    """Rows of one report over [since_ms, until_ms) as dicts."""
    params: dict[str, Any] = {"since_ms": since_ms, "until_ms": until_ms}
    sql = REPORTS[name].sql
    if "{zone_res:" in sql:
        params["zone_res"] = zone_resolution
    data = store.query(sql, "JSONEachRow", params)
    return [json.loads(line) for line in data.splitlines() if line.strip()]
