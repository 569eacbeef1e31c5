-- Every decision: RouteUpdates applied (fleet.route-updates, applied = 1) and proposed
-- (fleet.route-proposals, applied = 0), with the cause and the rationale, so a dispatcher
-- can ask why a stop moved. One row per (route_id, version, applied, proposal_id).
CREATE TABLE IF NOT EXISTS fleet.decisions
(
    route_id         String,
    driver_id        LowCardinality(String),
    version          Int64,
    applied          UInt8,
    proposal_id      String,
    cause            LowCardinality(String),
    caused_by        Nullable(String),
    issued_ms        Int64,
    moved_stops      Array(String),
    objective_before Nullable(Float64),
    objective_after  Nullable(Float64),
    rationale        Nullable(String) CODEC(ZSTD(3)),
    stops            String CODEC(ZSTD(3)),
    ingested_ms      Int64 CODEC(Delta, ZSTD(3))
)
ENGINE = ReplacingMergeTree(ingested_ms)
ORDER BY (route_id, version, applied, proposal_id)
TTL toDateTime(intDiv(issued_ms, 1000)) + INTERVAL ${ttl_days} DAY
SETTINGS non_replicated_deduplication_window = ${dedup_window}
