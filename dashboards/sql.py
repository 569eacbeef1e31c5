"""SQL building blocks over the history tables, written with the ClickHouse plugin's macros.

History keeps times as epoch milliseconds (Int64), so a time column is wrapped in
``fromUnixTimestamp64Milli`` before a macro sees it. Every table read says FINAL: Grafana's
queries do not get the store's ``final = 1`` setting, and an identity must count once.
"""

from __future__ import annotations

from fleet.history.queries import (
    _STOP_OUTCOMES,
    ETA_STOPS_AND_ARRIVALS,
    REPORTS,
    ZONE_RESOLUTION,
)

# The dashboard's time range as epoch milliseconds.
FROM_MS = "toUnixTimestamp64Milli($__fromTime_ms)"
TO_MS = "toUnixTimestamp64Milli($__toTime_ms)"
NOW_MS = "toUnixTimestamp64Milli(now64(3))"


def in_range(column_ms: str) -> str:
    """`column_ms` (epoch ms) inside the dashboard's time range."""
    return f"$__timeFilter_ms(fromUnixTimestamp64Milli({column_ms}))"


def bucket(column_ms: str) -> str:
    """`column_ms` rounded down to the panel's interval: the time column of a series."""
    return f"$__timeInterval(fromUnixTimestamp64Milli({column_ms}))"


def over_range(parameterised: str) -> str:
    """A history query of `fleet/history/queries.py` over the dashboard's time range."""
    return (
        parameterised.replace("{since_ms:Int64}", FROM_MS)
        .replace("{until_ms:Int64}", TO_MS)
        .replace("{zone_res:UInt8}", str(ZONE_RESOLUTION))
    )


def report(name: str) -> str:
    """One of the `fleet history report` queries over the dashboard's time range."""
    return over_range(REPORTS[name].sql)


# Planned stops of each route's latest plan whose planned time falls in the range, with their
# outcome (CTEs `plans`, `stops`, `outcomes`, `stop_outcomes`: driver_id, lat, lon,
# planned_ms, outcome), without the leading WITH so that more CTEs can follow.
STOP_OUTCOMES = over_range(_STOP_OUTCOMES).strip().removeprefix("WITH").strip()

# Alerts opened and not resolved (CTE `open_alerts`), whatever the time range: an open
# alert is a current fact. Details are JSON text.
OPEN_ALERTS = """
open_alerts AS (
    SELECT alert_id,
           any(kind) AS kind, any(driver_id) AS driver_id, any(route_id) AS route_id,
           any(severity) AS severity, min(opened_ms) AS opened_ms, any(details) AS details
    FROM fleet.alerts FINAL
    GROUP BY alert_id
    HAVING countIf(state = 'resolved') = 0
)"""

# Each driver's latest position in the range and its status (CTE `driver_status`): the
# worst open alert of the driver, else on_schedule on a route, else idle, as the live
# read model's `status` (contract "Read models") would say.
DRIVER_STATUS = f"""
last_fix AS (
    SELECT driver_id,
           argMax(toFloat64(lat), ts_ms) AS latitude, argMax(toFloat64(lon), ts_ms) AS longitude,
           max(ts_ms) AS last_ms, argMax(route_id, ts_ms) AS route_id
    FROM fleet.pings FINAL
    WHERE {in_range("ts_ms")}
    GROUP BY driver_id
),
{OPEN_ALERTS.strip()},
alert_kinds AS (
    SELECT driver_id, groupUniqArray(toString(kind)) AS kinds FROM open_alerts GROUP BY driver_id
),
driver_status AS (
    SELECT f.driver_id AS driver_id, f.latitude AS latitude, f.longitude AS longitude,
           f.last_ms AS last_ms, f.route_id AS route_id,
           multiIf(has(a.kinds, 'stale'), 'stale', has(a.kinds, 'off_route'), 'off_route',
                   has(a.kinds, 'behind_schedule'), 'behind_schedule',
                   f.route_id IS NULL, 'idle', 'on_schedule') AS status
    FROM last_fix AS f
    LEFT JOIN alert_kinds AS a ON f.driver_id = a.driver_id
)"""

