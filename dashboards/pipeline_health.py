"""The SRE's pipeline-health dashboard (Prometheus), as code; `python -m dashboards.build`."""

from __future__ import annotations

from typing import Any

PROMETHEUS = {"type": "prometheus", "uid": "prometheus"}

# (title, unit, PromQL, legend) — every query is checked against a real Prometheus in tests.
PANELS: list[tuple[str, str, str, str]] = [
    ("Pings accepted / s", "ops", "sum(rate(fleet_pings_accepted_total[1m]))", "accepted"),
    ("Dead letters / s by reason", "ops",
     "sum by (reason) (rate(fleet_pings_rejected_total[5m]))", "{{reason}}"),
    ("Duplicates and late pings / s", "ops",
     "sum(rate(fleet_pings_duplicate_total[5m])) + sum(rate(fleet_pings_late_total[5m]))",
     "duplicate + late"),
    ("Ping → Redis latency p99", "s",
     "histogram_quantile(0.99, sum by (le, clock) (rate(fleet_ping_to_redis_seconds_bucket[5m])))",
     "p99 from {{clock}} time"),
    ("Ping → Redis latency p50", "s",
     "histogram_quantile(0.5, sum by (le, clock) (rate(fleet_ping_to_redis_seconds_bucket[5m])))",
     "p50 from {{clock}} time"),
    ("Consumer lag", "short", "sum(fleet_consumer_lag)", "messages behind"),
    ("Mean ingest batch size", "short",
     "sum(rate(fleet_ingest_batch_size_sum[5m])) / sum(rate(fleet_ingest_batch_size_count[5m]))",
     "messages per batch"),
    ("Store retries / s", "ops", "sum by (effect) (rate(fleet_effect_retries_total[5m]))",
     "{{effect}}"),
]  # fmt: skip


def dashboard() -> dict[str, Any]:
    panels = []
    for i, (title, unit, expr, legend) in enumerate(PANELS):
        panels.append({
            "id": i + 1, "type": "timeseries", "title": title, "datasource": PROMETHEUS,
            "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "targets": [{"refId": "A", "datasource": PROMETHEUS, "expr": expr,
                         "legendFormat": legend}],
        })  # fmt: skip
    return {
        "uid": "fleet-pipeline-health",
        "title": "Fleet pipeline health",
        "tags": ["fleet", "sre"],
        "timezone": "utc",
        "schemaVersion": 39,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "panels": panels,
    }
