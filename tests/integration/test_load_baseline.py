"""The short baseline load test through the real stack checks its own no-loss verdict."""

from __future__ import annotations

from pathlib import Path

from fleet.settings import Settings
from load_tests.load import report
from load_tests.load.config import load_config
from load_tests.load.runner import Run
from load_tests.load.verdict import judge


def test_short_baseline_loses_no_valid_ping(stack: Settings, tmp_path: Path) -> None:
    """200 drivers for ~20 s (routes, events, orders, commands, offline bursts, duplicates,
    invalid messages) through a `fleet worker`: every valid ping sent is in history once and
    every driver's newest ping is its live position in Redis; duplicates and invalid
    messages are not counted as pings; the report is written with its verdicts."""
    config = load_config()
    scenario = config.scenario("baseline", short=True)
    result = Run(scenario, stack, scenario.workers, config.slo).execute()

    v = result.verification
    assert not v.error, v.error
    assert v.expected_pings == result.ledger.valid_pings > 0
    assert result.ledger.duplicates > 0 and result.ledger.invalid > 0  # the mix was exercised
    assert v.history_pings == v.expected_pings, v.examples
    assert v.redis_checked == scenario.drivers and v.redis_stale == 0, v.examples
    assert result.outputs.dead_letters >= result.ledger.invalid

    path, _verdict = report.write(result, config.slo, tmp_path / "report", "test")
    text = path.read_text()
    no_loss = next(x for x in judge(result, config.slo) if x.name == "no valid ping lost")
    assert no_loss.passed
    assert "| no valid ping lost | 0 lost |" in text and (tmp_path / "report/lag.png").exists()
