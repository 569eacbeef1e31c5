"""The two history backends behind one interface: embedded chDB and a ClickHouse server."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa

from fleet.history.errors import HistoryError
from fleet.history.schema import DATABASE, ddl_statements, ttl_statements
from fleet.settings import Settings

TOKEN_PATTERN = re.compile(r"^[0-9a-f]{1,64}$")
# Reads see each identity once (FINAL on every ReplacingMergeTree) whatever merges have
# run, and cannot write, change settings or reach files through table functions.
READ_SETTINGS = {"final": 1, "output_format_json_quote_64bit_integers": 0, "readonly": 1}

SERVER_READ_SETTINGS = {k: v for k, v in READ_SETTINGS.items() if k != "readonly"}

Params = dict[str, Any]


class HistoryStore(Protocol):
    """What sinks, the CLI and reports need from a backend."""

    def execute(self, sql: str) -> None: ...

    def insert(self, table: str, rows: pa.Table, token: str | None) -> None: ...

    def query(self, sql: str, fmt: str = "JSONEachRow", params: Params | None = None) -> bytes:
        """A read-only query (FINAL applied) in a ClickHouse output format."""
        ...

    def close(self) -> None: ...


def apply_schema(store: HistoryStore, settings: Settings) -> None:
    """Create the database and tables if missing, then re-apply each table's retention."""
    for statement in ddl_statements(settings) + ttl_statements(settings):
        store.execute(statement)


def _insert_settings(token: str | None) -> dict[str, str]:
    if token is None:
        return {}
    if not TOKEN_PATTERN.match(token):
        raise HistoryError(f"insert token {token!r} must be 1-64 lowercase hex digits")
    return {"insert_deduplication_token": token}


def _strip_statement(sql: str) -> str:
    """A statement without its trailing semicolon, so settings can follow it."""
    return sql.strip().rstrip(";").rstrip()


class EmbeddedStore:
    """ClickHouse in this process (chDB). Only one process may open a data directory."""

    def __init__(self, path: Path) -> None:
        from chdb.session import Session  # heavy native import, only where used

        path.mkdir(parents=True, exist_ok=True)
        try:
            self._session = Session(str(path))
        except Exception as exc:
            raise HistoryError(f"cannot open the embedded store at {path}: {exc}") from exc
        self.path = path

    def _run(self, sql: str, fmt: str = "CSV", params: Params | None = None) -> bytes:
        try:
            result = self._session.query(sql, fmt, params=params or None)
        except Exception as exc:
            raise HistoryError(str(exc).strip()) from exc
        data: bytes = result.bytes() if result is not None else b""
        return data

    def execute(self, sql: str) -> None:
        self._run(sql)

    def insert(self, table: str, rows: pa.Table, token: str | None) -> None:
        if rows.num_rows == 0:
            return
        columns = ", ".join(rows.column_names)
        settings = ", ".join(f"{k} = '{v}'" for k, v in _insert_settings(token).items())
        suffix = f" SETTINGS {settings}" if settings else ""
        # chDB's Python() table function reads the local variable `rows` by name.
        self._run(
            f"INSERT INTO {DATABASE}.{table} ({columns}) SELECT {columns} FROM Python(rows){suffix}"
        )

    def query(self, sql: str, fmt: str = "JSONEachRow", params: Params | None = None) -> bytes:
        read = ", ".join(f"{k} = {v}" for k, v in READ_SETTINGS.items())
        # Outer settings apply before the statement's own, so readonly cannot be lifted.
        return self._run(f"{_strip_statement(sql)}\nSETTINGS {read}", fmt, params)

    def close(self) -> None:
        self._session.close()


class ServerStore:
    """A ClickHouse server through clickhouse-connect (FLEET_CLICKHOUSE_URL)."""

    def __init__(self, url: str) -> None:
        import clickhouse_connect

        try:
            self._client = clickhouse_connect.get_client(dsn=url)
        except Exception as exc:
            raise HistoryError(f"cannot reach the ClickHouse server: {exc}") from exc

    def execute(self, sql: str) -> None:
        try:
            self._client.command(sql)
        except Exception as exc:
            raise HistoryError(str(exc).strip()) from exc

    def insert(self, table: str, rows: pa.Table, token: str | None) -> None:
        if rows.num_rows == 0:
            return
        try:
            self._client.insert_arrow(f"{DATABASE}.{table}", rows, settings=_insert_settings(token))
        except Exception as exc:
            raise HistoryError(str(exc).strip()) from exc

    def query(self, sql: str, fmt: str = "JSONEachRow", params: Params | None = None) -> bytes:
        # readonly is left to the server account's grants: over HTTP it would forbid `final`.
        try:
            data: bytes = self._client.raw_query(
                _strip_statement(sql), parameters=params, settings=SERVER_READ_SETTINGS, fmt=fmt
            )
        except Exception as exc:
            raise HistoryError(str(exc).strip()) from exc
        return data

    def close(self) -> None:
        self._client.close()
