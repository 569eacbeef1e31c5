"""The README's dispatcher commands work as written (all but docker compose and the worker).

Each `.venv/bin/fleet ...` line of the two marked blocks runs in bash from a scratch
directory (so `dashboards build` writes there, not into the checkout), against this test's
topics and a fake Grafana; then the dispatch commands are read back from `fleet.commands`.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import msgspec

from fleet.records import DispatchCommand
from fleet.settings import PROJECT_ROOT
from fleet.topics import COMMANDS
from tests.conftest import FleetEnv, consume_all
from tests.integration.test_dashboards_push import FakeGrafana
from tests.integration.test_dashboards_push import grafana as grafana  # the fixture

README = PROJECT_ROOT / "README.md"


def block(name: str) -> list[str]:
    """The command lines of one marked README block."""
    text = README.read_text()
    body = re.search(rf"<!-- {name}:start -->\n```bash\n(.*?)```\n<!-- {name}:end -->", text, re.S)
    assert body, f"README has no {name} block"
    return [line for line in body.group(1).splitlines() if line.strip()]


def run(line: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    command = line.replace(".venv/bin/fleet", str(PROJECT_ROOT / ".venv" / "bin" / "fleet"))
    return subprocess.run(["bash", "-c", command], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=120)  # fmt: skip


def test_readme_dashboard_and_dispatch_commands_run_as_written(
    fleet_env: FleetEnv, grafana: FakeGrafana, tmp_path: Path
) -> None:
    env = {**fleet_env, "FLEET_GRAFANA_URL": f"http://127.0.0.1:{grafana.server_port}"}
    for line in block("dispatcher-commands"):
        done = run(line, env, tmp_path)
        assert done.returncode == 0, (line, done.stderr[-2000:])
    built = {p.name for p in (tmp_path / "dashboards" / "json").glob("*.json")}
    assert built == {p.name for p in (PROJECT_ROOT / "dashboards" / "json").glob("*.json")}
    assert set(grafana.dashboards) == {name.removesuffix(".json") for name in built}

    dispatch = block("dispatch-commands")
    sent = []
    for line in dispatch:
        done = run(line, env, tmp_path)
        assert done.returncode == 0, (line, done.stderr[-2000:])
        sent.append(json.loads(done.stdout))
    raw = consume_all(fleet_env["FLEET_KAFKA_BOOTSTRAP"], fleet_env.topic(COMMANDS), 60,
                      expect=len(dispatch))  # fmt: skip
    received = [msgspec.json.decode(v, type=DispatchCommand) for _k, v in raw if v]
    assert sorted(c.command_id for c in received) == sorted(c["command_id"] for c in sent)
    assert {k for k, _v in raw} == {b"rt-20261121-0042"}
    by_type = {c.type: c for c in received}
    assert set(by_type) == {"optimize", "reassign", "accept_proposal", "add_stop",
                            "remove_stop", "resequence", "lock_stop", "cancel_route"}  # fmt: skip
    assert by_type["reassign"].to_driver_id == "drv-0007"
    assert by_type["reassign"].stop_ids == ["st-17", "st-18"]
    assert by_type["add_stop"].stop is not None and by_type["add_stop"].stop.window_end_ms


def test_dispatch_rejects_a_bad_command_before_sending(fleet_env: FleetEnv, tmp_path: Path):
    done = run(".venv/bin/fleet dispatch remove-stop 'rt bad' st-1", {**fleet_env}, tmp_path)
    assert done.returncode == 2 and "route_id" in done.stderr
    done = run(".venv/bin/fleet dispatch add-stop rt-1 st-1 123.4 13.4", {**fleet_env}, tmp_path)
    assert done.returncode == 2 and "lat=123.4" in done.stderr
    assert consume_all(fleet_env["FLEET_KAFKA_BOOTSTRAP"], fleet_env.topic(COMMANDS), 5) == []
