"""Settings that only make sense together are checked at start, naming both variables."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from fleet.settings import Settings


@pytest.mark.parametrize(
    ("overrides", "names"),
    [
        ({"behind_schedule_resolve_s": 600.0}, ("BEHIND_SCHEDULE_RESOLVE_S", "BEHIND_SCHEDULE_S")),
        ({"behind_schedule_resolve_s": 900.0}, ("BEHIND_SCHEDULE_RESOLVE_S", "BEHIND_SCHEDULE_S")),
        ({"off_route_resolve_m": 200.0}, ("OFF_ROUTE_RESOLVE_M", "OFF_ROUTE_M")),
        ({"stale_check_interval_s": 300.0}, ("STALE_CHECK_INTERVAL_S", "STALE_AFTER_S")),
        ({"history_retry_initial_s": 60.0}, ("HISTORY_RETRY_INITIAL_S", "HISTORY_RETRY_MAX_S")),
        ({"metrics_port": 7000, "worker_web_port": 7000}, ("WORKER_WEB_PORT", "METRICS_PORT")),
    ],
)
def test_inconsistent_pair_is_rejected_naming_both(
    overrides: dict[str, float], names: tuple[str, str]
) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(**overrides)  # type: ignore[arg-type]
    message = str(caught.value)
    for name in names:
        assert f"FLEET_{name}=" in message


def test_environment_is_checked_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_OFF_ROUTE_RESOLVE_M", "500")
    with pytest.raises(ValidationError, match=r"FLEET_OFF_ROUTE_M=150\.0"):
        Settings()


def test_consistent_settings_pass() -> None:
    s = Settings(off_route_m=300.0, off_route_resolve_m=299.0, metrics_port=0, history_query_port=0)
    assert s.off_route_resolve_m < s.off_route_m
