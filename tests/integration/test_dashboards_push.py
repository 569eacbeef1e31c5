"""`fleet dashboards push` against a fake Grafana (no Grafana can run here).

The fake implements only the endpoints the push uses (data source by uid, create data
source, folder by uid, create folder, save dashboard) with Grafana's status codes and
versioning; the tests assert the exact requests grafana-client sends.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from dashboards.build import render
from dashboards.push import PushError, load, push
from fleet.errors import ConfigError
from fleet.settings import PROJECT_ROOT, Settings
from tests.conftest import free_port

TOKEN = "glsa_test_token"  # a fake server's token


class FakeGrafana(ThreadingHTTPServer):
    """Grafana's HTTP API, the part the push uses, in memory."""

    def __init__(self, port: int) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.requests: list[tuple[str, str, str | None, Any]] = []
        self.datasources: dict[str, dict[str, Any]] = {}
        self.folders: dict[str, dict[str, Any]] = {}
        self.dashboards: dict[str, dict[str, Any]] = {}


class _Handler(BaseHTTPRequestHandler):
    server: FakeGrafana

    def log_message(self, *_args: Any) -> None:
        pass

    def _reply(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.server.requests.append((self.command, self.path, self.headers["Authorization"], body))
        return body

    def do_GET(self) -> None:
        self._record()
        kind, _, uid = self.path.removeprefix("/api/").rpartition("/")
        store = {"datasources/uid": self.server.datasources, "folders": self.server.folders}
        found = store.get(kind, {}).get(uid)
        self._reply(200, found) if found else self._reply(404, {"message": "not found"})

    def do_POST(self) -> None:
        body = self._record()
        if self.path == "/api/datasources":
            self.server.datasources[body["uid"]] = body
            self._reply(200, {"message": "Datasource added", "datasource": body})
        elif self.path == "/api/folders":
            self.server.folders[body["uid"]] = body
            self._reply(200, body)
        elif self.path == "/api/dashboards/db":
            board = body["dashboard"]
            old = self.server.dashboards.get(board["uid"])
            if old is not None and not body.get("overwrite"):
                self._reply(412, {"message": "version-mismatch"})
                return
            version = 1 if old is None else old["version"] + 1
            self.server.dashboards[board["uid"]] = {**board, "version": version}
            self._reply(200, {"uid": board["uid"], "status": "success", "version": version})
        else:
            self._reply(404, {"message": "not found"})


@pytest.fixture
def grafana() -> Iterator[FakeGrafana]:
    server = FakeGrafana(free_port())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _settings(server: FakeGrafana) -> Settings:
    return Settings(grafana_url=f"http://127.0.0.1:{server.server_port}", grafana_token=TOKEN)


def test_first_push_creates_sources_folder_and_dashboards_with_exact_requests(grafana):
    boards = load(render())
    result = push(_settings(grafana), boards)

    assert result.created_datasources == ["prometheus", "clickhouse", "redis"]
    assert result.created_folder
    assert result.dashboards == dict.fromkeys(boards, 1)
    expected = [
        *(r for uid in ("prometheus", "clickhouse", "redis")
          for r in (("GET", f"/api/datasources/uid/{uid}"), ("POST", "/api/datasources"))),
        ("GET", "/api/folders/fleet"), ("POST", "/api/folders"),
        *(("POST", "/api/dashboards/db") for _ in boards),
    ]  # fmt: skip
    assert [(m, p) for m, p, _a, _b in grafana.requests] == expected
    assert {auth for _m, _p, auth, _b in grafana.requests} == {f"Bearer {TOKEN}"}
    saves = [body for m, p, _a, body in grafana.requests if p == "/api/dashboards/db"]
    for save, (uid, board) in zip(saves, boards.items(), strict=True):
        assert save == {"dashboard": {**board, "id": None}, "folderUid": "fleet",
                        "overwrite": True, "message": "fleet dashboards push"}  # fmt: skip
        assert save["dashboard"]["uid"] == uid
    assert grafana.folders["fleet"] == {"title": "Fleet", "uid": "fleet"}
    clickhouse = grafana.datasources["clickhouse"]
    assert clickhouse["type"] == "grafana-clickhouse-datasource"
    assert clickhouse["jsonData"]["host"] == "clickhouse" and clickhouse["jsonData"]["port"] == 8123


def test_second_push_creates_nothing_and_makes_new_versions_of_the_same_uids(grafana):
    boards = load(render())
    push(_settings(grafana), boards)
    grafana.requests.clear()
    result = push(_settings(grafana), boards)

    assert result.created_datasources == [] and not result.created_folder
    assert result.dashboards == dict.fromkeys(boards, 2)
    assert [m for m, _p, _a, _b in grafana.requests].count("POST") == len(boards)
    assert set(grafana.dashboards) == set(boards)


def test_push_without_token_or_grafana_is_a_clear_error(grafana):
    with pytest.raises(ConfigError, match="FLEET_GRAFANA_TOKEN"):
        push(Settings(grafana_url=f"http://127.0.0.1:{grafana.server_port}"), {})
    dead = Settings(grafana_url=f"http://127.0.0.1:{free_port()}", grafana_token=TOKEN)
    with pytest.raises(PushError, match="Grafana at"):
        push(dead, load(render()))


def test_fleet_dashboards_push_command(grafana):
    """The README's command, run as a user would."""
    env = {"PATH": "/usr/bin:/bin", "FLEET_GRAFANA_URL": f"http://127.0.0.1:{grafana.server_port}",
           "FLEET_GRAFANA_TOKEN": TOKEN}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "fleet.cli", "dashboards", "push"],
        env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "created data source clickhouse" in done.stdout
    assert "fleet-overview: version 1" in done.stdout
    assert set(grafana.dashboards) == set(load(render()))
