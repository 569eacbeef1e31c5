"""Load-test config, probe arithmetic and verdicts (no services)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleet.errors import ConfigError
from load_tests.load.config import load_config
from load_tests.load.probe import Counters, quantile, share_within
from load_tests.load.verdict import lag_seconds


def test_shipped_scenarios_parse_and_short_versions_override() -> None:
    config = load_config()
    assert {"baseline", "10x", "peak", "soak", "kill-worker", "scale-out"} <= set(config.names())
    full = config.scenario("10x")
    assert full.rate == 10_000
    short = config.scenario("baseline", short=True)
    assert (short.drivers, short.duration_s) == (200, 20.0)
    assert config.scenario("baseline", short=True, drivers=50).drivers == 50


def test_peak_rate_follows_its_steps() -> None:
    peak = load_config().scenario("peak")
    assert peak.rate_at(0) == peak.steps_pings_per_s[0]
    assert peak.rate_at(peak.step_s * 1.5) == peak.steps_pings_per_s[1]
    assert peak.rate_at(10**6) == peak.steps_pings_per_s[-1]
    assert peak.total_s == peak.step_s * len(peak.steps_pings_per_s)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[x]\nfleet_size = 3\n", "unknown keys ['fleet_size']"),
        ("[x]\ndrivers = 0\n", "drivers=0"),
        ("[x]\ninvalid_rate = 1.5\n", "invalid_rate=1.5"),
        ("[x]\nfaults = [{ at_s = 1.0, action = 'reboot' }]\n", "action='reboot'"),
        ("[slo]\np99 = 3\n", "unknown [slo] keys"),
    ],
)
def test_bad_config_names_the_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "s.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config(path)


def test_unknown_scenario_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="known: baseline"):
        load_config().scenario("nope")


@given(st.lists(st.integers(min_value=0, max_value=1000), min_size=1, max_size=30))
def test_counters_stay_monotonic_across_restarts(increments: list[int]) -> None:
    """A worker restart resets its counter to 0 and gives the endpoint a new process start
    time; the total keeps counting from where it was, even when the new count has already
    passed the old one at the first sample after the restart."""
    counters = Counters()
    series = ("fleet_pings_accepted_total", ())
    start = ("process_start_time_seconds", ())
    value, total, started = 0.0, 0.0, 1_000.0
    for i, inc in enumerate(increments):
        if i % 7 == 6:  # a restart: the new process starts from zero
            value, started = 0.0, started + 60
        value += inc
        total += inc
        counters.update(9464, {series: value, start: started})
        assert counters.total("fleet_pings_accepted_total") == total


@given(st.lists(st.integers(min_value=1, max_value=1000), min_size=1, max_size=30))
def test_without_a_start_time_a_drop_is_a_restart(increments: list[int]) -> None:
    counters = Counters()
    series = ("fleet_pings_accepted_total", ())
    value, total = 0.0, 0.0
    for i, inc in enumerate(increments):
        if i % 7 == 6:  # a restart seen while the new count is still below the old one
            inc = min(inc, max(0, int(value) - 1))
            value = 0.0
        value += inc
        total += inc
        counters.update(9464, {series: value})
        assert counters.total("fleet_pings_accepted_total") == total


def test_share_within_is_exact_on_a_bucket_bound() -> None:
    buckets = [(0.25, 90.0), (0.5, 99.0), (1.0, 100.0), (float("inf"), 100.0)]
    assert share_within(buckets, 0.5) == 0.99
    assert 0.25 < quantile(buckets, 0.95) < 0.5


def test_lag_in_seconds_is_messages_over_the_asked_rate() -> None:
    from load_tests.load.probe import Sample

    sample = Sample(t=1, offered=0, processed=0, accepted=0, rejected=0, lag_msgs=5000,
                    latency=[], history_rows=0, history_lag=0, rate=1000.0)  # fmt: skip
    assert lag_seconds(sample) == 5.0
