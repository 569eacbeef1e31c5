-- Delivery events once per event_id (a repeated event_id is a duplicate).
CREATE TABLE IF NOT EXISTS fleet.events
(
    event_id    String CODEC(ZSTD(3)),
    driver_id   LowCardinality(String),
    type        LowCardinality(String),
    ts_ms       Int64 CODEC(Delta, ZSTD(3)),
    route_id    LowCardinality(Nullable(String)),
    stop_id     Nullable(String) CODEC(ZSTD(3)),
    reason      LowCardinality(Nullable(String)),
    lat         Nullable(Float64) CODEC(ZSTD(3)),
    lon         Nullable(Float64) CODEC(ZSTD(3)),
    pod         Nullable(String) CODEC(ZSTD(3)),
    ingested_ms Int64 CODEC(Delta, ZSTD(3))
)
ENGINE = ReplacingMergeTree(ingested_ms)
PARTITION BY toYYYYMM(toDate(intDiv(ts_ms, 1000)))
ORDER BY (driver_id, event_id)
TTL toDateTime(intDiv(ts_ms, 1000)) + INTERVAL ${ttl_days} DAY
SETTINGS non_replicated_deduplication_window = ${dedup_window}
