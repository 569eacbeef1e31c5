"""Writing batches to history: one owner thread, retries with backoff, never a dropped batch.

Policy: a batch that the store refuses (unavailable, slow, busy) is retried with the same
insert token, waiting longer each time up to a cap, until it is stored. Meanwhile the
caller waits and takes no new messages: that wait is the backpressure. The only exit is
success; the error of every attempt is reported to ``on_retry``. ``insert`` retries for
async callers; ``insert_blocking`` is one attempt for a thread that retries itself (the
history consumer, which polls between attempts to stay in its group).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar, cast

import pyarrow as pa
from aiohttp import web

from fleet.history.access import OwnedStore, open_owner, query_endpoint, query_token
from fleet.history.partitions import split_for_insert
from fleet.history.store import HistoryStore, Params
from fleet.retry import RetryPolicy
from fleet.settings import Settings

T = TypeVar("T")
RetryHook = Callable[[str, Exception, float], None]


def batch_token(table: str, offsets: Iterable[tuple[str, int, int]]) -> str:
    """Insert-dedup token of a batch: the same Kafka messages give the same token.

    A retried insert whose first attempt did land (a timeout after the write) is then
    discarded by the store rather than written twice.
    """
    digest = hashlib.sha256(table.encode())
    for topic, partition, offset in sorted(offsets):
        digest.update(f"|{topic}:{partition}:{offset}".encode())
    return digest.hexdigest()[:40]


def _ignore_retry(table: str, exc: Exception, delay: float) -> None:
    pass


class HistoryWriter:
    """Owns the store on one thread (chDB wants one user) and gives it an async face."""

    def __init__(
        self,
        settings: Settings,
        policy: RetryPolicy | None = None,
        on_retry: RetryHook = _ignore_retry,
    ) -> None:
        self.settings = settings
        self.policy = policy or RetryPolicy.for_history(settings)
        self.on_retry = on_retry
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="history-store")
        self._store: HistoryStore | None = None
        self._port: int | None = None
        self._host = settings.listen_host
        self._runner: web.AppRunner | None = None

    # --- on the store thread ---------------------------------------------------------------
    def _open(self) -> HistoryStore:
        if self._store is None:
            self._store = open_owner(self.settings)
            self._publish()
        return self._store

    def _publish(self) -> None:
        if isinstance(self._store, OwnedStore) and self._port is not None:
            self._store.lock.publish(self._port, self._host)

    def _insert(self, table: str, rows: pa.Table, token: str | None) -> None:
        store = self._open()
        for part, part_token in split_for_insert(table, rows, token):  # per-insert limits
            store.insert(table, part, part_token)

    def _query(self, sql: str, fmt: str, params: Params) -> bytes:
        return self._open().query(sql, fmt, params)

    def _close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    # --- async face ------------------------------------------------------------------------
    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def _until_done(self, what: str, fn: Callable[..., T], *args: Any) -> tuple[T, int]:
        """Any failure of the store is retried (the worker lives); returns the attempts too."""
        attempts = 0

        async def attempt() -> T:
            nonlocal attempts
            attempts += 1
            return await self._call(fn, *args)

        def on_retry(exc: BaseException, delay: float) -> None:
            self.on_retry(what, cast(Exception, exc), delay)

        return await self.policy.run(attempt, on_retry=on_retry), attempts

    async def open(self) -> None:
        """Open the store (retrying until it can), so readers are served before any batch."""
        await self._until_done("open", self._open)

    async def insert(self, table: str, rows: pa.Table, token: str | None) -> int:
        """Store one batch, however many attempts it takes; returns the attempts."""
        _, attempts = await self._until_done(table, self._insert, table, rows, token)
        return attempts

    def insert_blocking(self, table: str, rows: pa.Table, token: str | None) -> None:
        """One attempt to store a batch, from any thread; raises what the store raised."""
        self._executor.submit(self._insert, table, rows, token).result()

    async def query(
        self, sql: str, fmt: str = "JSONEachRow", params: Params | None = None
    ) -> bytes:
        """A read-only query on the owned store (one attempt; errors go to the reader)."""
        return await self._call(self._query, sql, fmt, params or {})

    async def serve_readers(self, port: int, host: str | None = None) -> int:
        """Serve the read-only query endpoint (on FLEET_LISTEN_HOST, behind the token);
        publish its address once the store is owned."""
        self._host = host or self.settings.listen_host
        token = await asyncio.to_thread(query_token, self.settings)
        self._runner = web.AppRunner(query_endpoint(self.query, token))
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self._port = sockets[0].getsockname()[1] if sockets else port
        await self._call(self._publish)
        return self._port

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        await self._call(self._close)
        self._executor.shutdown(wait=True)
