"""Completion: delivered against planned stops by driver, by zone and by time window of day."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard

from dashboards.panels import bar_chart, new_dashboard, number_panels, stat_panel, table_panel
from dashboards.sources import CLICKHOUSE, sql
from dashboards.sql import report

UID = "fleet-completion"

_DESCRIBE = (
    "Stops of each route's latest plan whose planned time (planned arrival, else window "
    "start, else shift start) falls in the time range; outcome = the stop's last delivered "
    "or failed event, else pending. Same query as `fleet history report {}`."
)

TOTALS = f"""
SELECT sum(planned) AS stops_planned, sum(delivered) AS stops_delivered,
       sum(failed) AS stops_failed, stops_planned - stops_delivered - stops_failed AS pending,
       round(100 * sum(delivered) / sum(planned), 1) AS completion_pct
FROM ({report("completion_by_driver")})"""

BY_DRIVER = report("completion_by_driver")
BY_ZONE = report("completion_by_zone")
BY_HOUR = f"""
SELECT toString(hour_of_day) AS hour_utc, completion_pct, planned, delivered, failed
FROM ({report("completion_by_hour_of_day")})
ORDER BY hour_of_day"""


def dashboard() -> Dashboard:
    """How far each route, zone and time window has come."""
    board = new_dashboard(
        UID,
        "Completion",
        "Delivered, failed and pending stops by driver, zone (H3 res 7) and hour of day (UTC).",
        ["dispatch"],
    )
    board.with_panel(
        stat_panel(
            "Stops: planned, delivered, failed, pending, completion %",
            _DESCRIBE.format("completion_by_driver"), CLICKHOUSE, sql(TOTALS), width=24,
            height=5,
        )
    )  # fmt: skip
    board.with_panel(
        bar_chart(
            "Completion by time window (hour of day, UTC)",
            _DESCRIBE.format("completion_by_hour_of_day"), CLICKHOUSE, sql(BY_HOUR),
            unit="percent", width=24,
        )
    )  # fmt: skip
    board.with_panel(
        table_panel(
            "Completion by driver", _DESCRIBE.format("completion_by_driver"), CLICKHOUSE,
            sql(BY_DRIVER), width=12, height=12,
        )
    )  # fmt: skip
    board.with_panel(
        table_panel(
            "Completion by zone", _DESCRIBE.format("completion_by_zone"), CLICKHOUSE,
            sql(BY_ZONE), width=12, height=12,
        )
    )  # fmt: skip
    return number_panels(board)
