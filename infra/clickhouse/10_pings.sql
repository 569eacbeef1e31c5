-- Every valid GPS ping once per identity (driver_id, ts_ms, seq; missing seq = -1).
-- Sorted by driver then time so Delta/DoubleDelta see the small steps of one device;
-- coordinates are fixed-point Decimal64(7) (1 cm) so their deltas are small integers.
CREATE TABLE IF NOT EXISTS fleet.pings
(
    driver_id   LowCardinality(String),
    ts_ms       Int64 CODEC(DoubleDelta, ZSTD(3)),
    seq         Int64 CODEC(DoubleDelta, ZSTD(3)),
    lat         Decimal64(7) CODEC(Delta, ZSTD(3)),
    lon         Decimal64(7) CODEC(Delta, ZSTD(3)),
    accuracy_m  Nullable(Float32) CODEC(ZSTD(3)),
    speed_mps   Nullable(Float32) CODEC(ZSTD(3)),
    heading_deg Nullable(Float32) CODEC(ZSTD(3)),
    route_id    LowCardinality(Nullable(String)),
    ingested_ms Int64 CODEC(Delta, ZSTD(3))
)
ENGINE = ReplacingMergeTree(ingested_ms)
PARTITION BY toDate(intDiv(ts_ms, 1000))
ORDER BY (driver_id, ts_ms, seq)
TTL toDateTime(intDiv(ts_ms, 1000)) + INTERVAL ${ttl_days} DAY
SETTINGS non_replicated_deduplication_window = ${dedup_window}, ttl_only_drop_parts = 1
