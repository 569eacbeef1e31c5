"""`make demo`'s day through a real worker: a short day of 20 drivers writes its report, and
the report holds what the pipeline published for the troubles the day contains."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

from fleet.settings import PROJECT_ROOT, Settings

DRIVERS = 20
DURATION_S = 40


def test_short_day_writes_a_report_with_the_pipelines_answers(
    stack: Settings, tmp_path: Path
) -> None:
    """Every day has a silent driver, a failed first stop and two orders nobody can serve:
    the report shows the stale and failed_delivery alerts tracking must raise, and with the
    decision agent an answer to every order: the servable ones (50-150 m, scaled, from a
    working driver's next stops, due no sooner than the end of the day nor than twice the
    driver's travel at the planner's speed) assigned, at least one of them, and the two
    impossible ones (25 km out, due in 20 s) unassigned_order; with the ETA agent,
    EtaUpdates from the model the demo trained."""
    report = tmp_path / "report"
    env = {
        **os.environ,
        "FLEET_VAR_DIR": str(tmp_path / "var"),
        "FLEET_PARTITIONS": "4",
        "FLEET_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
        "FLEET_REDIS_URL": stack.redis_url,
    }
    env.pop("FLEET_CLICKHOUSE_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "load_tests.demo", "--drivers", str(DRIVERS),
         "--duration", str(DURATION_S), "--report", str(report)],
        env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]

    page = (report / "index.html").read_text()
    assert "Exception log and the decisions taken" in page
    assert (report / "fleet-map.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    story = json.loads((report / "story.json").read_text())
    opened = story["alerts_opened"]
    assert opened.get("stale", 0) >= 1, opened
    assert opened.get("failed_delivery", 0) >= 1, opened
    logged = {row["kind"] for row in story["exceptions"]}
    assert {"stale", "failed_delivery"} <= logged
    assert 2 <= len(story["exceptions"]) <= story["alerts"]
    assert story["drivers"] == DRIVERS and story["stops"] > 0

    if importlib.util.find_spec("streams.decision") is not None:
        assert story["orders_sent"] >= 4
        assigned, unassigned = set(story["orders_assigned"]), set(story["orders_unassigned"])
        unservable = set(story["orders_unservable_sent"])
        assert len(assigned | unassigned) == story["orders_sent"], (assigned, unassigned)
        assert unservable <= unassigned and not unservable & assigned, (unservable, assigned)
        assert assigned - unservable, ("no servable order assigned", unassigned)
    if importlib.util.find_spec("streams.eta") is not None:
        assert story["eta_updates"] >= 1
        assert all(version.startswith("eta-") for version in story["eta_models"])
