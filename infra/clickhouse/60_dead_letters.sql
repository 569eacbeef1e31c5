-- Rejected inputs once per (source_topic, reason, raw bytes): a redelivered input that is
-- rejected again (with a new received_ms) counts once. A large input keeps a prefix in raw,
-- with raw_bytes (its full length) and raw_sha256 (of the whole input).
CREATE TABLE IF NOT EXISTS fleet.dead_letters
(
    source_topic LowCardinality(String),
    reason       LowCardinality(String),
    detail       String CODEC(ZSTD(3)),
    received_ms  Int64 CODEC(Delta, ZSTD(3)),
    raw          String CODEC(ZSTD(3)),
    raw_encoding LowCardinality(String),
    raw_bytes    Nullable(Int64),
    raw_sha256   Nullable(String),
    ingested_ms  Int64 CODEC(Delta, ZSTD(3))
)
ENGINE = ReplacingMergeTree(ingested_ms)
ORDER BY (source_topic, reason, cityHash64(raw))
TTL toDateTime(intDiv(received_ms, 1000)) + INTERVAL ${ttl_days} DAY
SETTINGS non_replicated_deduplication_window = ${dedup_window}
