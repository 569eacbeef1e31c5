-- ETA updates with their stops array flattened: one row per (update, stop), once each.
CREATE TABLE IF NOT EXISTS fleet.etas
(
    route_id      LowCardinality(String),
    driver_id     LowCardinality(String),
    model_version LowCardinality(String),
    computed_ms   Int64 CODEC(Delta, ZSTD(3)),
    stop_id       String CODEC(ZSTD(3)),
    p10_ms        Int64 CODEC(Delta, ZSTD(3)),
    p50_ms        Int64 CODEC(Delta, ZSTD(3)),
    p90_ms        Int64 CODEC(Delta, ZSTD(3)),
    ingested_ms   Int64 CODEC(Delta, ZSTD(3))
)
ENGINE = ReplacingMergeTree(ingested_ms)
PARTITION BY toYYYYMM(toDate(intDiv(computed_ms, 1000)))
ORDER BY (route_id, stop_id, computed_ms, model_version)
TTL toDateTime(intDiv(computed_ms, 1000)) + INTERVAL ${ttl_days} DAY
SETTINGS non_replicated_deduplication_window = ${dedup_window}
