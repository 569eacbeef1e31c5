"""Driver detail (variable `driver`): track against plan, stops with outcomes and ETAs, alerts."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard, QueryVariable
from grafana_foundation_sdk.models.dashboard import VariableRefresh, VariableSort

from dashboards.panels import (
    map_panel,
    marker_layer,
    new_dashboard,
    number_panels,
    table_panel,
    time_series,
)
from dashboards.sources import CLICKHOUSE, REDIS, ClickHouseFormat, redis_hgetall, sql
from dashboards.sql import PLAN_VERSIONS, bucket, in_range, with_ctes

UID = "fleet-driver-detail"
DRIVER = "'${driver}'"  # the variable, quoted as a ClickHouse string

DRIVERS = f"""
SELECT DISTINCT toString(driver_id) AS driver_id FROM fleet.pings FINAL
WHERE {in_range("ts_ms")} ORDER BY driver_id"""

TRACK = f"""
SELECT fromUnixTimestamp64Milli(ts_ms) AS time, toFloat64(lat) AS latitude,
       toFloat64(lon) AS longitude, speed_mps, route_id
FROM fleet.pings FINAL
WHERE driver_id = {DRIVER} AND {in_range("ts_ms")}
ORDER BY ts_ms"""

# The driver's routes: every route with a plan for the driver (latest version of each).
_PLANNED_STOPS = f"""
latest AS (
    SELECT route_id, argMax(stops, version) AS stops_json, max(version) AS plan_version
    FROM fleet.route_plans FINAL
    WHERE driver_id = {DRIVER}
    GROUP BY route_id
),
planned AS (
    SELECT route_id, plan_version, position AS seq,
           JSONExtractString(s, 'stop_id') AS stop_id,
           JSONExtractFloat(s, 'lat') AS latitude, JSONExtractFloat(s, 'lon') AS longitude,
           JSONExtract(s, 'window_end_ms', 'Nullable(Int64)') AS window_end_ms,
           JSONExtract(s, 'planned_arrival_ms', 'Nullable(Int64)') AS planned_ms
    FROM latest
    ARRAY JOIN JSONExtractArrayRaw(stops_json) AS s, arrayEnumerate(JSONExtractArrayRaw(stops_json))
        AS position
),
outcomes AS (
    SELECT assumeNotNull(route_id) AS route_id, assumeNotNull(stop_id) AS stop_id,
           argMaxIf(type, ts_ms, type IN ('delivered', 'failed')) AS outcome,
           maxIf(ts_ms, type IN ('delivered', 'failed')) AS outcome_ms,
           minIf(ts_ms, type IN ('arrived', 'delivered', 'failed')) AS arrived_ms
    FROM fleet.events FINAL
    WHERE driver_id = {DRIVER} AND route_id IS NOT NULL AND stop_id IS NOT NULL
    GROUP BY route_id, stop_id
),
latest_eta AS (
    SELECT toString(route_id) AS route_id, stop_id,
           argMax(p10_ms, computed_ms) AS p10_ms, argMax(p50_ms, computed_ms) AS p50_ms,
           argMax(p90_ms, computed_ms) AS p90_ms,
           argMax(toString(model_version), computed_ms) AS model_version
    FROM fleet.etas FINAL
    WHERE driver_id = {DRIVER}
    GROUP BY route_id, stop_id
)"""

PLANNED_STOPS = (
    with_ctes(_PLANNED_STOPS)
    + """
SELECT p.stop_id AS stop_id, p.latitude AS latitude, p.longitude AS longitude,
       if(o.outcome = '', 'pending', toString(o.outcome)) AS outcome
FROM planned AS p
LEFT JOIN outcomes AS o ON p.route_id = o.route_id AND p.stop_id = o.stop_id"""
)

STOPS = (
    with_ctes(_PLANNED_STOPS)
    + """
SELECT p.route_id AS route_id, p.plan_version AS plan_version, p.seq AS seq, p.stop_id AS stop_id,
       if(o.outcome = '', 'pending', toString(o.outcome)) AS outcome,
       if(o.outcome_ms = 0, NULL, fromUnixTimestamp64Milli(o.outcome_ms)) AS outcome_at,
       fromUnixTimestamp64Milli(p.planned_ms) AS planned_arrival,
       fromUnixTimestamp64Milli(p.window_end_ms) AS window_end,
       if(e.p50_ms = 0, NULL, fromUnixTimestamp64Milli(e.p50_ms)) AS eta_p50,
       if(e.p10_ms = 0, NULL, fromUnixTimestamp64Milli(e.p10_ms)) AS eta_p10,
       if(e.p90_ms = 0, NULL, fromUnixTimestamp64Milli(e.p90_ms)) AS eta_p90,
       if(e.p50_ms = 0 OR o.arrived_ms = 0, NULL, (e.p50_ms - o.arrived_ms) / 1000)
           AS eta_error_s,
       e.model_version AS model_version
