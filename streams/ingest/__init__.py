"""Ingest: raw pings in batches -> dead letters, driver state, live positions in Redis."""
