"""The compose stack (no Docker engine here): loopback-only ports, passwords from infra/.env."""

from __future__ import annotations

import re
import subprocess
import xml.etree.ElementTree as ET
from typing import Any

import pytest
import yaml

from fleet.settings import PROJECT_ROOT

INFRA = PROJECT_ROOT / "infra"
COMPOSE = yaml.safe_load((INFRA / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN", re.IGNORECASE)
REQUIRED_FROM_ENV = re.compile(r"^\$\{([A-Z_]+):\?[^}]+\}$")  # ${VAR:?message}


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_published_port_is_on_loopback_only(name: str) -> None:
    for entry in SERVICES[name].get("ports", []):
        text = entry if isinstance(entry, str) else f"{entry.get('host_ip', '')}:{entry}"
        assert text.startswith("127.0.0.1:"), f"{name} publishes {entry!r} beyond loopback"


def test_no_literal_password_and_every_secret_comes_from_the_env_file() -> None:
    referenced = set()
    for name, service in SERVICES.items():
        for key, value in env_of(service).items():
            if SECRET_NAME.search(key):
                match = REQUIRED_FROM_ENV.match(value)
                assert match, f"{name}.{key} must be ${{VAR:?...}} from infra/.env, not {value!r}"
                referenced.add(match.group(1))
    assert {"CLICKHOUSE_PASSWORD", "CLICKHOUSE_READER_PASSWORD", "GRAFANA_ADMIN_PASSWORD"} <= (
        referenced
    )
    example = dict(
        line.split("=", 1)
        for line in (INFRA / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert referenced <= set(example)
    assert all(example[var] == "" for var in referenced)  # the example holds no password


def test_the_real_env_file_is_ignored_by_git() -> None:
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "infra/.env"], cwd=PROJECT_ROOT, check=False
    )
    assert ignored.returncode == 0


def test_clickhouse_has_a_writer_and_a_read_only_reader_account() -> None:
    clickhouse = SERVICES["clickhouse"]
    env = env_of(clickhouse)
    assert env["CLICKHOUSE_USER"] and "CLICKHOUSE_SKIP_USER_SETUP" not in env
    mounted = [v.split(":")[0] for v in clickhouse["volumes"]]
    assert "./clickhouse-server/users.d/fleet_reader.xml" in mounted
    root = ET.parse(INFRA / "clickhouse-server" / "users.d" / "fleet_reader.xml").getroot()
    profile = root.find("profiles/fleet_reader")
    user = root.find("users/fleet_reader")
    assert profile is not None and user is not None
    assert profile.findtext("readonly") == "2"
    password = user.find("password")
    assert password is not None and password.get("from_env") == "CLICKHOUSE_READER_PASSWORD"
    assert not (password.text or "").strip()
    grants = [q.text for q in user.findall("grants/query")]
    assert grants == ["GRANT SELECT ON fleet.*"]


def test_grafana_reads_clickhouse_with_the_read_only_account() -> None:
    provisioning = INFRA / "grafana" / "provisioning" / "datasources" / "fleet.yml"
    sources = {s["uid"]: s for s in yaml.safe_load(provisioning.read_text())["datasources"]}
    clickhouse = sources["clickhouse"]
    assert clickhouse["jsonData"]["username"] == "fleet_reader"
    assert clickhouse["secureJsonData"]["password"] == "$CLICKHOUSE_READER_PASSWORD"
    assert "CLICKHOUSE_READER_PASSWORD" in env_of(SERVICES["grafana"])
