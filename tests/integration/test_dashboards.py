"""Dashboards as code: the committed JSON is what the code builds, and every query runs."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request

import pytest

from dashboards.pipeline_health import graphs
from fleet import services
from fleet.settings import Settings
from tests.conftest import service_unavailable

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def prometheus(stack):
    service = services.Prometheus(Settings())
    was = service.status().state
    try:
        service.up(lambda _m: None)
    except Exception as exc:
        service_unavailable(f"prometheus unavailable: {exc}")
    yield f"http://127.0.0.1:{services.PROMETHEUS_PORT}"
    if was == "stopped":
        service.down(lambda _m: None)


@pytest.mark.parametrize(
    ("title", "expr"), [(g.title, expr) for g in graphs() for expr, _legend in g.queries]
)
def test_every_panel_query_is_valid_promql(prometheus, title, expr):
    url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as resp:
        body = json.loads(resp.read())
    assert body["status"] == "success", (title, body)
