"""The SRE's pipeline-health dashboard (Prometheus): every metric the workers export."""

from __future__ import annotations

from dataclasses import dataclass

from grafana_foundation_sdk.builders.dashboard import Dashboard, Row

from dashboards.panels import new_dashboard, number_panels, prom_series, promql

UID = "fleet-pipeline-health"


@dataclass(frozen=True)
class Graph:
    """One panel: its PromQL expressions with their legends."""

    title: str
    unit: str
    description: str
    queries: tuple[tuple[str, str], ...]


def _rate(metric: str, by: str = "", window: str = "5m") -> str:
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (rate({metric}[{window}]))"


def _quantile(q: float, metric: str, by: str = "") -> str:
    labels = f"le, {by}" if by else "le"
    return f"histogram_quantile({q}, sum by ({labels}) (rate({metric}_bucket[5m])))"


# Every query runs against a real Prometheus scraping a live worker in tests.
SECTIONS: dict[str, list[Graph]] = {
    "Ingest": [
        Graph("Pings accepted / s", "ops", "Valid pings seen for the first time.",
              ((_rate("fleet_pings_accepted_total", window="1m"), "accepted"),)),
        Graph("Dead letters / s by reason", "ops", "Invalid pings sent to the dead-letter topic.",
              ((_rate("fleet_pings_rejected_total", "reason"), "{{reason}}"),)),
        Graph("Duplicates, late pings and jumps / s", "ops",
              "Duplicates are dropped; late pings go to history only; jumps are held back "
              "until confirmed.",
              ((_rate("fleet_pings_duplicate_total"), "duplicate"),
               (_rate("fleet_pings_late_total"), "late"),
               (_rate("fleet_pings_jump_total"), "jump"))),
        Graph("Ping → Redis latency p50 / p99", "s",
              "From the ping's own time (event) and from its Kafka record time (kafka).",
              ((_quantile(0.5, "fleet_ping_to_redis_seconds", "clock"), "p50 from {{clock}}"),
               (_quantile(0.99, "fleet_ping_to_redis_seconds", "clock"), "p99 from {{clock}}"))),
        Graph("Consumer lag by partition", "short", "Messages behind the high watermark.",
              (("sum by (partition) (fleet_consumer_lag)", "partition {{partition}}"),)),
        Graph("Pings read / s by partition", "ops",
              "Progress of the batch ping consumer: its next offset per partition, as a rate.",
              (("sum by (partition) (rate(fleet_ping_position[1m]))", "partition {{partition}}"),)),
        Graph("Mean ingest batch size", "short", "Messages per ingest batch.",
              ((f"{_rate('fleet_ingest_batch_size_sum')} / "
                f"{_rate('fleet_ingest_batch_size_count')}", "messages per batch"),)),
    ],
    "Agents": [
        Graph("Workers ready", "short",
              "1 per worker whose tables are recovered and whose agents run.",
              (("sum(fleet_worker_ready)", "ready workers"),)),
        Graph("Dead letters / s by source and reason", "ops",
              "Every input an agent rejected (pings, events, routes, commands, ...).",
              ((_rate("fleet_dead_letters_total", "source, reason"), "{{source}}: {{reason}}"),)),
        Graph("Processing errors / s by agent", "ops",
              "Inputs an agent failed on (a bug: each is dead-lettered and logged).",
              ((_rate("fleet_processing_errors_total", "source"), "{{source}}"),)),
        Graph("Hook errors / s", "ops",
              "Calls of a registered hook that raised (moved pings, outcomes, alerts, ...).",
              ((_rate("fleet_hook_errors_total", "hook"), "{{hook}}"),)),
        Graph("Dead letters not sent / s", "ops",
              "Dead letters that could not be published (logged): input lost to the DLQ.",
              ((_rate("fleet_dead_letter_failures_total", "source"), "{{source}}"),)),
        Graph("Stale timer walk p50 / p99", "s",
              "Duration of one stale-timer walk over the drivers a worker owns.",
              ((_quantile(0.5, "fleet_stale_timer_seconds"), "p50"),
               (_quantile(0.99, "fleet_stale_timer_seconds"), "p99"))),
        Graph("Stale timer: drivers due per walk", "short",
              "Drivers the last walk looked at (only due ones: silence, shift edges, changes).",
              (("sum(fleet_stale_timer_due_drivers)", "due drivers"),)),
        Graph("Garbage collector time (share of the worker)", "percentunit",
              "Seconds per second the worker spent in Python's cyclic garbage collector, by "
              "generation: the event loop stands still meanwhile (gen 2 walks every object).",
              ((_rate("fleet_gc_seconds_total", "generation"), "gen {{generation}}"),)),
        Graph("Alert changes not repeated / s", "ops",
              "Alert changes a replay after a crash recomputed that were already on "
              "fleet.alerts (read back), so not sent twice.",
              (("sum(rate(fleet_alert_changes_not_repeated_total[5m]))", "not repeated"),)),
        Graph("Tracking state dropped / s", "ops",
              "Idle drivers and finished routes dropped from the tracker's state.",
              ((_rate("fleet_tracking_forgotten_total", "what"), "{{what}}"),)),
        Graph("Read-model rebuilds", "short",
              "Rebuilds of the Redis read model from the tables after Redis lost data, per 5 "
              "min, and the slowest rebuild.",
              (("sum(increase(fleet_read_model_rebuilds_total[5m]))", "rebuilds / 5 min"),
               ("histogram_quantile(1, sum by (le) "
                "(rate(fleet_read_model_rebuild_seconds_bucket[30m])))", "longest (s)"))),
        Graph("Store retries / s by effect", "ops",
              "Writes to Redis retried after a transient failure.",
              ((_rate("fleet_effect_retries_total", "effect"), "{{effect}}"),)),
    ],
    "Decisions": [
        Graph("Decisions / s by cause and outcome", "ops",
              "Re-plans, assignments and edits judged: applied, proposed, below the margin "
              "(no churn), unchanged, ...",
              ((_rate("fleet_decisions_total", "cause, outcome"), "{{cause}}: {{outcome}}"),)),
        Graph("Decision time p50 / p95 by cause", "s",
              "Wall time of one decision (solve and judge).",
              ((_quantile(0.5, "fleet_decision_solve_seconds", "cause"), "p50 {{cause}}"),
               (_quantile(0.95, "fleet_decision_solve_seconds", "cause"), "p95 {{cause}}"))),
    ],
    "ETAs": [
        Graph("ETA updates and stop predictions / s", "ops",
              "EtaUpdate messages published (a stop's p50 moved 60 s or more, a stop done, a new "
              "model) and the stop ETAs computed for them.",
              ((_rate("fleet_eta_updates_total"), "updates"),
               (_rate("fleet_eta_predictions_total"), "stop predictions"))),
        Graph("ETA inputs skipped / s by reason", "ops", "Inputs the ETA agent skipped.",
              ((_rate("fleet_eta_skipped_total", "reason"), "{{reason}}"),)),
        Graph("ETA model in use", "short",
              "Workers per model version in use (a promotion shows as a switch).",
              (("sum by (version) (fleet_eta_model_info)", "{{version}}"),)),
    ],
    "Gateway (phones and trackers)": [
        Graph("Gateway requests / s by route and status", "ops", "HTTP requests answered.",
              ((_rate("fleet_gateway_requests_total", "route, status"), "{{route}} {{status}}"),)),
        Graph("Gateway messages to Kafka / s", "ops",
              "Pings and events acknowledged by Kafka, per channel (http, mqtt) and kind.",
              ((_rate("fleet_gateway_messages_total", "channel, kind"), "{{channel}} {{kind}}"),)),
        Graph("Gateway rejected, ignored, rate-limited / s", "ops",
              "Dead-lettered inputs by reason; inputs answered but not forwarded; refusals by "
              "the per-device rate limit.",
              ((_rate("fleet_gateway_dead_letters_total", "channel, reason"),
                "dead letter {{channel}} {{reason}}"),
               (_rate("fleet_gateway_ignored_total", "channel, why"), "ignored {{why}}"),
               (_rate("fleet_gateway_rate_limited_total", "channel"), "rate limited {{channel}}"))),
        Graph("Gateway ack latency p50 / p99", "s",
              "From receiving an input to Kafka's acknowledgement (the phone's wait).",
              ((_quantile(0.5, "fleet_gateway_ack_seconds", "channel"), "p50 {{channel}}"),
               (_quantile(0.99, "fleet_gateway_ack_seconds", "channel"), "p99 {{channel}}"))),
        Graph("Gateway Kafka failures / s", "ops",
              "Writes Kafka did not acknowledge in time (the device got 503 and retries).",
              ((_rate("fleet_gateway_kafka_failures_total", "channel"), "{{channel}}"),)),
        Graph("Gateway pushes / s, SSE streams, MQTT", "short",
              "Route updates and ETAs pushed to apps; open SSE streams; 1 while the MQTT "
              "bridge is connected.",
              ((_rate("fleet_gateway_pushes_total", "transport, kind"),
                "push {{transport}} {{kind}}"),
               ("sum(fleet_gateway_sse_clients)", "SSE streams"),
               ("min(fleet_gateway_mqtt_connected)", "MQTT connected"))),
    ],
    "History": [
        Graph("History rows / s by table", "ops", "Rows inserted into ClickHouse history.",
              ((_rate("fleet_history_rows_total", "table"), "{{table}}"),)),
        Graph("History consumer lag by topic", "short",
              "Messages of a topic not yet stored in history (this worker's partitions).",
              (("sum by (topic) (fleet_history_consumer_lag)", "{{topic}}"),)),
        Graph("History skipped / s by table and reason", "ops",
              "Invalid messages not written to history.",
              ((_rate("fleet_history_skipped_total", "table, reason"), "{{table}}: {{reason}}"),)),
        Graph("History write retries / s by table", "ops",
              "Failed history inserts retried (the store refused or is unreachable).",
              ((_rate("fleet_history_retries_total", "table"), "{{table}}"),)),
    ],
}  # fmt: skip


def graphs() -> list[Graph]:
    """Every panel of the dashboard, in order."""
    return [graph for section in SECTIONS.values() for graph in section]


def dashboard() -> Dashboard:
    """The pipeline's own health, one row per stage."""
    board = new_dashboard(
        UID, "Fleet pipeline health", "Throughput, errors, latency and lag of every stage.",
        ["sre"],
    ).refresh("10s").time("now-1h", "now")  # fmt: skip
    for section, section_graphs in SECTIONS.items():
        board.with_row(Row(section))
        for graph in section_graphs:
            queries = [promql(expr, legend, "ABCDEFGH"[i])
                       for i, (expr, legend) in enumerate(graph.queries)]  # fmt: skip
            board.with_panel(prom_series(graph.title, graph.description, graph.unit, *queries))
    return number_panels(board)
