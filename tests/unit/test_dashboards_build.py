"""Dashboards as code: committed JSON = the code, SDK-typed, stable uids, macros as the plugin."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from dashboards import pipeline_health
from dashboards.build import DASHBOARDS, OUT, as_dict, render, round_trip
from dashboards.macros import MacroError, QueryContext, expand, expand_macros
from dashboards.push import datasources
from dashboards.sources import CLICKHOUSE_TYPE, PROMETHEUS_TYPE, REDIS_TYPE
from fleet.settings import PROJECT_ROOT, Settings

EXPECTED_UIDS = {
    "fleet-overview", "fleet-exceptions", "fleet-completion", "fleet-driver-detail",
    "fleet-decisions-eta", "fleet-pipeline-health",
}  # fmt: skip
SOURCE_UIDS = {"prometheus": PROMETHEUS_TYPE, "clickhouse": CLICKHOUSE_TYPE, "redis": REDIS_TYPE}


def _contained(small: Any, big: Any, path: str = "") -> list[str]:
    """Paths where `small` says something `big` does not (dicts may gain keys in `big`)."""
    if isinstance(small, dict) and isinstance(big, dict):
        return [p for k, v in small.items()
                for p in (_contained(v, big[k], f"{path}.{k}") if k in big
                          else [f"{path}.{k}"])]  # fmt: skip
    if isinstance(small, list) and isinstance(big, list) and len(small) == len(big):
        return [p for i, (a, b) in enumerate(zip(small, big, strict=True))
                for p in _contained(a, b, f"{path}[{i}]")]  # fmt: skip
    return [] if small == big else [path]


def test_committed_dashboards_match_the_code():
    committed = {p.name for p in OUT.glob("*.json")}
    hint = "run `fleet dashboards build dashboards/json`"
    assert committed == set(render()), hint
    for name, text in render().items():
        assert (OUT / name).read_text() == text, f"{hint} ({name})"


@pytest.mark.parametrize("uid", sorted(DASHBOARDS))
def test_dashboard_is_made_only_of_the_sdk_types(uid):
    """Decoded into the SDK's typed models and encoded again, nothing the code said is lost,
    and the committed form is a fixed point of that round trip."""
    built = as_dict(DASHBOARDS[uid]())
    decoded = round_trip(built)
    assert _contained(built, decoded) == []
    committed = json.loads((OUT / f"{uid}.json").read_text())
    assert round_trip(committed) == committed


def test_every_dashboard_has_its_stable_uid_and_unique_panel_ids():
    assert set(DASHBOARDS) == EXPECTED_UIDS
    for uid, build in DASHBOARDS.items():
        board = as_dict(build())
        assert board["uid"] == uid and board["title"]
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), uid


def test_every_query_goes_to_one_of_the_three_provisioned_sources():
    provisioned = yaml.safe_load(
        (PROJECT_ROOT / "infra/grafana/provisioning/datasources/fleet.yml").read_text()
    )["datasources"]
    assert {d["uid"]: d["type"] for d in provisioned} == SOURCE_UIDS
    assert {d["uid"]: d["type"] for d in datasources(Settings())} == SOURCE_UIDS
    for uid, build in DASHBOARDS.items():
        for panel in as_dict(build())["panels"]:
            if panel["type"] == "row":
                continue
            refs = [t["refId"] for t in panel["targets"]]
            assert len(refs) == len(set(refs)), (uid, panel["title"])
            for target in panel["targets"]:
                source = target.get("datasource") or panel["datasource"]
                assert SOURCE_UIDS[source["uid"]] == source["type"], (uid, panel["title"])


def _code_metrics() -> set[str]:
    """Names of every prometheus_client metric defined in the pipeline's packages."""
    pattern = re.compile(r"\b(?:Counter|Gauge|Histogram|Summary)\(\s*\"(fleet_\w+)\"")
    found = set()
    for package in ("fleet", "streams", "gateway", "models", "decision"):
        for path in (PROJECT_ROOT / package).rglob("*.py"):
            found.update(pattern.findall(path.read_text()))
    return found


def _base(series: str) -> str:
    return re.sub(r"_(bucket|sum|count)$", "", series)


