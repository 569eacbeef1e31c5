"""Accuracy of the ETAs the pipeline published: history's predictions joined to arrivals.

Every EtaUpdate lands in ``fleet.etas`` (one row per stop); ClickHouse joins each
prediction made before a stop's first arrival (or outcome) to that arrival, and groups by
model version, hour of the prediction (UTC), zone of the stop and horizon.
"""

from __future__ import annotations

import json
from typing import Any

from fleet.errors import ConfigError
from fleet.history.queries import ETA_STOPS_AND_ARRIVALS
from fleet.history.store import HistoryStore

GROUPS = ("model_version", "hour", "zone", "horizon_min")

ACCURACY_SQL = (
    ETA_STOPS_AND_ARRIVALS.rstrip()
    + """,
joined AS (
    SELECT toString(e.model_version) AS model_version,
           toHour(toDateTime(intDiv(e.computed_ms, 1000), 'UTC')) AS hour,
           z.zone AS zone,
           multiIf(a.arrived_ms - e.computed_ms < 600000, '0-10',
                   a.arrived_ms - e.computed_ms < 1800000, '10-30',
                   a.arrived_ms - e.computed_ms < 3600000, '30-60',
                   a.arrived_ms - e.computed_ms < 7200000, '60-120', '120+') AS horizon_min,
           e.p10_ms AS p10_ms, e.p50_ms AS p50_ms, e.p90_ms AS p90_ms,
           a.arrived_ms AS arrived_ms
    FROM fleet.etas AS e
    INNER JOIN arrivals AS a ON toString(e.route_id) = a.route_id AND e.stop_id = a.stop_id
    LEFT JOIN stops AS z ON a.route_id = z.route_id AND a.stop_id = z.stop_id
    WHERE e.computed_ms <= a.arrived_ms
      AND e.computed_ms >= {since_ms:Int64} AND e.computed_ms < {until_ms:Int64}
)
SELECT {group_columns}, count() AS predictions,
       round(avg(abs(p50_ms - arrived_ms)) / 1000, 1) AS mae_s,
       round(avg(p50_ms - arrived_ms) / 1000, 1) AS bias_s,
       round(avg(arrived_ms BETWEEN p10_ms AND p90_ms), 4) AS coverage_p10_p90
FROM joined
GROUP BY {group_columns}
ORDER BY {group_columns}
"""
)


def accuracy(
    store: HistoryStore, since_ms: int, until_ms: int, by: tuple[str, ...], zone_res: int
) -> list[dict[str, Any]]:
    """Rows of MAE, bias and coverage per group of ``by`` (a subset of GROUPS)."""
    unknown = set(by) - set(GROUPS)
    if unknown or not by:
        raise ConfigError(f"group by one or more of {GROUPS}, not {sorted(unknown) or 'nothing'}")
    sql = ACCURACY_SQL.replace("{group_columns}", ", ".join(by))
    params = {"since_ms": since_ms, "until_ms": until_ms, "zone_res": zone_res}
    data = store.query(sql, "JSONEachRow", params)
    return [json.loads(line) for line in data.splitlines() if line.strip()]
