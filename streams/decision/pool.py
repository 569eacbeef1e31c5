"""The solver process: decisions run in a child process, so a 1 s solve never holds the
worker's event loop (OR-Tools keeps the GIL while it searches)."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from typing import Any, TypeVar

from mode import Service

from fleet.errors import ServiceUnavailable
from streams.app import app

T = TypeVar("T")
SOLVER_NICENESS = 10
log = logging.getLogger(__name__)


def _lower_priority() -> None:
    """The solver yields the CPU to the worker's event loop (dispatcher edits, pings)."""
    os.nice(SOLVER_NICENESS)


def _warm() -> bool:
    import decision.decide  # noqa: F401  (OR-Tools loads once, before the first decision)

    return True


class SolverPool(Service):
    """One spawned child process that runs the pure decision functions.

    A child that dies (killed, out of memory) breaks the executor: the pool is replaced by a
    fresh one and the decision that saw it die runs again there, once.
    """

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._pool: ProcessPoolExecutor | None = None
        self._replacing = asyncio.Lock()
        self.restarts = 0

    async def on_start(self) -> None:
        self._pool = await _started_pool()

    async def on_stop(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` in the child process (arguments and result are pickled)."""
        pool = self._pool
        if pool is None:
            raise ServiceUnavailable("the solver pool is used before the worker started it")
        loop = asyncio.get_running_loop()
        call = partial(fn, *args, **kwargs)
        try:
            return await loop.run_in_executor(pool, call)
        except BrokenProcessPool:
            log.warning("the solver process died: starting a new one and retrying")
            return await loop.run_in_executor(await self._replace(pool), call)

    async def _replace(self, broken: ProcessPoolExecutor) -> ProcessPoolExecutor:
        """A fresh pool instead of ``broken`` (once, however many decisions saw it break)."""
        async with self._replacing:
            if self._pool is broken:
                broken.shutdown(wait=False, cancel_futures=True)
                self._pool = await _started_pool()
                self.restarts += 1
            if self._pool is None:
                raise ServiceUnavailable("the solver pool stopped while it was replaced")
            return self._pool


async def _started_pool() -> ProcessPoolExecutor:
    """A one-process pool with OR-Tools loaded."""
    # spawn, not fork: the worker has threads (Kafka clients) a fork would copy mid-state
    pool = ProcessPoolExecutor(
        1, mp_context=multiprocessing.get_context("spawn"), initializer=_lower_priority
    )
    await asyncio.get_running_loop().run_in_executor(pool, _warm)
    return pool


solver_pool = app.resource(SolverPool())
