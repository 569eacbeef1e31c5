-- Every version of every route plan once per (route_id, version); nested parts as JSON text.
CREATE TABLE IF NOT EXISTS fleet.route_plans
(
    route_id       String,
    driver_id      LowCardinality(String),
    version        Int64,
    stops          String CODEC(ZSTD(3)),
    depot          Nullable(String) CODEC(ZSTD(3)),
    shift_start_ms Nullable(Int64),
    shift_end_ms   Nullable(Int64),
    capacity       Nullable(Int64),
    path           Nullable(String) CODEC(ZSTD(3)),
    ingested_ms    Int64 CODEC(Delta, ZSTD(3))
)
ENGINE = ReplacingMergeTree(ingested_ms)
ORDER BY (route_id, version)
TTL toDateTime(intDiv(ifNull(shift_start_ms, ingested_ms), 1000)) + INTERVAL ${ttl_days} DAY
SETTINGS non_replicated_deduplication_window = ${dedup_window}
