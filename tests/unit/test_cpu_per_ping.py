"""CPU per processed ping from a run's samples: only seconds with pings processed count."""

from __future__ import annotations

import pytest

from load_tests.load.cpu_per_ping import cpu_per_ping


def test_cpu_counts_only_the_seconds_that_processed_pings() -> None:
    samples = [
        {"t": 0.0, "processed": 0, "cpu": {"worker": 100.0}},
        {"t": 1.0, "processed": 0, "cpu": {"worker": 100.0}},  # loading plans: not counted
        {"t": 2.0, "processed": 1000, "cpu": {"worker": 50.0, "redis": 10.0}},
        {"t": 4.0, "processed": 3000, "cpu": {"worker": 100.0, "redis": 20.0}},
    ]
    pings, per_ping = cpu_per_ping(samples)
    assert pings == 3000
    # worker: 0.5 s + 2 s = 2.5 s over 3,000 pings; redis: 0.1 s + 0.4 s = 0.5 s
    assert per_ping["worker"] == pytest.approx(2.5e6 / 3000)
    assert per_ping["redis"] == pytest.approx(0.5e6 / 3000)


def test_no_pings_no_figures() -> None:
    assert cpu_per_ping([{"t": 0.0, "processed": 0, "cpu": {}}]) == (0.0, {})
