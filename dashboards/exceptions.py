"""Exceptions: the queue of open alerts and failed deliveries, and what was done about each."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard

from dashboards.panels import extract_json, new_dashboard, number_panels, table_panel, time_series
from dashboards.sources import CLICKHOUSE, REDIS, ClickHouseFormat, redis_raw, sql
from dashboards.sql import (
    NOW_MS,
    OPEN_ALERTS,
    ROUTE_CHANGES,
    bucket,
    decision_since,
    in_range,
    with_ctes,
)

UID = "fleet-exceptions"

OPEN_ALERT_QUEUE = (
    with_ctes(OPEN_ALERTS, ROUTE_CHANGES)
    + f"""
SELECT a.alert_id AS alert_id, toString(a.kind) AS kind, toString(a.severity) AS severity,
       toString(a.driver_id) AS driver_id, a.route_id AS route_id,
       coalesce(nullIf(JSONExtractString(a.details, 'stop_id'), ''),
                nullIf(JSONExtractString(a.details, 'expected_stop_id'), '')) AS stop_id,
       nullIf(JSONExtractString(a.details, 'reason'), '') AS reason,
       fromUnixTimestamp64Milli(a.opened_ms) AS opened,
       intDiv({NOW_MS} - a.opened_ms, 60000) AS age_min,{decision_since("a.opened_ms")}
FROM open_alerts AS a
LEFT JOIN route_changes AS c ON a.route_id = c.route_id
GROUP BY alert_id, kind, severity, driver_id, route_id, stop_id, reason, opened, age_min,
         a.opened_ms
ORDER BY a.opened_ms"""
)

FAILED_DELIVERIES = (
    with_ctes(ROUTE_CHANGES)
    + f"""
, failed AS (
    SELECT event_id, driver_id, route_id, stop_id, reason, ts_ms
    FROM fleet.events FINAL
    WHERE type = 'failed' AND {in_range("ts_ms")}
),
later AS (
    SELECT route_id, stop_id, argMax(type, ts_ms) AS outcome
    FROM fleet.events FINAL
    WHERE type IN ('delivered', 'failed')
    GROUP BY route_id, stop_id
)
SELECT f.event_id AS event_id, toString(f.driver_id) AS driver_id, f.route_id AS route_id,
       f.stop_id AS stop_id, f.reason AS reason, fromUnixTimestamp64Milli(f.ts_ms) AS failed_at,
       intDiv({NOW_MS} - f.ts_ms, 60000) AS age_min,
       any(toString(l.outcome)) AS outcome_now,{decision_since("f.ts_ms")}
FROM failed AS f
LEFT JOIN later AS l ON f.route_id = l.route_id AND f.stop_id = l.stop_id
LEFT JOIN route_changes AS c ON f.route_id = c.route_id
GROUP BY event_id, driver_id, route_id, stop_id, reason, failed_at, age_min, f.ts_ms
ORDER BY f.ts_ms DESC"""
)

ALERTS_OPENED = f"""
SELECT {bucket("opened_ms")} AS time, toString(kind) AS kind, count() AS opened
FROM fleet.alerts FINAL
WHERE state = 'open' AND {in_range("opened_ms")}
GROUP BY time, kind
ORDER BY time, kind"""


def dashboard() -> Dashboard:
    """What needs a dispatcher's attention now."""
    board = new_dashboard(
        UID,
        "Exceptions",
        "Open alerts and failed deliveries: driver, stop, reason, age, and the decision taken.",
        ["dispatch"],
    )
    board.with_panel(
        table_panel(
            "Open alerts (live)",
            "Every alert open now, straight from the live read model (Redis hash "
            "fleet:alerts:open, one JSON Alert per field).",
            REDIS, redis_raw("HVALS fleet:alerts:open"), height=8,
            transformations=[extract_json("Value")],
        )
    )  # fmt: skip
    board.with_panel(
        table_panel(
            "Open alert queue with decisions",
            "Alerts opened and not resolved (history), oldest first, with the stop and reason "
            "from their details and the first plan version issued for the route since the "
            "alert opened ('none yet': act with `fleet dispatch ...`).",
            CLICKHOUSE, sql(OPEN_ALERT_QUEUE),
        )
    )  # fmt: skip
    board.with_panel(
        table_panel(
            "Failed deliveries",
            "Failed delivery attempts in the time range, newest first: reason, the stop's "
            "latest outcome (a later delivery clears it) and the decision taken.",
            CLICKHOUSE, sql(FAILED_DELIVERIES),
        )
    )  # fmt: skip
    board.with_panel(
        time_series(
            "Alerts opened by kind", "Alerts opened per interval and kind.", CLICKHOUSE,
            sql(ALERTS_OPENED, ClickHouseFormat.TIME_SERIES), width=24,
        )
    )  # fmt: skip
    return number_panels(board)
