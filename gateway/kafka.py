"""The gateway's Kafka producer: idempotent, acks=all, each send awaited until acknowledged.

A send either resolves once the broker acknowledged the write or fails with
``ServiceUnavailable`` within ``FLEET_GATEWAY_KAFKA_TIMEOUT_S`` (librdkafka's
``message.timeout.ms``); the gateway answers an app only then.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import KafkaError, Producer

from fleet.clients import confluent_config
from fleet.errors import ServiceUnavailable
from fleet.settings import Settings

log = logging.getLogger(__name__)

Delivered = Callable[[str | None], None]  # called with None on success, else the error text


def producer_config(settings: Settings) -> dict[str, Any]:
    """librdkafka settings: no duplicates from retries, every write on every in-sync replica."""
    timeout_ms = int(settings.gateway_kafka_timeout_s * 1000)
    return confluent_config(settings, {
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 2,
        "message.timeout.ms": timeout_ms,
        "request.timeout.ms": min(30_000, timeout_ms),
        "partitioner": "murmur2_random",  # same partition for a key as Java/Faust producers
        "log_level": 3,
    })  # fmt: skip


class KafkaWriter:
    """A confluent-kafka producer polled on its own thread; sends complete asyncio futures."""

    def __init__(self, settings: Settings) -> None:
        self._producer = Producer(producer_config(settings), error_cb=self._on_error)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="gateway-kafka", daemon=True)
        self._thread.start()
        self.last_error: str | None = None

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.05)

    def _on_error(self, err: KafkaError) -> None:
        self.last_error = str(err)
        log.warning("kafka producer: %s", err)

    def send(self, topic: str, key: bytes | None, value: bytes, done: Delivered) -> None:
        """Queue one write; ``done`` runs on the poll thread once it is acknowledged or failed."""

        def report(err: KafkaError | None, _msg: Any) -> None:
            if err is None:
                self.last_error = None
            done(None if err is None else str(err))

        try:
            self._producer.produce(topic, value=value, key=key, on_delivery=report)
        except BufferError:
            done("the producer's queue is full")
        except Exception as exc:  # KafkaException: unknown topic, message too large, ...
            done(f"{type(exc).__name__}: {exc}")

    async def send_all(self, messages: Sequence[tuple[str, bytes | None, bytes]]) -> None:
        """Write every (topic, key, value); return once Kafka acknowledged all of them."""
        if not messages:
            return
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in messages]
        for (topic, key, value), future in zip(messages, futures, strict=True):
            self.send(topic, key, value, _resolver(loop, future))
        errors = [e for e in await asyncio.gather(*futures) if e is not None]
        if errors:
            raise ServiceUnavailable(f"Kafka failed {len(errors)} write(s): {errors[0]}")

    def close(self, timeout_s: float = 10.0) -> None:
        self._producer.flush(timeout_s)
        self._stop.set()
        self._thread.join(timeout_s)


def _resolver(loop: asyncio.AbstractEventLoop, future: asyncio.Future[str | None]) -> Delivered:
    def done(error: str | None) -> None:
        loop.call_soon_threadsafe(_settle, future, error)

    return done


def _settle(future: asyncio.Future[str | None], error: str | None) -> None:
    if not future.done():
        future.set_result(error)
