"""Security settings: secrets from files, validation, masking, client configs, role ACLs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from fleet.cli import _shown
from fleet.clients import aiokafka_kwargs, confluent_config, faust_credentials, redis_kwargs
from fleet.errors import ConfigError
from fleet.security import KAFKA_ROLES, WORKER_COMMANDS, redis_acl_rules, role_grants
from fleet.settings import PROJECT_ROOT, Settings
from fleet.topics import COMMANDS, PINGS, ROUTES, topic_name


def _secure(**extra: object) -> Settings:
    return Settings(
        kafka_security_protocol="SASL_SSL",
        kafka_username="gateway",
        kafka_password=SecretStr("pw-123"),
        **extra,  # type: ignore[arg-type]
    )


def test_a_password_file_is_read_without_its_trailing_newline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "kafka.password"
    secret.write_text("s3cret with spaces\n")
    monkeypatch.setenv("FLEET_KAFKA_PASSWORD_FILE", str(secret))
    monkeypatch.delenv("FLEET_KAFKA_PASSWORD", raising=False)
    assert Settings().kafka_password == SecretStr("s3cret with spaces")


def test_a_missing_password_file_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_REDIS_PASSWORD_FILE", "/nonexistent/redis.password")
    with pytest.raises(ConfigError, match="FLEET_REDIS_PASSWORD_FILE=/nonexistent"):
        Settings()


def test_a_value_and_its_file_together_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pw").write_text("a")
    monkeypatch.setenv("FLEET_KAFKA_PASSWORD", "b")
    monkeypatch.setenv("FLEET_KAFKA_PASSWORD_FILE", str(tmp_path / "pw"))
    with pytest.raises(ConfigError, match="not both"):
        Settings()


def test_sasl_without_credentials_is_refused() -> None:
    with pytest.raises(ValidationError, match="FLEET_KAFKA_USERNAME"):
        Settings(kafka_security_protocol="SASL_SSL")


def test_fleet_config_masks_every_secret_and_url_password() -> None:
    settings = _secure(redis_url="rediss://worker:hunter2@127.0.0.1:6380/0")
    shown = {name: str(_shown(value)) for name, value in settings.model_dump().items()}
    assert "pw-123" not in "".join(shown.values())
    assert "hunter2" not in "".join(shown.values())
    assert shown["kafka_password"] == "***"
    assert shown["redis_url"] == "rediss://worker:***@127.0.0.1:6380/0"
    assert "pw-123" not in repr(settings)


def test_plain_settings_give_plain_clients() -> None:
    settings = Settings(kafka_bootstrap="h:1")
    assert confluent_config(settings, {"group.id": "g"}) == {
        "bootstrap.servers": "h:1",
        "group.id": "g",
    }
    assert aiokafka_kwargs(settings) == {"bootstrap_servers": "h:1"}
    assert faust_credentials(settings) is None
    assert redis_kwargs(settings) == {}


def test_secure_settings_reach_every_client_kind(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not read here")
    settings = _secure(kafka_ssl_cafile=ca, redis_username="worker", redis_password="r")
    config = confluent_config(settings)
    assert (config["security.protocol"], config["sasl.mechanism"]) == ("SASL_SSL", "SCRAM-SHA-512")
    assert (config["sasl.username"], config["sasl.password"]) == ("gateway", "pw-123")
    assert config["ssl.ca.location"] == str(ca)
    assert redis_kwargs(settings) == {"username": "worker", "password": "r"}


def test_every_role_but_admin_has_grants_and_nobody_else_writes_commands() -> None:
    settings = Settings(topic_prefix="t1.")
    grants = role_grants(settings)
    assert set(grants) == set(KAFKA_ROLES) - {"admin"}

    def writers(base: str) -> set[str]:
        name = topic_name(settings, base)
        return {
            role
            for role, gs in grants.items()
            for g in gs
            if g.resource == "topic"
            and (g.name == name or (g.pattern == "prefixed" and name.startswith(g.name)))
            and ({"WRITE", "ALL"} & set(g.operations))
        }

    assert writers(COMMANDS) == {"dispatch"}
    assert writers(PINGS) == {"gateway"}
    assert writers(ROUTES) == {"pipeline", "planner"}


def test_redis_rules_keep_only_password_hashes() -> None:
    rules = redis_acl_rules({"admin": "a-pw", "worker": "w-pw", "dashboard": "d-pw"})
    assert rules["default"].startswith("off")
    assert not any(pw in " ".join(rules.values()) for pw in ("a-pw", "w-pw", "d-pw"))
    assert "~fleet:*" in rules["worker"] and "~fleet:*" in rules["dashboard"]


def test_the_worker_redis_user_may_run_every_command_of_the_worker_scripts() -> None:
    """Each ``redis.call('X', ...)`` in the worker's Lua scripts is in the worker's ACL."""
    called = {
        name.lower()
        for folder in ("streams", "fleet")
        for path in (PROJECT_ROOT / folder).rglob("*.py")
        for name in re.findall(r"redis\.call\(['\"](\w+)", path.read_text())
    }
    assert called, "no Lua redis.call found: the scan is broken"
    assert called <= set(WORKER_COMMANDS), called - set(WORKER_COMMANDS)
