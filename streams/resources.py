"""Clients and servers of the worker, each opened at start and closed at stop by a service."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
from wsgiref.simple_server import WSGIServer

import redis.asyncio as aioredis
from mode import Service
from prometheus_client import Gauge, start_http_server
from redis.commands.core import AsyncScript

from fleet.clients import redis_async_client
from fleet.errors import ServiceUnavailable
from fleet.settings import Settings
from streams.app import app, settings
from streams.changelog import ChangelogSender

log = logging.getLogger(__name__)


class RedisClient(Service):
    """The worker's one Redis connection pool (the read model)."""

    def __init__(self, settings: Settings, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.settings = settings
        self._client: aioredis.Redis | None = None
        self._scripts: dict[str, AsyncScript] = {}

    async def on_start(self) -> None:
        self._client = redis_async_client(self.settings)

    async def on_stop(self) -> None:
        client, self._client = self._client, None
        self._scripts.clear()
        if client is not None:
            await client.aclose()

    @property
    def client(self) -> aioredis.Redis:
        if self._client is None:
            raise ServiceUnavailable("the Redis client is used before the worker started it")
        return self._client

    def script(self, lua: str) -> AsyncScript:
        """A Lua script registered once on this client (run with ``await script(args=...)``)."""
        script = self._scripts.get(lua)
        if script is None:
            script = self._scripts[lua] = self.client.register_script(lua)
        return script


class MetricsServer(Service):
    """Prometheus /metrics of this worker on FLEET_LISTEN_HOST:FLEET_METRICS_PORT (0 = off)."""

    def __init__(self, host: str, port: int, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.host, self.port = host, port
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    async def on_start(self) -> None:
        if self.port:
            self._server, self._thread = start_http_server(self.port, addr=self.host)

    async def on_stop(self) -> None:
        if self._server is not None:
            await asyncio.to_thread(self._server.shutdown)
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)
        self._server = self._thread = None


# Collections far rarer than Python's default (700, 10, 10). The worker holds millions of
# long-lived objects (plans, tracks, fixes, buffered messages) and allocates a few per ping:
# at the default, the collector promoted short-lived batch objects to the old generation
# and walked the whole heap about every 3 s (18 % of the worker's CPU in the 10x load test,
# ``fleet_gc_seconds_total``). Objects are still freed by reference counting at once; only
# cyclic garbage waits longer.
GC_THRESHOLDS = (50_000, 20, 20)


class GcTuning(Service):
    """Garbage-collector settings of a worker; what exists at start is never walked again."""

    def __init__(self, thresholds: tuple[int, int, int], **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.thresholds = thresholds
        self._before: tuple[int, int, int] | None = None

    async def on_start(self) -> None:
        self._before = gc.get_threshold()
        gc.freeze()  # modules, settings, compiled code: out of every later collection
        gc.set_threshold(*self.thresholds)

    async def on_stop(self) -> None:
        if self._before is not None:
            gc.set_threshold(*self._before)


WORKER_READY = Gauge("fleet_worker_ready", "1 while tables are recovered and agents run")


@app.service
class ReadyFlag(Service):
    """Sets ``fleet_worker_ready`` once the worker is ready (services of ``@app.service``
    start after table recovery)."""

    async def on_start(self) -> None:
        gc.freeze()  # the recovered tables are long-lived: out of later collections too
        WORKER_READY.set(1)

    async def on_stop(self) -> None:
        WORKER_READY.set(0)


gc_tuning = app.resource(GcTuning(GC_THRESHOLDS))
changelog_sender = app.resource(ChangelogSender())
redis = app.resource(RedisClient(settings))
metrics_server = app.resource(MetricsServer(settings.listen_host, settings.metrics_port))
