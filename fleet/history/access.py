"""Who may open the history: one owner of the embedded store, everyone else reads through it.

chDB locks its data directory to one process. The owner (the worker's sinks, or a CLI
when no worker runs) holds ``owner.lock`` and, if it serves readers, publishes the port of
its read-only query endpoint in ``owner.json``. A reader that finds the lock held sends
its SQL there. With a ClickHouse server configured, everyone talks to the server.
"""

from __future__ import annotations

import fcntl
import json
import os
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, Any

from aiohttp import web

from fleet.history.errors import HistoryError, StoreBusy
from fleet.history.store import EmbeddedStore, HistoryStore, Params, ServerStore, apply_schema
from fleet.settings import Settings

QUERY_PATH = "/history/query"


def history_dir(settings: Settings) -> Path:
    """Where the embedded store, its lock and its owner file live."""
    return settings.var_dir / "history"


class OwnerLock:
    """An exclusive, non-blocking lock on the embedded store; released when the owner dies."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self._file: IO[str] | None = open(directory / "owner.lock", "a")  # noqa: SIM115
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.close()
            self._file = None
            raise StoreBusy(
                f"the history store in {directory} is owned by another process"
            ) from None
        # A killed owner leaves its owner.json behind; it must not send readers to a dead port.
        (directory / "owner.json").unlink(missing_ok=True)

    def publish(self, port: int) -> None:
        """Tell readers where the owner answers queries."""
        tmp = self.directory / "owner.json.tmp"
        tmp.write_text(json.dumps({"pid": os.getpid(), "port": port}))
        tmp.replace(self.directory / "owner.json")

    def release(self) -> None:
        if self._file is not None:
            (self.directory / "owner.json").unlink(missing_ok=True)
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


class OwnedStore:
    """The embedded store together with the lock that makes this process its owner."""

    def __init__(self, settings: Settings) -> None:
        self.lock = OwnerLock(history_dir(settings))
        try:
            self._store = EmbeddedStore(history_dir(settings) / "chdb")
            apply_schema(self._store, settings)
        except BaseException:
            self.lock.release()
            raise

    def execute(self, sql: str) -> None:
        self._store.execute(sql)

    def insert(self, table: str, rows: Any, token: str | None) -> None:
        self._store.insert(table, rows, token)

    def query(self, sql: str, fmt: str = "JSONEachRow", params: Params | None = None) -> bytes:
        return self._store.query(sql, fmt, params)

    def close(self) -> None:
        try:
            self._store.close()
        finally:
            self.lock.release()


def open_owner(settings: Settings) -> HistoryStore:
    """The store for a writer: the server, or the embedded store with its lock (StoreBusy)."""
    if settings.clickhouse_url is not None:
        store = ServerStore(settings.clickhouse_url.get_secret_value())
        apply_schema(store, settings)
        return store
    return OwnedStore(settings)


class WorkerReader:
    """Reads through the owning worker's query endpoint."""

    def __init__(self, port: int, timeout_s: float = 300.0) -> None:
        self.url = f"http://127.0.0.1:{port}{QUERY_PATH}"
        self.timeout_s = timeout_s

    def execute(self, sql: str) -> None:
        raise HistoryError("the history store is owned by a running worker: reads only")

    def insert(self, table: str, rows: Any, token: str | None) -> None:
        self.execute("")

    def query(self, sql: str, fmt: str = "JSONEachRow", params: Params | None = None) -> bytes:
        body = json.dumps({"sql": sql, "format": fmt, "params": params or {}}).encode()
        request = urllib.request.Request(
            self.url, data=body, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                data: bytes = response.read()
                return data
        except urllib.error.HTTPError as exc:
            raise HistoryError(exc.read().decode("utf-8", "replace")) from None
        except OSError as exc:
            # The owner died or is between lock and endpoint: the store may be free soon.
            raise StoreBusy(f"the worker's history endpoint {self.url}: {exc}") from exc

    def close(self) -> None:
        pass


def _owner_port(settings: Settings) -> int:
    try:
        owner = json.loads((history_dir(settings) / "owner.json").read_text())
    except (OSError, ValueError):
        raise StoreBusy(
            "the history store is locked by a process that serves no queries "
            "(a worker still starting, or another CLI); retry shortly"
        ) from None
    port: int = owner["port"]
    return port


def open_reader(settings: Settings) -> HistoryStore:
    """A store to read from: the server, the embedded store if free, else the worker's."""
    try:
        return open_owner(settings)
    except StoreBusy:
        return WorkerReader(_owner_port(settings))


QueryRunner = Callable[[str, str, Params], Awaitable[bytes]]


def query_endpoint(run_query: QueryRunner) -> web.Application:
    """The owner's read-only endpoint: POST {sql, format, params} -> the formatted result."""

    async def handle(request: web.Request) -> web.Response:
        try:
            payload = await request.json()
            sql, fmt = str(payload["sql"]), str(payload.get("format", "JSONEachRow"))
            params = dict(payload.get("params") or {})
        except (ValueError, KeyError, TypeError) as exc:
            return web.Response(status=400, text=f"bad request: {exc}")
        try:
            return web.Response(body=await run_query(sql, fmt, params))
        except HistoryError as exc:
            return web.Response(status=400, text=str(exc))

    app = web.Application()
    app.router.add_post(QUERY_PATH, handle)
    return app