FROM planned AS p
LEFT JOIN outcomes AS o ON p.route_id = o.route_id AND p.stop_id = o.stop_id
LEFT JOIN latest_eta AS e ON p.route_id = e.route_id AND p.stop_id = e.stop_id
ORDER BY p.route_id, p.seq"""
)

TIMELINE = (
    with_ctes(PLAN_VERSIONS)
    + f"""
SELECT time, what, detail FROM (
    SELECT fromUnixTimestamp64Milli(changed_ms) AS time,
           concat('alert ', toString(state), ': ', toString(kind)) AS what,
           concat(alert_id, ' ', details) AS detail
    FROM fleet.alerts FINAL
    WHERE driver_id = {DRIVER} AND {in_range("changed_ms")}
    UNION ALL
    SELECT fromUnixTimestamp64Milli(ingested_ms) AS time,
           concat('plan v', toString(version)) AS what,
           concat(route_id, ': ', arrayStringConcat(stop_ids, ' > ')) AS detail
    FROM plan_versions
    WHERE driver_id = {DRIVER} AND {in_range("ingested_ms")}
    UNION ALL
    SELECT fromUnixTimestamp64Milli(issued_ms) AS time,
           concat(if(applied = 1, 'decision: ', 'proposal: '), toString(cause)) AS what,
           concat(route_id, ' v', toString(version), ', moved: ',
                  arrayStringConcat(moved_stops, ' '), ', by: ', ifNull(caused_by, '')) AS detail
    FROM fleet.decisions FINAL
    WHERE driver_id = {DRIVER} AND {in_range("issued_ms")}
    UNION ALL
    SELECT fromUnixTimestamp64Milli(ts_ms) AS time, concat('event: ', toString(type)) AS what,
           concat(ifNull(stop_id, ''), ' ', ifNull(toString(reason), '')) AS detail
    FROM fleet.events FINAL
    WHERE driver_id = {DRIVER} AND {in_range("ts_ms")}
)
ORDER BY time DESC"""
)

ALERTS_OVER_TIME = f"""
SELECT {bucket("changed_ms")} AS time, concat(toString(kind), ' ', toString(state)) AS change,
       count() AS alerts
FROM fleet.alerts FINAL
WHERE driver_id = {DRIVER} AND {in_range("changed_ms")}
GROUP BY time, change ORDER BY time, change"""


def driver_variable() -> QueryVariable:
    """The `driver` variable: drivers that pinged in the time range."""
    return (
        QueryVariable("driver")
        .label("Driver")
        .datasource(CLICKHOUSE)
        .query(DRIVERS.strip())
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
    )


def dashboard() -> Dashboard:
    """One driver's day."""
    board = new_dashboard(
        UID,
        "Driver detail",
        "One driver: the track against the plan, stops with outcomes and ETAs, alerts and "
        "decisions over time, and the live state.",
        ["dispatch"],
    ).with_variable(driver_variable())
    board.with_panel(
        map_panel(
            "Track against plan",
            "Blue: the driver's fixes in the time range. Stops of the latest plan of each of "
            "the driver's routes, coloured by outcome.",
            CLICKHOUSE,
            [sql(TRACK, ClickHouseFormat.TABLE, "A"), sql(PLANNED_STOPS, ref="B")],
            [
                marker_layer("Track", "A"),
                marker_layer("Planned stops", "B", colour_field="outcome"),
            ],
        )
    )
    board.with_panel(
        table_panel(
            "Live state", "The driver's live hash (Redis fleet:driver:${driver}).", REDIS,
            redis_hgetall("fleet:driver:${driver}"), width=8, height=14,
        )
    )  # fmt: skip
    board.with_panel(
        table_panel(
            "Stops: outcomes and ETAs",
            "Stops of the latest plan in planned order: outcome, planned arrival, window end, "
            "the latest p10/p50/p90 ETA and its model version, and the p50 error once arrived.",
            CLICKHOUSE, sql(STOPS), height=10,
        )
    )  # fmt: skip
    board.with_panel(
        time_series(
            "Alerts over time", "Alert openings and resolutions per interval.", CLICKHOUSE,
            sql(ALERTS_OVER_TIME, ClickHouseFormat.TIME_SERIES),
        )
    )  # fmt: skip
    board.with_panel(
        table_panel(
            "Alerts, events and decisions", "Everything that happened to the driver, newest "
            "first: alert changes, delivery events, decisions (cause, stops moved, what caused "
            "it) and plan versions.",
            CLICKHOUSE, sql(TIMELINE), width=12, height=8,
        )
    )  # fmt: skip
    return number_panels(board)
