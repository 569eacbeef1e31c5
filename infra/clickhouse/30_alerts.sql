-- Alert state changes once per (alert_id, state): an alert opens once and resolves once.
CREATE TABLE IF NOT EXISTS fleet.alerts
(
    alert_id    String CODEC(ZSTD(3)),
    kind        LowCardinality(String),
    state       LowCardinality(String),
    driver_id   LowCardinality(String),
    opened_ms   Int64 CODEC(Delta, ZSTD(3)),
    changed_ms  Int64 CODEC(Delta, ZSTD(3)),
    severity    LowCardinality(String),
    route_id    LowCardinality(Nullable(String)),
    details     String CODEC(ZSTD(3)),
    ingested_ms Int64 CODEC(Delta, ZSTD(3))
)
ENGINE = ReplacingMergeTree(ingested_ms)
PARTITION BY toYYYYMM(toDate(intDiv(opened_ms, 1000)))
ORDER BY (alert_id, state)
TTL toDateTime(intDiv(changed_ms, 1000)) + INTERVAL ${ttl_days} DAY
SETTINGS non_replicated_deduplication_window = ${dedup_window}
