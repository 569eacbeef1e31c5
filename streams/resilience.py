"""Retry policy for effects on services: transient failures wait and retry, never drop data."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from prometheus_client import Counter
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger(__name__)
T = TypeVar("T")

EFFECT_RETRIES = Counter(
    "fleet_effect_retries_total", "Retries of a write to a service after a transient failure",
    ["effect"],
)  # fmt: skip

TRANSIENT: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ConnectionError,
    TimeoutError,
    OSError,
)


async def retry_transient(
    effect: str, action: Callable[[], Awaitable[T]], max_delay_s: float = 5.0
) -> T:
    """Run ``action`` until it succeeds; back off on transient errors (this is backpressure:
    the agent does not take the next batch while a store is down)."""
    delay = 0.1
    while True:
        try:
            return await action()
        except TRANSIENT as exc:
            EFFECT_RETRIES.labels(effect).inc()
            log.warning("%s failed (%s); retrying in %.1f s", effect, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay_s)
