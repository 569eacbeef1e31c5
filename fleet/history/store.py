"""The two history backends behind one interface: embedded chDB and a ClickHouse server."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa

from fleet.history.errors import HistoryError, ReadRefused
from fleet.history.schema import DATABASE, ddl_statements, ttl_statements
from fleet.settings import Settings

TOKEN_PATTERN = re.compile(r"^[0-9a-f]{1,64}$")
# Reads see each identity once (FINAL on every ReplacingMergeTree) whatever merges have
# run, and cannot write, change settings or reach files through table functions.
READ_SETTINGS = {"final": 1, "output_format_json_quote_64bit_integers": 0}
# The statements a read may be (as the engine's formatter spells them), and what it may
# not do even then: INTO OUTFILE writes a file on the embedded engine whatever `readonly`.
READ_KINDS = ("SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXISTS", "EXPLAIN")
_WRITES_FILE = re.compile(r"\bINTO\s+OUTFILE\b", re.IGNORECASE)

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


@dataclass(frozen=True, slots=True)
class ReadLimits:
    """What one history read may use (``FLEET_HISTORY_QUERY_*``); beyond it the read fails."""

    timeout_s: float = 60.0
    max_memory_bytes: int = 2_000_000_000
    max_result_rows: int = 10_000_000
    max_result_bytes: int = 1_000_000_000

    @classmethod
    def from_settings(cls, settings: Settings) -> ReadLimits:
        return cls(
            settings.history_query_timeout_s,
            settings.history_query_max_memory_bytes,
            settings.history_query_max_result_rows,
            settings.history_query_max_result_bytes,
        )

    def engine_settings(self) -> dict[str, Any]:
        return {
            "max_execution_time": self.timeout_s,
            "max_memory_usage": self.max_memory_bytes,
            "max_result_rows": self.max_result_rows,
            "max_result_bytes": self.max_result_bytes,
            "result_overflow_mode": "throw",
        }


def sql_literal(text: str) -> str:
    """A ClickHouse string literal of any text (only backslash and quote are special)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _settings_clause(settings: dict[str, Any]) -> str:
    values = (f"{k} = {sql_literal(v) if isinstance(v, str) else v}" for k, v in settings.items())
    return "SETTINGS " + ", ".join(values)


def read_statement(formatted: str) -> str:
    """The engine's single-line form of one statement, if it is a read; else ReadRefused."""
    words = formatted.split(None, 1)
    kind = words[0].upper() if words else ""
    if kind not in READ_KINDS:
        raise ReadRefused(
            f"history reads are {', '.join(READ_KINDS)} statements only, not {kind or 'empty'}"
        )
    if _WRITES_FILE.search(formatted):
        raise ReadRefused("history reads cannot write files (INTO OUTFILE)")
    return formatted


def _parse_error(sql: str, exc: HistoryError) -> ReadRefused:
    text = str(exc)
    if "Multi-statements" in text:
        return ReadRefused(f"history reads take exactly one statement: {text}")
    return ReadRefused(f"not a valid statement: {text}")


class EmbeddedStore:
    """ClickHouse in this process (chDB). Only one process may open a data directory."""

    def __init__(self, path: Path, limits: ReadLimits | None = None) -> None:
        from chdb.session import Session  # heavy native import, only where used

        path.mkdir(parents=True, exist_ok=True)
        try:
            self._session = Session(str(path))
        except Exception as exc:
            raise HistoryError(f"cannot open the embedded store at {path}: {exc}") from exc
        self.path = path
        # readonly last: the settings before it are applied, none after it can be changed.
        self._read_clause = _settings_clause(
            {**READ_SETTINGS, **(limits or ReadLimits()).engine_settings(), "readonly": 1}
        )

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
        """One read statement, as the engine parsed it, run read-only and within limits.

        The engine's own parser splits statements (``formatQuerySingleLine`` refuses
        several), so semicolons in literals or comments are judged as ClickHouse judges
        them; the formatted text (comments gone) is what runs, under ``readonly = 1``.
        """
        if "\x00" in sql:
            raise ReadRefused("a history read cannot contain NUL characters")
        try:
            formatted = self._run(
                f"SELECT formatQuerySingleLine({sql_literal(sql)}) {self._read_clause}",
                "TabSeparatedRaw",
            )
        except HistoryError as exc:
            raise _parse_error(sql, exc) from None
        statement = read_statement(formatted.decode().rstrip("\n"))
        return self._run(f"{statement}\n{self._read_clause}", fmt, params)

    def close(self) -> None:
        self._session.close()


class ServerStore:
    """A ClickHouse server through clickhouse-connect (FLEET_CLICKHOUSE_URL).

    Readers connect with FLEET_CLICKHOUSE_READER_URL when set: an account whose profile is
    read-only (``readonly = 2``, SELECT grants only; infra/clickhouse-server). Without it,
    reads on the writer's account ask for ``readonly = 2`` themselves.
    """

    def __init__(
        self, url: str, limits: ReadLimits | None = None, read_only_account: bool = False
    ) -> None:
        import clickhouse_connect

        try:
            self._client = clickhouse_connect.get_client(dsn=url)
        except Exception as exc:
            raise HistoryError(f"cannot reach the ClickHouse server: {exc}") from exc
        self._read_settings: dict[str, Any] = {
            **READ_SETTINGS,
            **(limits or ReadLimits()).engine_settings(),
        }
        if not read_only_account:
            self._read_settings["readonly"] = 2

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

    def _raw(self, sql: str, fmt: str, params: Params | None) -> bytes:
        try:
            data: bytes = self._client.raw_query(
                sql, parameters=params, settings=self._read_settings, fmt=fmt
            )
        except Exception as exc:
            raise HistoryError(str(exc).strip()) from exc
        return data

    def query(self, sql: str, fmt: str = "JSONEachRow", params: Params | None = None) -> bytes:
        """One read statement (the server parses and formats it), read-only, within limits."""
        try:
            formatted = self._raw("SELECT formatQuerySingleLine({q:String})", "TSVRaw", {"q": sql})
        except HistoryError as exc:
            raise _parse_error(sql, exc) from None
        statement = read_statement(formatted.decode().rstrip("\n"))
        return self._raw(statement, fmt, params)

    def close(self) -> None:
        self._client.close()
