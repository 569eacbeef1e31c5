"""The Faust app: agents, tables, timers, sinks to Redis and ClickHouse, metrics."""
