-- Stores created before dead letters were bounded get the two columns of a truncated raw.
ALTER TABLE fleet.dead_letters
    ADD COLUMN IF NOT EXISTS raw_bytes Nullable(Int64) AFTER raw_encoding,
    ADD COLUMN IF NOT EXISTS raw_sha256 Nullable(String) AFTER raw_bytes
