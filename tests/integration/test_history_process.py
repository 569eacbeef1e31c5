"""History's own process: killed, it comes back and nothing is lost; it dies with its worker."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import psutil
import pytest

from fleet.history.process import PROCESS_NAME
from fleet.records import encode
from fleet.topics import PINGS
from tests.conftest import FleetEnv, WorkerHandle, produce, wait_until
from tests.integration.test_history_exactly_once import count, fleet_pings

pytestmark = pytest.mark.integration


def history_child(worker_pid: int) -> psutil.Process:
    """The worker's history process (found by the name it gives itself)."""
    found = [
        p for p in psutil.Process(worker_pid).children(recursive=True)
        if p.name() == PROCESS_NAME.decode()
    ]  # fmt: skip
    assert len(found) == 1, [p.name() for p in psutil.Process(worker_pid).children()]
    return found[0]


def test_a_killed_history_process_is_replaced_and_every_ping_lands_once(
    fleet_env: FleetEnv, worker: Callable[..., WorkerHandle]
) -> None:
    settings = fleet_env.settings
    pings = fleet_pings(int(time.time() * 1000) - 3_600_000)
    messages = [(p.driver_id.encode(), encode(p)) for p in pings]
    half = len(messages) // 2
    handle = worker(fleet_env)
    assert handle.pid is not None

    def stored() -> int:
        return count(settings, "SELECT count() AS n FROM fleet.pings", starting_ok=True)

    produce(settings.kafka_bootstrap, fleet_env.topic(PINGS), messages[:half])
    assert wait_until(lambda: stored() > 0, timeout=60), handle.tail()
    first = history_child(handle.pid)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    produce(settings.kafka_bootstrap, fleet_env.topic(PINGS), messages[half:])
    assert wait_until(lambda: stored() == len(pings), timeout=120), (stored(), handle.tail())
    second = history_child(handle.pid)
    assert second.pid != first.pid
    identities = "SELECT uniqExact(driver_id, ts_ms, seq) AS n FROM fleet.pings"
    assert count(settings, identities) == len(pings)
    assert "history process exited" in handle.log.read_text()


def test_the_history_process_dies_with_a_killed_worker(
    fleet_env: FleetEnv, worker: Callable[..., WorkerHandle]
) -> None:
    handle = worker(fleet_env)
    assert handle.pid is not None
    child = history_child(handle.pid)
    os.kill(handle.pid, signal.SIGKILL)
    child.wait(10)  # raises psutil.TimeoutExpired if it outlives its worker
    assert not child.is_running()