# Every plan version with its stop ids in order and the previous version's (CTE
# `plan_versions`): a version above 1 is a re-plan or an edit.
PLAN_VERSIONS = """
plan_versions AS (
    SELECT route_id, driver_id, version, ingested_ms,
           arrayMap(s -> JSONExtractString(s, 'stop_id'), JSONExtractArrayRaw(stops)) AS stop_ids,
           lagInFrame(stop_ids, 1, []) OVER (PARTITION BY route_id ORDER BY version
               ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS previous_ids
    FROM fleet.route_plans FINAL
)"""

# Every change of a route after its first plan (CTE `route_changes`: route_id, kind, version,
# at_ms, cause, proposal_id): decisions applied or proposed (fleet.decisions, with their
# cause) and plan versions above 1 (whoever issued them).
ROUTE_CHANGES = """
route_changes AS (
    SELECT route_id, if(applied = 1, 'applied', 'proposed') AS kind, version,
           issued_ms AS at_ms, toString(cause) AS cause, proposal_id
    FROM fleet.decisions FINAL
    UNION ALL
    SELECT route_id, 'plan' AS kind, version, ingested_ms AS at_ms, '' AS cause,
           '' AS proposal_id
    FROM fleet.route_plans FINAL
    WHERE version > 1
)"""


def decision_since(moment: str) -> str:
    """Select items naming what was done on a route (rows of `route_changes` AS c) since
    `moment`: the first decision applied with its cause, else a proposal waiting, else the
    first new plan version, else 'none yet'."""
    since = f"c.at_ms >= {moment}"
    return f"""
       minIf(c.version, c.kind = 'applied' AND {since}) AS applied_version,
       argMinIf(c.cause, c.version, c.kind = 'applied' AND {since}) AS applied_cause,
       anyIf(c.proposal_id, c.kind = 'proposed' AND {since}) AS waiting_proposal,
       minIf(c.version, c.kind = 'plan' AND {since}) AS plan_version,
       multiIf(applied_version > 0,
               concat('applied v', toString(applied_version), ': ', applied_cause),
               waiting_proposal != '', concat('proposal ', waiting_proposal, ' waiting'),
               plan_version > 0, concat('re-planned: v', toString(plan_version)),
               'none yet') AS decision"""


# Every ETA prediction made before its stop's first arrival (or outcome) event, the stop
# reached in the time range, with that actual time (CTE `eta_actuals`: model_version,
# computed_ms, p10/p50/p90_ms, arrived_ms, error_s, horizon_min, covered, zone of the planned
# stop). Stops and arrivals as `fleet eta accuracy` and the history report define them.
ETA_ACTUALS = (
    over_range(ETA_STOPS_AND_ARRIVALS).strip().removeprefix("WITH").strip()
    + f""",
eta_actuals AS (
    SELECT toString(e.model_version) AS model_version, e.computed_ms AS computed_ms,
           e.p10_ms AS p10_ms, e.p50_ms AS p50_ms, e.p90_ms AS p90_ms,
           a.arrived_ms AS arrived_ms, (e.p50_ms - a.arrived_ms) / 1000 AS error_s,
           (a.arrived_ms - e.computed_ms) / 60000 AS horizon_min,
           a.arrived_ms BETWEEN e.p10_ms AND e.p90_ms AS covered, z.zone AS zone
    FROM fleet.etas AS e FINAL
    INNER JOIN arrivals AS a ON toString(e.route_id) = a.route_id AND e.stop_id = a.stop_id
    LEFT JOIN stops AS z ON a.route_id = z.route_id AND a.stop_id = z.stop_id
    WHERE e.computed_ms <= a.arrived_ms AND {in_range("a.arrived_ms")}
)"""
)


def with_ctes(*ctes: str) -> str:
    """A WITH clause of the given CTEs (each `name AS (...)`)."""
    return "WITH " + ",\n".join(c.strip() for c in ctes) + "\n"
