"""History reads cannot write: one read statement, engine-enforced read-only, limits, token."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet.history.access import (
    QUERY_PATH,
    WorkerReader,
    history_dir,
    open_owner,
    open_reader,
    query_token,
)
from fleet.history.errors import HistoryError, ReadRefused, Unauthorized
from fleet.history.rows import dead_letter_rows, ping_rows
from fleet.history.sink import HistoryWriter
from fleet.history.store import EmbeddedStore, HistoryStore, ReadLimits
from fleet.records import DeadLetter, Ping
from fleet.settings import PROJECT_ROOT, Settings

NOW = 1_900_000_000_000
LETTERS = 3
PINGS = 5


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A store written once by a writer (schema applied), then closed."""
    settings = Settings(var_dir=tmp_path_factory.mktemp("reads") / "var")
    writer = open_owner(settings)
    letters = [DeadLetter("fleet.pings", "invalid_json", "x", NOW, f"raw-{i}") for i in range(3)]
    writer.insert("dead_letters", dead_letter_rows(letters, NOW), None)
    pings = [Ping("drv-1", NOW + i, 52.5, 13.4, seq=i) for i in range(PINGS)]
    writer.insert("pings", ping_rows(pings, NOW), None)
    writer.close()
    return settings


@pytest.fixture
def reader(history: Settings) -> Iterator[HistoryStore]:
    store = open_reader(history)
    yield store
    store.close()


def counts(store: HistoryStore) -> tuple[int, int]:
    out = json.loads(
        store.query(
            "SELECT (SELECT count() FROM fleet.dead_letters) AS d,"
            " (SELECT count() FROM fleet.pings) AS p"
        )
    )
    return int(out["d"]), int(out["p"])


HOSTILE = [
    "ALTER TABLE fleet.dead_letters DELETE WHERE 1; SELECT 1",
    "SELECT 1; DROP TABLE fleet.pings",
    "SELECT 1;DROP TABLE fleet.pings;",
    "INSERT INTO fleet.pings SELECT * FROM fleet.pings",
    "INSERT INTO fleet.dead_letters (source_topic) SELECT 'x'",
    "SYSTEM STOP MERGES fleet.pings",
    "SYSTEM DROP MARK CACHE",
    "SET readonly = 0; ALTER TABLE fleet.dead_letters DELETE WHERE 1",
    "SET readonly = 0",
    "SELECT 1 SETTINGS readonly = 0",
    "SELECT 1 /* ; */; DROP TABLE fleet.pings",
    "SELECT 1 -- it's a comment\n; DROP TABLE fleet.pings",
    "SELECT 1 # a comment ;\n; TRUNCATE TABLE fleet.dead_letters",
    "/* SELECT */ DELETE FROM fleet.dead_letters WHERE 1",
    "-- SELECT\nTRUNCATE TABLE fleet.dead_letters",
    "SELECT ';'; ALTER TABLE fleet.dead_letters DELETE WHERE 1",
    "DROP TABLE fleet.pings",
    "DROP DATABASE fleet",
    "TRUNCATE TABLE fleet.dead_letters",
    "OPTIMIZE TABLE fleet.pings FINAL",
    "CREATE TABLE fleet.x (a Int8) ENGINE = Memory",
    "DETACH TABLE fleet.pings",
    "RENAME TABLE fleet.pings TO fleet.gone",
    "KILL QUERY WHERE 1",
    "SELECT * FROM file('/etc/hostname', 'LineAsString')",
    "WITH (SELECT 1) AS a SELECT * FROM url('http://127.0.0.1:1/', 'CSV', 'a Int8')",
    "",
    "   ;  ",
]


@pytest.mark.parametrize("sql", HOSTILE)
def test_a_hostile_read_fails_and_changes_nothing(reader: HistoryStore, sql: str) -> None:
    before = counts(reader)
    with pytest.raises(HistoryError) as raised:
        reader.query(sql)
    assert str(raised.value)  # a message that says why
    assert counts(reader) == before == (LETTERS, PINGS)


def test_into_outfile_is_refused_and_writes_no_file(reader: HistoryStore, tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    with pytest.raises(ReadRefused, match="INTO OUTFILE"):
        reader.query(f"SELECT * FROM fleet.pings INTO OUTFILE '{target}'")
    assert not target.exists()


def test_several_statements_are_refused_as_such(reader: HistoryStore) -> None:
    with pytest.raises(ReadRefused, match="exactly one statement"):
        reader.query("SELECT 1; SELECT 2")


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT ';' AS n", ";"),
        ("SELECT 2 AS n -- a trailing comment; with a semicolon", 2),
        ("SELECT count() AS n FROM fleet.pings;", PINGS),
        ("/* leading comment */ WITH 3 AS k SELECT k AS n", 3),
        ("(SELECT 4 AS n)", 4),
        ("SELECT 'it''s' AS n", "it's"),
        ("SELECT '\\'; DROP TABLE fleet.pings; --' AS n", "'; DROP TABLE fleet.pings; --"),
    ],
)
def test_one_read_statement_runs_whatever_its_literals_and_comments(
    reader: HistoryStore, sql: str, expected: object
) -> None:
    assert json.loads(reader.query(sql))["n"] == expected


def test_reads_take_parameters_and_show_and_describe(reader: HistoryStore) -> None:
    out = reader.query("SELECT {a:Int64} + 1 AS n", params={"a": 41})
    assert json.loads(out)["n"] == 42
    tables = reader.query("SHOW TABLES FROM fleet", "TabSeparatedRaw").decode().split()
    assert {"pings", "dead_letters"} <= set(tables)
    assert b"ts_ms" in reader.query("DESCRIBE TABLE fleet.pings", "TabSeparatedRaw")


