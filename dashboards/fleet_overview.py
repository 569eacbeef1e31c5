"""Fleet overview: where everyone is and in what state, open alerts, completion, zone balance."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard

from dashboards.panels import (
    bar_chart,
    map_panel,
    marker_layer,
    new_dashboard,
    number_panels,
    pie,
    stat_panel,
    status_mappings,
    traffic_light,
)
from dashboards.sources import CLICKHOUSE, REDIS, ClickHouseFormat, redis_command, redis_raw, sql
from dashboards.sql import DRIVER_STATUS, OPEN_ALERTS, STOP_OUTCOMES, report, with_ctes

UID = "fleet-overview"

POSITIONS = (
    with_ctes(DRIVER_STATUS)
    + """
SELECT driver_id, latitude, longitude, status, route_id,
       fromUnixTimestamp64Milli(last_ms) AS last_seen
FROM driver_status
ORDER BY driver_id"""
)

DRIVERS_BY_STATUS = (
    with_ctes(DRIVER_STATUS)
    + """
SELECT status, count() AS drivers FROM driver_status GROUP BY status ORDER BY status"""
)

OPEN_ALERTS_BY_KIND = (
    with_ctes(OPEN_ALERTS)
    + """
SELECT toString(kind) AS kind, count() AS open_alerts FROM open_alerts
GROUP BY kind ORDER BY open_alerts DESC, kind"""
)

COMPLETION = f"""
SELECT round(100 * sum(delivered) / sum(planned), 1) AS completion_pct
FROM ({report("completion_by_driver")})"""

# Supply: drivers whose latest position in the range lies in the zone. Demand: planned
# stops in the range still pending there. A marker per zone at the mean of its points.
ZONE_BALANCE = (
    with_ctes(STOP_OUTCOMES, DRIVER_STATUS)
    + """,
supply AS (
    SELECT h3ToString(geoToH3(latitude, longitude, 7)) AS zone, count() AS drivers,
           avg(latitude) AS s_lat, avg(longitude) AS s_lon
    FROM driver_status GROUP BY zone
),
demand AS (
    SELECT h3ToString(geoToH3(lat, lon, 7)) AS zone, countIf(outcome = 'pending') AS stops,
           avg(lat) AS d_lat, avg(lon) AS d_lon
    FROM stop_outcomes GROUP BY zone
)
SELECT if(s.zone = '', d.zone, s.zone) AS zone,
       if(s.zone = '', d.d_lat, s.s_lat) AS latitude,
       if(s.zone = '', d.d_lon, s.s_lon) AS longitude,
       s.drivers AS active_drivers, d.stops AS remaining_stops,
       d.stops - s.drivers AS shortfall
FROM supply AS s FULL OUTER JOIN demand AS d ON s.zone = d.zone
WHERE active_drivers > 0 OR remaining_stops > 0
ORDER BY shortfall DESC, zone"""
)


def dashboard() -> Dashboard:
    """The dispatcher's first screen."""
    board = new_dashboard(
        UID,
        "Fleet overview",
        "Live positions coloured by status, open alerts, completion and zone supply/demand.",
        ["dispatch"],
    )
    board.with_panel(
        map_panel(
            "Live positions by status",
            "Each driver's latest fix in the time range, coloured by status: stale, off_route "
            "and behind_schedule come from the driver's open alerts, else on_schedule when on a "
            "route, else idle.",
            CLICKHOUSE,
            [sql(POSITIONS)],
            [marker_layer("Drivers", "A", colour_field="status")],
        ).mappings(status_mappings())
    )
    board.with_panel(
        pie(
            "Drivers by status", "Drivers per status (as on the map).", CLICKHOUSE,
            sql(DRIVERS_BY_STATUS), width=8, height=7,
        ).mappings(status_mappings())
    )  # fmt: skip
    board.with_panel(
        stat_panel(
            "Completion", "Delivered / planned stops of the latest plans, planned in the range.",
            CLICKHOUSE, sql(COMPLETION), unit="percent", width=4, height=7,
        )
    )  # fmt: skip
    board.with_panel(
        stat_panel(
            "Open alerts now", "Alerts open in the live read model (Redis fleet:alerts:open).",
            REDIS, redis_command("hlen", "fleet:alerts:open"), width=4, height=7,
        )
    )  # fmt: skip
    board.with_panel(
        bar_chart(
            "Open alerts by kind", "Alerts opened and not resolved, per kind (history).",
            CLICKHOUSE, sql(OPEN_ALERTS_BY_KIND), width=8,
        )
    )  # fmt: skip
    board.with_panel(
        stat_panel(
            "Drivers on the map", "Drivers with a live position (Redis GEO set fleet:pos).",
            REDIS, redis_raw("ZCARD fleet:pos"), width=4, height=8,
        )
    )  # fmt: skip
    board.with_panel(
        traffic_light(
            map_panel(
                "Zone supply and demand (H3 res 7)",
                "Per H3 zone: active drivers (latest fix there) against planned stops still "
                "pending. Bigger marker = more remaining stops; colour = shortfall (stops minus "
                "drivers): where to send help.",
                CLICKHOUSE,
                [sql(ZONE_BALANCE, ClickHouseFormat.TABLE)],
                [
                    marker_layer(
                        "Zones", "A", colour_field="shortfall", size_field="remaining_stops"
                    )
                ],
                width=24,
                height=12,
            ),
            orange_from=1,
            red_from=3,
        )
    )
    return number_panels(board)
