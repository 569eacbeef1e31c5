"""The three data sources and typed queries for the two plugins the SDK has no types for."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Self

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import plugins as cogplugins
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models.dashboard import DataSourceRef

CLICKHOUSE_TYPE = "grafana-clickhouse-datasource"
REDIS_TYPE = "redis-datasource"
PROMETHEUS_TYPE = "prometheus"

# Stable uids: provisioning (infra/grafana) and `fleet dashboards push` create them so.
PROMETHEUS = DataSourceRef(type_val=PROMETHEUS_TYPE, uid="prometheus")
CLICKHOUSE = DataSourceRef(type_val=CLICKHOUSE_TYPE, uid="clickhouse")
REDIS = DataSourceRef(type_val=REDIS_TYPE, uid="redis")


class ClickHouseFormat(IntEnum):
    """The plugin's result formats (its `Format` enum)."""

    TIME_SERIES = 0
    TABLE = 1


@dataclass
class ClickHouseQuery(cogvariants.Dataquery):
    """A raw-SQL query of the official ClickHouse plugin (macros expanded by the plugin)."""

    raw_sql: str = ""
    format: ClickHouseFormat = ClickHouseFormat.TABLE
    ref_id: str = "A"

    def to_json(self) -> dict[str, object]:
        kind = "timeseries" if self.format == ClickHouseFormat.TIME_SERIES else "table"
        return {
            "refId": self.ref_id,
            "datasource": CLICKHOUSE.to_json(),
            "editorType": "sql",
            "format": int(self.format),
            "queryType": kind,
            "rawSql": self.raw_sql,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        return cls(
            raw_sql=data["rawSql"],
            format=ClickHouseFormat(data["format"]),
            ref_id=data.get("refId", "A"),
        )


@dataclass
class RedisQuery(cogvariants.Dataquery):
    """A query of the Redis plugin: a named command on one key, or a raw command line."""

    command: str = ""
    key: str = ""
    raw: str = ""
    ref_id: str = "A"
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "refId": self.ref_id,
            "datasource": REDIS.to_json(),
            "type": "command",
        }
        if self.raw:
            out["query"] = self.raw
        else:
            out["command"], out["keyName"] = self.command, self.key
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        return cls(
            command=data.get("command", ""),
            key=data.get("keyName", ""),
            raw=data.get("query", ""),
            ref_id=data.get("refId", "A"),
        )

    def argv(self) -> list[str]:
        """The Redis command this query sends (as the plugin builds it)."""
        return self.raw.split() if self.raw else [self.command, self.key]


class Query(cogbuilder.Builder[cogvariants.Dataquery]):
    """Builder wrapper so our typed queries go where the SDK takes query builders."""

    def __init__(self, query: cogvariants.Dataquery) -> None:
        self._query = query

    def build(self) -> cogvariants.Dataquery:
        return self._query


def sql(raw_sql: str, fmt: ClickHouseFormat = ClickHouseFormat.TABLE, ref: str = "A") -> Query:
    """A ClickHouse SQL target."""
    return Query(ClickHouseQuery(raw_sql.strip(), fmt, ref))


def redis_hgetall(key: str, ref: str = "A") -> Query:
    """A Redis HGETALL target (one row, a column per hash field)."""
    return Query(RedisQuery(command="hgetall", key=key, ref_id=ref))


def redis_command(key_command: str, key: str, ref: str = "A") -> Query:
    """A Redis single-key command target (`hlen`, `scard`, ...): one value."""
    return Query(RedisQuery(command=key_command, key=key, ref_id=ref))


def redis_raw(line: str, ref: str = "A") -> Query:
    """A Redis raw command line (the plugin's CLI mode)."""
    return Query(RedisQuery(raw=line, ref_id=ref))


def register_query_types() -> None:
    """Let the SDK decode our queries (and all its own) when reading dashboard JSON."""
    cogplugins.register_default_plugins()
    cogruntime.register_dataquery_variant(
        cogruntime.DataqueryConfig(CLICKHOUSE_TYPE, ClickHouseQuery.from_json)
    )
    cogruntime.register_dataquery_variant(
        cogruntime.DataqueryConfig(REDIS_TYPE, RedisQuery.from_json)
    )