def test_the_cli_refuses_the_reported_delete_and_deletes_nothing(history: Settings) -> None:
    env = {**os.environ, "FLEET_VAR_DIR": str(history.var_dir)}
    done = subprocess.run(
        [sys.executable, "-m", "fleet.cli", "history", "sql",
         "ALTER TABLE fleet.dead_letters DELETE WHERE 1; SELECT 1"],
        env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode != 0
    assert "exactly one statement" in done.stderr
    store = open_reader(history)
    try:
        assert counts(store) == (LETTERS, PINGS)
    finally:
        store.close()


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[EmbeddedStore]:
    limits = ReadLimits(timeout_s=0.5, max_memory_bytes=50_000_000, max_result_rows=10)
    store = EmbeddedStore(tmp_path / "chdb", limits)
    yield store
    store.close()


def test_a_read_beyond_the_result_rows_fails(limited: EmbeddedStore) -> None:
    assert len(limited.query("SELECT number FROM numbers(10)").splitlines()) == 10
    with pytest.raises(HistoryError, match=r"(?i)limit for result exceeded"):
        limited.query("SELECT number FROM numbers(11)")


def test_a_read_beyond_the_time_limit_fails(limited: EmbeddedStore) -> None:
    with pytest.raises(HistoryError, match=r"(?i)timeout"):
        limited.query("SELECT count() FROM numbers(100000000000) WHERE sipHash64(number) = 0")


def test_a_read_beyond_the_memory_limit_fails(limited: EmbeddedStore) -> None:
    with pytest.raises(HistoryError, match=r"(?i)memory limit"):
        limited.query("SELECT count() FROM (SELECT groupArray(number) FROM numbers(20000000))")


# --- only the writer applies the schema -------------------------------------------------------
def test_a_reader_with_other_retention_settings_changes_nothing(history: Settings) -> None:
    other = history.model_copy(update={"history_ttl_days_pings": 3})
    store = open_reader(other)
    try:
        ddl = store.query("SHOW CREATE TABLE fleet.pings", "TabSeparatedRaw").decode()
    finally:
        store.close()
    assert "toIntervalDay(180)" in ddl and "toIntervalDay(3)" not in ddl


def test_a_reader_of_an_empty_store_creates_nothing(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path / "var")
    store = open_reader(settings)
    try:
        found = store.query("SELECT name FROM system.databases WHERE name = 'fleet'")
        with pytest.raises(HistoryError):
            store.query("SELECT count() FROM fleet.pings")
    finally:
        store.close()
    assert found == b""


def test_a_writer_adds_the_bounded_dead_letter_columns_to_an_older_table(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path / "var")
    old = EmbeddedStore(history_dir(settings) / "chdb")
    old.execute("CREATE DATABASE fleet")
    old.execute(
        "CREATE TABLE fleet.dead_letters (source_topic String, reason String, detail String,"
        " received_ms Int64, raw String, raw_encoding String, ingested_ms Int64)"
        " ENGINE = ReplacingMergeTree(ingested_ms) ORDER BY (source_topic, reason)"
    )
    old.close()
    writer = open_owner(settings)
    try:
        letter = DeadLetter("t", "too_large", "x", NOW, "abc", raw_bytes=9, raw_sha256="ff")
        writer.insert("dead_letters", dead_letter_rows([letter], NOW), None)
        row = json.loads(writer.query("SELECT raw_bytes, raw_sha256 FROM fleet.dead_letters"))
    finally:
        writer.close()
    assert row == {"raw_bytes": 9, "raw_sha256": "ff"}


# --- the worker's endpoint needs the token ---------------------------------------------------
def test_the_generated_token_is_private_and_stable(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path / "var")
    token = query_token(settings)
    path = history_dir(settings) / "query.token"
    assert len(token) >= 32 and query_token(settings) == token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    chosen = Settings(var_dir=tmp_path / "var", history_token="set-by-env")  # type: ignore[arg-type]
    assert query_token(chosen) == "set-by-env"


def post(port: int, headers: dict[str, str]) -> tuple[int, bytes]:
    body = json.dumps({"sql": "SELECT count() AS n FROM fleet.pings"}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{QUERY_PATH}", data=body, headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_the_endpoint_refuses_requests_without_the_right_token(history: Settings) -> None:
    async def scenario() -> None:
        writer = HistoryWriter(history)
        port = await writer.serve_readers(0)
        await writer.open()
        try:
            owner = json.loads((history_dir(history) / "owner.json").read_text())
            assert owner["host"] == history.listen_host == "127.0.0.1"
            token = query_token(history)
            none = await asyncio.to_thread(post, port, {})
            wrong = await asyncio.to_thread(post, port, {"Authorization": "Bearer nope"})
            right = await asyncio.to_thread(post, port, {"Authorization": f"Bearer {token}"})
            assert none[0] == 401 and wrong[0] == 403
            assert right[0] == 200 and json.loads(right[1])["n"] == PINGS
            with pytest.raises(Unauthorized):
                await asyncio.to_thread(WorkerReader(port, "nope").query, "SELECT 1")
            reader = open_reader(history)  # the lock is held: the CLI's path, same token
            assert isinstance(reader, WorkerReader)
            assert json.loads(await asyncio.to_thread(reader.query, "SELECT 7 AS n"))["n"] == 7
        finally:
            await writer.close()

    asyncio.run(asyncio.wait_for(scenario(), timeout=120))
