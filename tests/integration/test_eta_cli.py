"""`fleet eta` end to end on the embedded history engine: simulate, train, evaluate, promote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fleet.settings import Settings
from load_tests.history_sim import DAY_MS, WorldParams, write_days

START_MS = 1_791_158_400_000  # 2026-10-05 00:00 UTC

pytestmark = pytest.mark.integration


def _fleet(var_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FLEET_VAR_DIR": str(var_dir)}
    return subprocess.run(
        [sys.executable, "-m", "fleet.cli", "eta", *args, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_train_evaluate_promote_list_on_simulated_history(tmp_path: Path) -> None:
    counts = write_days(Settings(var_dir=tmp_path), WorldParams(drivers=8), START_MS, 5)
    assert counts["days"] == 5 and counts["pings"] > 0

    train = _fleet(
        tmp_path, "train", "--since", str(START_MS), "--until", str(START_MS + 4 * DAY_MS)
    )
    assert train.returncode == 0, train.stderr
    trained = json.loads(train.stdout)
    version = trained["version"]
    assert trained["training_window"] == {"since_ms": START_MS, "until_ms": START_MS + 4 * DAY_MS}
    assert "remaining_m" in trained["features"] and trained["n_examples"] > 0

    ev = _fleet(tmp_path, "evaluate", version)  # default: from the end of training on
    assert ev.returncode == 0, ev.stderr
    result = json.loads(ev.stdout)
    assert result["held_out"] is True and result["n"] > 0
    for key in ("mae_s", "baseline_mae_s", "p90_abs_error_s", "coverage_p10_p90"):
        assert isinstance(result[key], float)
    report = Path(result["report"])
    assert report.is_file() and (report.parent / "calibration.png").is_file()

    promote = _fleet(tmp_path, "promote", version)
    decision = json.loads(promote.stdout)
    passed = all(c["passed"] for c in decision["checks"])
    assert decision["promoted"] is passed and promote.returncode == (0 if passed else 1)

    listing = json.loads(_fleet(tmp_path, "list").stdout)
    assert [r["version"] for r in listing] == [version]
    assert listing[0]["promoted"] is passed
    assert listing[0]["metrics"]["held_out"]["mae_s"] == result["mae_s"]


def test_training_on_an_empty_period_is_a_clear_error(tmp_path: Path) -> None:
    write_days(Settings(var_dir=tmp_path), WorldParams(drivers=2), START_MS, 1)
    result = _fleet(tmp_path, "train", "--since", "2020-01-01", "--until", "2020-01-02")
    assert result.returncode == 2
    assert "labelled examples" in result.stderr
