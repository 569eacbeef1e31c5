"""Retries of the agents' effects on services: transient failures wait and retry, never drop.

Waiting is the backpressure: an agent does not take its next batch while a store is down.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError
from faust.exceptions import ProducerSendError
from prometheus_client import Counter
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from fleet.retry import RetryPolicy

log = logging.getLogger(__name__)
T = TypeVar("T")

EFFECT_RETRIES = Counter(
    "fleet_effect_retries_total", "Retries of a write to a service after a transient failure",
    ["effect"],
)  # fmt: skip

TRANSIENT: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    KafkaConnectionError,
    KafkaTimeoutError,
    ConnectionError,
    TimeoutError,
    OSError,
    ProducerSendError,  # a send Kafka refused for now (no leader, metadata, buffer full)
)
EFFECTS_POLICY = RetryPolicy(initial_s=0.1, max_s=5.0)


def is_transient(exc: BaseException) -> bool:
    """A failure of a service that waiting may cure (not a bug, not bad data)."""
    if isinstance(exc, TRANSIENT):
        return True
    return isinstance(exc, KafkaError) and bool(getattr(exc, "retriable", False))


async def retry_transient(effect: str, action: Callable[[], Awaitable[T]]) -> T:
    """Run ``action`` until it succeeds, backing off on transient errors (logged, counted)."""

    def on_retry(exc: BaseException, delay: float) -> None:
        EFFECT_RETRIES.labels(effect).inc()
        log.warning("%s failed (%s); retrying in %.1f s", effect, exc, delay)

    return await EFFECTS_POLICY.run(action, is_transient, on_retry)
