"""Decisions and ETA accuracy: re-plans and their churn; ETA error, coverage, per model."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard

from dashboards.panels import bar_chart, new_dashboard, number_panels, table_panel, time_series
from dashboards.sources import CLICKHOUSE, ClickHouseFormat, sql
from dashboards.sql import ETA_ACTUALS, PLAN_VERSIONS, bucket, in_range, with_ctes

UID = "fleet-decisions-eta"

# A re-plan's churn: stops of the new version that changed place (or are new) against the
# version before it.
_CHURN = """
arrayCount((s, i) -> indexOf(previous_ids, s) != i, stop_ids, arrayEnumerate(stop_ids))"""

REPLANS_OVER_TIME = (
    with_ctes(PLAN_VERSIONS)
    + f"""
SELECT {bucket("ingested_ms")} AS time, count() AS new_versions,
       sum({_CHURN.strip()}) AS stops_moved
FROM plan_versions
WHERE version > 1 AND {in_range("ingested_ms")}
GROUP BY time ORDER BY time"""
)

REPLANS_BY_ROUTE = (
    with_ctes(PLAN_VERSIONS)
    + f"""
SELECT route_id, toString(driver_id) AS driver_id, count() AS replans,
       sum({_CHURN.strip()}) AS stops_moved,
       round(avg({_CHURN.strip()} / greatest(length(stop_ids), 1)) * 100, 1) AS churn_pct,
       max(version) AS latest_version
FROM plan_versions
WHERE version > 1 AND {in_range("ingested_ms")}
GROUP BY route_id, driver_id
ORDER BY replans DESC, route_id"""
)

# The solver's time of a decision, from its rationale (none for a dispatcher's edit).
_SOLVER_MS = "JSONExtract(ifNull(rationale, '{}'), 'solver_ms', 'Nullable(Float64)')"

DECISIONS_BY_CAUSE_OVER_TIME = f"""
SELECT {bucket("issued_ms")} AS time, toString(cause) AS cause, count() AS decisions
FROM fleet.decisions FINAL
WHERE {in_range("issued_ms")}
GROUP BY time, cause ORDER BY time, cause"""

DECISIONS_BY_CAUSE = f"""
SELECT toString(cause) AS cause, count() AS decisions, countIf(applied = 1) AS n_applied,
       countIf(applied = 0) AS n_proposed,
       round(avg(objective_before - objective_after), 1) AS mean_objective_gain,
       round(sum(objective_before - objective_after), 1) AS total_objective_gain,
       round(avg(length(moved_stops)), 2) AS mean_stops_moved,
       quantile(0.5)({_SOLVER_MS}) AS solver_ms_p50,
       quantile(0.95)({_SOLVER_MS}) AS solver_ms_p95
FROM fleet.decisions FINAL
WHERE {in_range("issued_ms")}
GROUP BY cause ORDER BY decisions DESC, cause"""

GAIN_AND_SOLVER_TIME = f"""
SELECT {bucket("issued_ms")} AS time,
       sum(ifNull(objective_before - objective_after, 0)) AS objective_gain,
       max({_SOLVER_MS}) AS solver_ms_max, sum(length(moved_stops)) AS stops_moved
FROM fleet.decisions FINAL
WHERE {in_range("issued_ms")}
GROUP BY time ORDER BY time"""

LATEST_DECISIONS = f"""
SELECT fromUnixTimestamp64Milli(issued_ms) AS issued, route_id, toString(driver_id) AS driver_id,
       version, if(applied = 1, 'applied', concat('proposed ', proposal_id)) AS status,
       toString(cause) AS cause, caused_by, arrayStringConcat(moved_stops, ', ') AS moved_stops,
       round(objective_before - objective_after, 1) AS objective_gain,
       {_SOLVER_MS} AS solver_ms
FROM fleet.decisions FINAL
WHERE {in_range("issued_ms")}
ORDER BY issued_ms DESC
LIMIT 200"""

_ERRORS = """
       count() AS predictions, round(avg(abs(error_s)), 1) AS mae_s,
       round(avg(error_s), 1) AS bias_s, round(100 * avg(covered), 1) AS p10_p90_coverage_pct"""

ETA_ERROR_BY_HOUR = (
    with_ctes(ETA_ACTUALS)
    + f"""
SELECT {bucket("arrived_ms")} AS time, round(avg(abs(error_s)), 1) AS mae_s,
       round(avg(error_s), 1) AS bias_s
FROM eta_actuals GROUP BY time ORDER BY time"""
)

COVERAGE_OVER_TIME = (
    with_ctes(ETA_ACTUALS)
    + f"""
SELECT {bucket("arrived_ms")} AS time, round(100 * avg(covered), 1) AS p10_p90_coverage_pct
FROM eta_actuals GROUP BY time ORDER BY time"""
)

ETA_BY_ZONE = (
    with_ctes(ETA_ACTUALS)
    + f"""