def test_every_exported_metric_has_a_panel_and_every_panel_metric_is_exported():
    exported = _code_metrics()
    shown = {
        _base(name)
        for graph in pipeline_health.graphs()
        for expr, _legend in graph.queries
        for name in re.findall(r"\bfleet_\w+", expr)
    }
    assert shown - exported == set(), "panels name metrics the code does not export"
    assert exported - shown == set(), "metrics without a panel in dashboards/pipeline_health.py"


# The plugin's own expectations (grafana/clickhouse-datasource pkg/macros/macros_test.go).
CTX = QueryContext(from_ms=1_415_792_726_371, to_ms=1_447_328_726_371, interval_s=60)


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("$__fromTime", "toDateTime(1415792726)"),
        ("$__toTime", "toDateTime(1447328726)"),
        ("$__fromTime_ms", "fromUnixTimestamp64Milli(1415792726371)"),
        ("$__timeFilter(col)", "col >= toDateTime(1415792726) AND col <= toDateTime(1447328726)"),
        ("$__timeFilter_ms(col)",
         "col >= fromUnixTimestamp64Milli(1415792726371) AND "
         "col <= fromUnixTimestamp64Milli(1447328726371)"),
        ("$__timeInterval(col)", "toStartOfInterval(toDateTime(col), INTERVAL 60 second)"),
        ("$__interval_s", "60"),
        ("$__timeInterval(f(a, b))", "toStartOfInterval(toDateTime(f(a, b)), INTERVAL 60 second)"),
    ],
)  # fmt: skip
def test_macros_expand_as_the_plugin_does(sql, expected):
    assert expand_macros(sql, CTX) == expected


def test_variables_then_macros_and_bad_macros_are_errors():
    sql = "SELECT 1 FROM t WHERE d = '${driver}' AND e = '$driver' AND $__timeFilter(x)"
    out = expand(sql, CTX, {"driver": "drv-1"})
    assert out.startswith("SELECT 1 FROM t WHERE d = 'drv-1' AND e = 'drv-1' AND x >= ")
    with pytest.raises(MacroError, match="unknown macro"):
        expand_macros("$__nope(x)", CTX)
    with pytest.raises(MacroError, match="takes 1 argument"):
        expand_macros("$__timeFilter(a, b)", CTX)
    with pytest.raises(MacroError, match="unclosed"):
        expand_macros("$__timeFilter(a", CTX)


@given(st.text(alphabet=st.characters(blacklist_characters="$"), max_size=80))
def test_text_without_macros_is_left_alone(text):
    assert expand_macros(text, CTX) == text


def test_compose_grafana_provisions_the_rendered_dashboards_and_opens_the_overview():
    compose = yaml.safe_load((PROJECT_ROOT / "infra/docker-compose.yml").read_text())
    grafana = compose["services"]["grafana"]
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1) for v in grafana["volumes"])
    assert mounts["../dashboards/json"] == "/var/lib/grafana/dashboards"
    provider = yaml.safe_load(
        (PROJECT_ROOT / "infra/grafana/provisioning/dashboards/fleet.yml").read_text()
    )["providers"][0]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    home = Path(grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"])
    assert home.parent == Path("/var/lib/grafana/dashboards")
    assert json.loads((OUT / home.name).read_text())["uid"] == "fleet-overview"


_names = st.text(alphabet="abcdefghij_", min_size=1, max_size=8)
# Column expressions as SQL writes them: names, calls with several arguments, nested calls.
_expressions = st.recursive(
    _names,
    lambda inner: st.builds(
        lambda f, args: f"{f}({', '.join(args)})", _names, st.lists(inner, min_size=1, max_size=3)
    ),
    max_leaves=8,
)


@given(_expressions)
def test_a_macro_takes_its_whole_bracketed_argument_whatever_its_nesting(column):
    expanded = expand_macros(f"SELECT 1 WHERE $__timeFilter_ms({column}) AND x = 1", CTX)
    assert expanded == (
        f"SELECT 1 WHERE {column} >= fromUnixTimestamp64Milli(1415792726371) AND "
        f"{column} <= fromUnixTimestamp64Milli(1447328726371) AND x = 1"
    )
