"""The solver process: decisions run in a child process, so a 1 s solve never holds the
worker's event loop (OR-Tools keeps the GIL while it searches)."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from typing import Any, TypeVar

from mode import Service

from fleet.errors import ServiceUnavailable
from streams.app import app

T = TypeVar("T")
SOLVER_NICENESS = 10


def _lower_priority() -> None:
    """The solver yields the CPU to the worker's event loop (dispatcher edits, pings)."""
    os.nice(SOLVER_NICENESS)


def _warm() -> bool:
    import decision.decide  # noqa: F401  (OR-Tools loads once, before the first decision)

    return True


class SolverPool(Service):
    """One spawned child process that runs the pure decision functions."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._pool: ProcessPoolExecutor | None = None

    async def on_start(self) -> None:
        # spawn, not fork: the worker has threads (Kafka clients) a fork would copy mid-state
        self._pool = ProcessPoolExecutor(
            1, mp_context=multiprocessing.get_context("spawn"), initializer=_lower_priority
        )
        await asyncio.get_running_loop().run_in_executor(self._pool, _warm)

    async def on_stop(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` in the child process (arguments and result are pickled)."""
        if self._pool is None:
            raise ServiceUnavailable("the solver pool is used before the worker started it")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, partial(fn, *args, **kwargs))


solver_pool = app.resource(SolverPool())
