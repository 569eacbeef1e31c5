"""Upload the dashboards to a Grafana with grafana-client: data sources, folder, dashboards.

Idempotent: a data source or the folder is created only when its uid is missing (an existing
one is left as its owner configured it); every dashboard is saved under its stable uid with
`overwrite`, so a second push makes a new version of the same dashboard, never a copy.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import urlparse

from fleet.errors import ConfigError, FleetError
from fleet.settings import Settings

FOLDER_UID = "fleet"
FOLDER_TITLE = "Fleet"


class PushError(FleetError, RuntimeError):
    """Grafana refused or could not be reached."""


@dataclass(frozen=True)
class PushResult:
    """What one push did."""

    created_datasources: list[str]
    created_folder: bool
    dashboards: dict[str, int]  # uid -> version Grafana stored


def datasources(settings: Settings) -> list[dict[str, Any]]:
    """The three data sources the dashboards use, as Grafana's API takes them."""
    clickhouse = urlparse(settings.grafana_clickhouse_url)
    password = settings.grafana_clickhouse_password
    return [
        {"uid": "prometheus", "name": "Prometheus", "type": "prometheus", "access": "proxy",
         "url": settings.grafana_prometheus_url, "isDefault": True},
        {"uid": "clickhouse", "name": "ClickHouse", "type": "grafana-clickhouse-datasource",
         "access": "proxy",
         "jsonData": {"host": clickhouse.hostname or "localhost",
                      "port": clickhouse.port or 8123,
                      "protocol": "http", "secure": clickhouse.scheme == "https",
                      "username": settings.grafana_clickhouse_user,
                      "defaultDatabase": "fleet"},
         "secureJsonData": {"password": password.get_secret_value() if password else ""}},
        {"uid": "redis", "name": "Redis", "type": "redis-datasource", "access": "proxy",
         "url": settings.grafana_redis_url, "jsonData": {"client": "standalone"}},
    ]  # fmt: skip


def _client(settings: Settings) -> Any:
    from grafana_client import GrafanaApi  # imported where used: a heavy HTTP stack

    if settings.grafana_token is None:
        raise ConfigError(
            "FLEET_GRAFANA_TOKEN is not set: create a service account token (Editor) in Grafana"
        )
    return GrafanaApi.from_url(
        settings.grafana_url, credential=settings.grafana_token.get_secret_value()
    )


def _missing(get: Callable[[], Any]) -> bool:
    from grafana_client.client import GrafanaClientError

    try:
        get()
    except GrafanaClientError as exc:
        if exc.status_code == 404:
            return True
        raise
    return False


def push(settings: Settings, boards: dict[str, dict[str, Any]]) -> PushResult:
    """Create what is missing, then save every dashboard (uid -> dashboard JSON)."""
    from grafana_client.client import GrafanaException

    api = _client(settings)
    try:
        created = []
        for source in datasources(settings):
            uid = source["uid"]
            if _missing(partial(api.datasource.get_datasource_by_uid, uid)):
                api.datasource.create_datasource(source)
                created.append(uid)
        new_folder = _missing(lambda: api.folder.get_folder(FOLDER_UID))
        if new_folder:
            api.folder.create_folder(FOLDER_TITLE, uid=FOLDER_UID)
        versions = {}
        for uid, board in boards.items():
            saved = api.dashboard.update_dashboard(
                {"dashboard": {**board, "id": None}, "folderUid": FOLDER_UID, "overwrite": True,
                 "message": "fleet dashboards push"}
            )  # fmt: skip
            versions[uid] = int(saved.get("version", 0))
    except GrafanaException as exc:
        raise PushError(f"Grafana at {settings.grafana_url}: {exc}") from exc
    except OSError as exc:
        raise PushError(f"Grafana at {settings.grafana_url} unreachable: {exc}") from exc
    return PushResult(created, new_folder, versions)


def load(texts: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Rendered dashboard files -> uid -> dashboard JSON."""
    boards = [json.loads(text) for text in texts.values()]
    return {board["uid"]: board for board in boards}