SELECT zone,{_ERRORS}
FROM eta_actuals GROUP BY zone ORDER BY predictions DESC, zone"""
)

ETA_BY_HORIZON = (
    with_ctes(ETA_ACTUALS)
    + f"""
SELECT multiIf(horizon_min < 10, '0-10 min', horizon_min < 30, '10-30 min',
               horizon_min < 60, '30-60 min', horizon_min < 120, '60-120 min', '120+ min')
           AS horizon,
       min(horizon_min) AS from_min,{_ERRORS}
FROM eta_actuals GROUP BY horizon ORDER BY from_min"""
)

ETA_BY_MODEL = (
    with_ctes(ETA_ACTUALS)
    + f"""
SELECT model_version,{_ERRORS}
FROM eta_actuals GROUP BY model_version ORDER BY model_version"""
)


def dashboard() -> Dashboard:
    """Are the decisions and the predictions any good."""
    board = new_dashboard(
        UID,
        "Decisions and ETA accuracy",
        "Re-plans and their churn; ETA p50 error, bias and p10-p90 coverage by arrival hour, "
        "zone, horizon and model version. An ETA counts when made before the stop's first "
        "arrival (or outcome) event in the time range.",
        ["dispatch", "data-science"],
    )
    board.with_panel(
        time_series(
            "Decisions by cause", "Route changes issued per interval (applied and proposed) "
            "by cause: re-plan triggers, assignments (assign), dispatcher edits (dispatch:*).",
            CLICKHOUSE, sql(DECISIONS_BY_CAUSE_OVER_TIME, ClickHouseFormat.TIME_SERIES),
        )
    )  # fmt: skip
    board.with_panel(
        time_series(
            "Objective gain, solver time, stops moved", "Per interval: the objective the "
            "decisions gained (before - after), the slowest solve, the stops they moved.",
            CLICKHOUSE, sql(GAIN_AND_SOLVER_TIME, ClickHouseFormat.TIME_SERIES),
        )
    )  # fmt: skip
    board.with_panel(
        table_panel(
            "Decision quality by cause", "Applied and proposed decisions per cause: objective "
            "gain, churn (stops moved) and solver time (p50, p95, ms).", CLICKHOUSE,
            sql(DECISIONS_BY_CAUSE), height=7,
        )
    )  # fmt: skip
    board.with_panel(
        table_panel(
            "Latest decisions (why a stop moved)", "Newest first: route, cause and what caused "
            "it, applied or waiting as a proposal, the stops moved, the gain, the solver time.",
            CLICKHOUSE, sql(LATEST_DECISIONS), height=9,
        )
    )  # fmt: skip
    board.with_panel(
        time_series(
            "Re-plans and stops moved", "New plan versions (re-plans and edits) per interval "
            "and the stops they moved.", CLICKHOUSE,
            sql(REPLANS_OVER_TIME, ClickHouseFormat.TIME_SERIES),
        )
    )  # fmt: skip
    board.with_panel(
        table_panel(
            "Re-plans by route (churn)", "Per route: new versions, stops moved and the mean "
            "share of a version's stops that moved.", CLICKHOUSE, sql(REPLANS_BY_ROUTE),
            width=12, height=8,
        )
    )  # fmt: skip
    board.with_panel(
        time_series(
            "ETA p50 error by arrival time", "Mean absolute error and bias (p50 - actual; "
            "positive = predicted late) of the predictions for stops reached per interval.",
            CLICKHOUSE, sql(ETA_ERROR_BY_HOUR, ClickHouseFormat.TIME_SERIES), unit="s",
        )
    )  # fmt: skip
    board.with_panel(
        time_series(
            "p10-p90 coverage", "Share of actual arrivals inside the predicted p10-p90 "
            "interval (80% when calibrated).", CLICKHOUSE,
            sql(COVERAGE_OVER_TIME, ClickHouseFormat.TIME_SERIES), unit="percent",
        )
    )  # fmt: skip
    board.with_panel(
        bar_chart(
            "ETA error by horizon", "Error and coverage by how far ahead the prediction was "
            "made.", CLICKHOUSE, sql(ETA_BY_HORIZON), width=8,
        )
    )  # fmt: skip
    board.with_panel(
        table_panel(
            "ETA error by model version", "Compare models: error, bias, coverage.",
            CLICKHOUSE, sql(ETA_BY_MODEL), width=8, height=8,
        )
    )  # fmt: skip
    board.with_panel(
        table_panel(
            "ETA error by zone (H3 res 7)", "Where predictions miss.", CLICKHOUSE,
            sql(ETA_BY_ZONE), width=8, height=8,
        )
    )  # fmt: skip
    return number_panels(board)
