"""Shared fixtures: the real local services, isolated topics per test, and worker processes.

Integration tests need Kafka and Redis. The ``stack`` fixture starts whichever is not running
(and stops at the end exactly what it started). When a service cannot be had, the test
FAILS under CI (env ``CI`` set) and is skipped elsewhere.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer

from fleet import services
from fleet.clients import confluent_config
from fleet.settings import Settings, get_settings
from load_tests.harness import WorkerProcess, free_port

WorkerHandle = WorkerProcess  # a `fleet worker` subprocess (load_tests/harness.py)


def service_unavailable(message: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI is set: a missing service is a failure)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def stack() -> Iterator[Settings]:
    """Kafka, Redis and Mosquitto up for the session; returns the base settings."""
    settings = Settings()
    started = []
    needed = (services.Kafka(settings), services.Redis(settings), services.Mosquitto(settings))
    for service in needed:
        was = service.status().state
        try:
            service.up(lambda _msg: None)
        except Exception as exc:
            service_unavailable(f"{service.name} unavailable: {exc}")
        if was == "stopped":
            started.append(service)
    yield settings
    for service in reversed(started):
        service.down(lambda _msg: None)


class FleetEnv(dict[str, str]):
    """Environment of an isolated pipeline run: own topics, consumer group, var dir, ports."""

    settings: Settings
    prefix: str

    def topic(self, base: str) -> str:
        return f"{self.prefix}{base}"


TEST_PARTITIONS = 4  # enough to exercise partitioning; keeps the broker's open files low


@pytest.fixture
def fleet_env(stack: Settings, tmp_path: Path) -> Iterator[FleetEnv]:
    """Unique FLEET_TOPIC_PREFIX / FLEET_APP_ID / FLEET_VAR_DIR / ports; topics created, and
    deleted afterwards with every topic the run's consumer groups made (changelogs)."""
    run = uuid.uuid4().hex[:10]
    overrides = {
        "FLEET_PARTITIONS": str(TEST_PARTITIONS),
        "FLEET_TOPIC_PREFIX": f"t{run}.",
        "FLEET_APP_ID": f"test-{run}",
        "FLEET_VAR_DIR": str(tmp_path / "var"),
        "FLEET_METRICS_PORT": str(free_port()),
        "FLEET_WORKER_WEB_PORT": str(free_port()),
        "FLEET_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
        "FLEET_REDIS_URL": stack.redis_url,
    }
    env = FleetEnv({**os.environ, **overrides})
    env.prefix = overrides["FLEET_TOPIC_PREFIX"]
    env.settings = Settings(
        topic_prefix=env.prefix,
        app_id=overrides["FLEET_APP_ID"],
        var_dir=Path(overrides["FLEET_VAR_DIR"]),
        kafka_bootstrap=stack.kafka_bootstrap,
        redis_url=stack.redis_url,
        partitions=TEST_PARTITIONS,
    )
    services.ensure_topics(env.settings)
    yield env
    services.delete_topics(stack.kafka_bootstrap, (env.prefix, f"{overrides['FLEET_APP_ID']}-"))


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Factory: worker(env, **extra_env) starts a ready `fleet worker`; killed at teardown."""
    handles: list[WorkerProcess] = []

    def start(env: dict[str, str], **extra: Any) -> WorkerProcess:
        merged = {**env, **{k: str(v) for k, v in extra.items()}}
        handle = WorkerProcess(merged, tmp_path / f"worker-{len(handles)}.log", ready_s=90.0)
        handles.append(handle)
        return handle.start()

    yield start
    for handle in handles:
        handle.kill()


def kafka_config(bootstrap: str, extra: dict[str, Any]) -> dict[str, Any]:
    """A confluent-kafka config for ``bootstrap`` with the environment's security settings."""
    return confluent_config(get_settings(), {"bootstrap.servers": bootstrap, **extra})


def produce(bootstrap: str, topic: str, messages: list[tuple[bytes | None, bytes | None]]) -> None:
    """Publish (key, value) pairs with confluent-kafka and wait for delivery."""
    producer = Producer(
        kafka_config(bootstrap, {"partitioner": "murmur2_random", "linger.ms": 5, "log_level": 3})
    )
    errors: list[str] = []

    def report(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(str(err))

    for key, value in messages:
        producer.produce(topic, key=key, value=value, on_delivery=report)
        producer.poll(0)
    producer.flush(30)
    assert not errors, errors


def consume_all(
    bootstrap: str, topic: str, timeout: float = 30.0, expect: int | None = None
) -> list[tuple[bytes | None, bytes | None]]:
    """Read a topic from the beginning until `expect` messages arrived or `timeout` passed
    (with `expect=None`, until the topic has been quiet for 3 s)."""
    consumer = Consumer(
        kafka_config(bootstrap, {"group.id": f"reader-{uuid.uuid4().hex}",
                                 "auto.offset.reset": "earliest", "enable.auto.commit": False,
                                 "log_level": 3})
    )  # fmt: skip
    consumer.subscribe([topic])
    out: list[tuple[bytes | None, bytes | None]] = []
    deadline = time.monotonic() + timeout
    quiet_since = time.monotonic()
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                if expect is None and out and time.monotonic() - quiet_since > 3:
                    break
                continue
            if msg.error():
                continue
            out.append((msg.key(), msg.value()))
            quiet_since = time.monotonic()
            if expect is not None and len(out) >= expect:
                break
    finally:
        consumer.close()
    return out


def wait_until(predicate: Callable[[], Any], timeout: float = 60.0, interval: float = 0.25) -> Any:
    """Poll until predicate() is truthy; return its value, or fail with the last value."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = predicate()
    return value
