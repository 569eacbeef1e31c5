"""Who may open the history: one owner of the embedded store, everyone else reads through it.

chDB locks its data directory to one process. The owner (the worker's sinks, or a CLI
when no worker runs) holds ``owner.lock`` and, if it serves readers, publishes the address
of its read-only query endpoint in ``owner.json``. A reader that finds the lock held sends
its SQL there, with the shared token. With a ClickHouse server configured, everyone talks
to the server (readers on the read-only account when one is configured). Only a writer
applies the schema: a reader's own settings (retention, say) never change the store.
"""

from __future__ import annotations

import fcntl
import hmac
import json
import os
import secrets
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, Any

from aiohttp import web

from fleet.history.errors import HistoryError, StoreBusy, Unauthorized
from fleet.history.store import (
    EmbeddedStore,
    HistoryStore,
    Params,
    ReadLimits,
    ServerStore,
    apply_schema,
)
from fleet.settings import Settings

QUERY_PATH = "/history/query"
TOKEN_FILE = "query.token"
ANY_ADDRESS = ("", "0.0.0.0", "::")


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

    def publish(self, port: int, host: str = "127.0.0.1") -> None:
        """Tell readers where the owner answers queries."""
        tmp = self.directory / "owner.json.tmp"
        tmp.write_text(json.dumps({"pid": os.getpid(), "port": port, "host": host}))
        tmp.replace(self.directory / "owner.json")

    def release(self) -> None:
        if self._file is not None:
            (self.directory / "owner.json").unlink(missing_ok=True)
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


class OwnedStore:
    """The embedded store together with the lock that makes this process its owner."""

    def __init__(self, settings: Settings, writer: bool = True) -> None:
        self.lock = OwnerLock(history_dir(settings))
        try:
            self._store = EmbeddedStore(
                history_dir(settings) / "chdb", ReadLimits.from_settings(settings)
            )
            if writer:
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
    """The store for a writer: the server, or the embedded store with its lock (StoreBusy).

    The writer applies the schema (DDL and retention from its settings).
    """
    if settings.clickhouse_url is not None:
        store = ServerStore(
            settings.clickhouse_url.get_secret_value(), ReadLimits.from_settings(settings)
        )
        apply_schema(store, settings)
        return store
    return OwnedStore(settings)


def query_token(settings: Settings) -> str:
    """The history endpoint's token: FLEET_HISTORY_TOKEN, else one generated once under var/.

    The generated token is written 0600 and linked into place atomically, so a worker and a
    CLI starting together agree on one token.
    """
    if settings.history_token is not None:
        return settings.history_token.get_secret_value()
    directory = history_dir(settings)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / TOKEN_FILE
    if not path.exists():
        tmp = directory / f".{TOKEN_FILE}.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(32))
        try:
            os.link(tmp, path)  # fails if another process got there first: theirs is kept
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip()


class WorkerReader:
    """Reads through the owning worker's query endpoint, with the shared token."""

    def __init__(
        self, port: int, token: str, host: str = "127.0.0.1", timeout_s: float = 300.0
    ) -> None:
        host = "127.0.0.1" if host in ANY_ADDRESS else host
        host = f"[{host}]" if ":" in host else host  # an IPv6 address in a URL
        self.url = f"http://{host}:{port}{QUERY_PATH}"
        self.token = token
        self.timeout_s = timeout_s

    def execute(self, sql: str) -> None:
        raise HistoryError("the history store is owned by a running worker: reads only")

    def insert(self, table: str, rows: Any, token: str | None) -> None:
        self.execute("")

    def query(self, sql: str, fmt: str = "JSONEachRow", params: Params | None = None) -> bytes:
        body = json.dumps({"sql": sql, "format": fmt, "params": params or {}}).encode()
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"}
        request = urllib.request.Request(self.url, data=body, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                data: bytes = response.read()
                return data
        except urllib.error.HTTPError as exc:
            text = exc.read().decode("utf-8", "replace")
            if exc.code in (401, 403):
                raise Unauthorized(f"the history endpoint refused the token: {text}") from None
            raise HistoryError(text) from None
        except OSError as exc:
            # The owner died or is between lock and endpoint: the store may be free soon.
            raise StoreBusy(f"the worker's history endpoint {self.url}: {exc}") from exc

    def close(self) -> None:
        pass


def _owner_address(settings: Settings) -> tuple[str, int]:
    try:
        owner = json.loads((history_dir(settings) / "owner.json").read_text())
    except (OSError, ValueError):
        raise StoreBusy(
            "the history store is locked by a process that serves no queries "
            "(a worker still starting, or another CLI); retry shortly"
        ) from None
    return str(owner.get("host", "127.0.0.1")), int(owner["port"])


def open_reader(settings: Settings) -> HistoryStore:
    """A store to read from, never applying the schema: the server (its read-only account
    when configured), the embedded store if free, else the owning worker's endpoint."""
    limits = ReadLimits.from_settings(settings)
    if settings.clickhouse_reader_url is not None:
        return ServerStore(settings.clickhouse_reader_url.get_secret_value(), limits, True)
    if settings.clickhouse_url is not None:
        return ServerStore(settings.clickhouse_url.get_secret_value(), limits)
    try:
        return OwnedStore(settings, writer=False)
    except StoreBusy:
        host, port = _owner_address(settings)
        return WorkerReader(port, query_token(settings), host)


QueryRunner = Callable[[str, str, Params], Awaitable[bytes]]


def query_endpoint(run_query: QueryRunner, token: str) -> web.Application:
    """The owner's read-only endpoint: POST {sql, format, params} -> the formatted result.

    Every request carries ``Authorization: Bearer <token>``: none is 401, a wrong one 403.
    """
    expected = f"Bearer {token}".encode()

    async def handle(request: web.Request) -> web.Response:
        given = request.headers.get("Authorization")
        if given is None:
            return web.Response(status=401, text="history endpoint: token required")
        if not hmac.compare_digest(given.encode(), expected):
            return web.Response(status=403, text="history endpoint: wrong token")
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
