"""Every dashboard query runs on what the real pipeline wrote, and returns what its panel needs.

One live `fleet worker` takes a small dispatcher's day from Kafka (two routes, pings with
duplicates and invalid ones, deliveries and a failure, a re-plan, ETAs, an undecodable
alert); then:
- each ClickHouse panel query, its macros and variables expanded as Grafana and the
  ClickHouse plugin expand them, runs against the history the worker wrote and returns rows
  with the columns its panel type reads (geomap: latitude/longitude; time series: a time
  column first; bars and pies: a label and numbers);
- each Redis panel's command runs against the Redis the worker wrote;
- each PromQL expression runs on a real Prometheus (a private instance scraping this
  worker every second) and returns series, except the error counters no healthy run
  increments (those must still be exported by the worker).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis

from dashboards.build import DASHBOARDS, as_dict
from dashboards.macros import QueryContext, expand, substitute_variables
from dashboards.pipeline_health import graphs
from dashboards.sources import CLICKHOUSE_TYPE, REDIS_TYPE, RedisQuery
from fleet import services
from fleet.history.access import open_reader
from fleet.history.errors import HistoryError, StoreBusy
from fleet.records import DeliveryEvent, DispatchCommand, EtaUpdate, Ping, StopEta, encode
from fleet.settings import Settings
from fleet.topics import ALERTS, COMMANDS, ETAS, EVENTS, PINGS, ROUTES
from load_tests.gateway_process import GatewayProcess
from load_tests.harness import WorkerProcess, free_port
from load_tests.scenarios import build_plan
from tests.conftest import TEST_PARTITIONS, produce, service_unavailable, wait_until

pytestmark = pytest.mark.integration

MIN = 60_000
# Metrics only a fault (a bug, a refused write, an unreachable service), a promoted ETA
# model (tests/integration/test_eta_stream.py promotes one) or hours of idleness give
# series: here only their export is checked.
FAULT_ONLY = {
    "fleet_processing_errors_total", "fleet_hook_errors_total", "fleet_effect_retries_total",
    "fleet_history_retries_total", "fleet_dead_letter_failures_total",
    "fleet_gateway_kafka_failures_total", "fleet_eta_model_info",
    "fleet_tracking_forgotten_total",
}  # fmt: skip


@dataclass(frozen=True)
class Scenario:
    run: str
    env: dict[str, str]
    settings: Settings
    driver_a: str
    driver_b: str
    failed_stop: str
    started_ms: int
    metrics_port: int
    prometheus: str
    gateway: str


def _targets(source_type: str) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(dashboard uid, panel title, panel type, target) of every query to one source."""
    out = []
    for uid, build in DASHBOARDS.items():
        for panel in as_dict(build())["panels"]:
            for target in panel.get("targets", []):
                if target.get("datasource", {}).get("type") == source_type:
                    out.append((uid, panel["title"], panel["type"], target))
    return out


def _publish(env: dict[str, str], settings: Settings, run: str, now: int) -> tuple[str, str, str]:
    """A small day: plans, pings (duplicated, some invalid), outcomes, a re-plan, ETAs."""
    topic = lambda base: f"{env['FLEET_TOPIC_PREFIX']}{base}"  # noqa: E731
    send = lambda base, items: produce(  # noqa: E731
        settings.kafka_bootstrap, topic(base), [(k.encode(), encode(v)) for k, v in items]
    )
    start = now - 30 * MIN
    a = build_plan(f"rt-{run}-a", f"drv-{run}-a", n_stops=3, start_ms=start)
    b = build_plan(f"rt-{run}-b", f"drv-{run}-b", n_stops=2, start_ms=start, origin=(52.52, 13.45))
    send(ROUTES, [(p.route_id, p) for p in (a, b)])
    r = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    indexed = lambda: all(  # noqa: E731
        r.hget(f"fleet:driver:{p.driver_id}", "route_id") == p.route_id for p in (a, b)
    )
    assert wait_until(indexed, 90), "the worker never indexed the plans"
    s1, s2 = a.stops[0], a.stops[1]
    pings = [
        Ping(a.driver_id, now - 90_000 + i * 5000, s1.lat, s1.lon, seq=i, speed_mps=5.0,
             route_id=a.route_id)
        for i in range(5)
    ] + [Ping(b.driver_id, now - 60_000, b.stops[0].lat, b.stops[0].lon, seq=1,
              route_id=b.route_id)]  # fmt: skip
    messages = [(p.driver_id.encode(), encode(p)) for p in pings]
    produce(settings.kafka_bootstrap, topic(PINGS), messages + messages + [
        (a.driver_id.encode(), b'{"driver_id": "x", "ts_ms": 1, "lat": 123.4, "lon": 13.4}'),
        (a.driver_id.encode(), b'{"driver_id": '),
    ])  # fmt: skip
    etas = [
        EtaUpdate(a.route_id, a.driver_id, "eta-test", now - 120_000,
                  [StopEta(s1.stop_id, now - 70_000, now - 50_000, now - 20_000),
                   StopEta(s2.stop_id, now + 5 * MIN, now + 8 * MIN, now + 12 * MIN)]),
        EtaUpdate(b.route_id, b.driver_id, "eta-test", now - 120_000,
                  [StopEta(b.stops[0].stop_id, now - 90_000, now - 80_000, now - 70_000)]),
    ]  # fmt: skip
    send(ETAS, [(u.route_id, u) for u in etas])
    events = [
        DeliveryEvent(f"ev-{run}-0", a.driver_id, "shift_start", now - 100_000),
        DeliveryEvent(f"ev-{run}-1", a.driver_id, "arrived", now - 60_000, a.route_id,
                      s1.stop_id, lat=s1.lat, lon=s1.lon),
        DeliveryEvent(f"ev-{run}-2", a.driver_id, "delivered", now - 50_000, a.route_id,
                      s1.stop_id, lat=s1.lat, lon=s1.lon),
        DeliveryEvent(f"ev-{run}-3", a.driver_id, "failed", now - 30_000, a.route_id,
                      s2.stop_id, reason="not_home", lat=s2.lat, lon=s2.lon),
        DeliveryEvent(f"ev-{run}-4", b.driver_id, "arrived", now - 40_000, b.route_id,
                      b.stops[0].stop_id, lat=b.stops[0].lat, lon=b.stops[0].lon),
    ]  # fmt: skip
    send(EVENTS, [(e.driver_id, e) for e in events])
    produce(settings.kafka_bootstrap, topic(EVENTS), [(a.driver_id.encode(), b'{"event_id": ')])
    # The failed stop is moved to the end of the route: a re-plan, version 2.
    replan = msgspec.structs.replace(a, version=2, stops=[a.stops[0], a.stops[2], a.stops[1]])
    send(ROUTES, [(replan.route_id, replan)])
    produce(settings.kafka_bootstrap, topic(ALERTS), [(a.driver_id.encode(), b"{not an alert")])
    # A dispatcher's edit: applied by the pipeline as a decision (cause dispatch:resequence).
    edit = DispatchCommand(f"cmd-{run}", b.route_id, "resequence", now, issued_by="dispatcher:t",
                           stop_ids=[s.stop_id for s in reversed(b.stops)])  # fmt: skip
    send(COMMANDS, [(edit.route_id, edit)])
    return a.driver_id, b.driver_id, s2.stop_id


def _history_counts(settings: Settings, run: str) -> dict[str, int]:
    sql = (
        f"SELECT (SELECT count() FROM fleet.route_plans WHERE route_id LIKE 'rt-{run}-%') AS plans,"
        f" (SELECT count() FROM fleet.events WHERE event_id LIKE 'ev-{run}-%') AS events,"
        f" (SELECT count() FROM fleet.etas WHERE route_id LIKE 'rt-{run}-%') AS etas,"
        f" (SELECT count() FROM fleet.pings WHERE driver_id LIKE 'drv-{run}-%') AS pings,"
        f" (SELECT count() FROM fleet.alerts WHERE driver_id LIKE 'drv-{run}-%') AS alerts,"
        f" (SELECT count() FROM fleet.decisions WHERE route_id LIKE 'rt-{run}-%') AS decisions"
    )
    try:
        store = open_reader(settings)
    except StoreBusy:
        return {}
    try:
        return {k: int(v) for k, v in json.loads(store.query(sql)).items()}
    except (StoreBusy, HistoryError):
        return {}
    finally:
        store.close()


def _use_gateway(url: str, run: str) -> None:
    """Phones at work: OsmAnd fixes, an invalid one, an OwnTracks non-location, a burst."""
    sec = int(time.time())

    def get(query: str) -> int:
        try:
            with urllib.request.urlopen(f"{url}/?{query}", timeout=10) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)

    statuses = [get(f"id=gw-{run}-{i}&lat=52.5&lon=13.4&timestamp={sec}") for i in range(2)]
    statuses.append(get(f"id=gw-{run}-0&lat=123.4&lon=13.4&timestamp={sec}"))
    statuses += [get(f"id=gw-{run}-burst&lat=52.5&lon=13.4&timestamp={sec + i}") for i in range(6)]
    request = urllib.request.Request(
        f"{url}/owntracks?u=gw&d={run}", data=b'{"_type": "transition"}', method="POST",
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as resp:
        statuses.append(int(resp.status))
    assert {200, 400, 429} <= set(statuses), statuses


def _start_prometheus(
    tmp: Path, metrics_port: int, gateway: str
) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("prometheus")
    if binary is None:
        service_unavailable("prometheus missing: run `make setup`")
    assert binary is not None
    config = tmp / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n  - job_name: fleet-worker\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{metrics_port}']}}]\n"
        "  - job_name: fleet-gateway\n"
        f"    static_configs: [{{targets: ['{gateway.removeprefix('http://')}']}}]\n"
    )
    port = free_port()
    proc = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=(tmp / "prometheus.log").open("wb"),
        start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as resp:
                return resp.status == 200
        except OSError:
            return False

    assert wait_until(ready, 30), (tmp / "prometheus.log").read_text()[-2000:]
    return proc, url


@pytest.fixture(scope="module")
def day(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    """A worker that processed the scenario, its history landed, Prometheus scraping it."""
    tmp = tmp_path_factory.mktemp("dashboards")
    run = uuid.uuid4().hex[:10]
    metrics_port = free_port()
    overrides = {
        "FLEET_PARTITIONS": str(TEST_PARTITIONS), "FLEET_TOPIC_PREFIX": f"t{run}.",
        "FLEET_APP_ID": f"test-{run}", "FLEET_VAR_DIR": str(tmp / "var"),
        "FLEET_METRICS_PORT": str(metrics_port), "FLEET_WORKER_WEB_PORT": str(free_port()),
        "FLEET_KAFKA_BOOTSTRAP": stack.kafka_bootstrap, "FLEET_REDIS_URL": stack.redis_url,
    }  # fmt: skip
    env = {**os.environ, **overrides}
    settings = Settings(
        topic_prefix=overrides["FLEET_TOPIC_PREFIX"], app_id=overrides["FLEET_APP_ID"],
        var_dir=tmp / "var", kafka_bootstrap=stack.kafka_bootstrap, redis_url=stack.redis_url,
        partitions=TEST_PARTITIONS,
    )  # fmt: skip
    services.ensure_topics(settings)
    worker = WorkerProcess(env, tmp / "worker.log", ready_s=90.0)
    gateway_env = {**env, "FLEET_GATEWAY_URL": f"http://127.0.0.1:{free_port()}",
                   "FLEET_MQTT_CLIENT_ID": f"gw-{run}", "FLEET_GATEWAY_RATE_BURST": "3",
                   "FLEET_GATEWAY_RATE_PER_S": "0.5"}  # fmt: skip
    gateway = GatewayProcess(gateway_env, tmp / "gateway.log")
    prometheus = None
    try:
        worker.start()
        gateway.start()
        prometheus, prom_url = _start_prometheus(tmp, metrics_port, gateway.url)
        now = int(time.time() * 1000)
        driver_a, driver_b, failed_stop = _publish(env, settings, run, now)
        _use_gateway(gateway.url, run)
        # Plans: a and b, a's re-plan, b's resequenced version.
        expected = {"plans": 4, "events": 5, "etas": 3, "pings": 6}
        landed = wait_until(
            lambda: (c := _history_counts(settings, run))
            and all(c[k] == v for k, v in expected.items())
            and c["alerts"] >= 1 and c["decisions"] >= 1,
            timeout=120,
        )  # fmt: skip
        assert landed, (_history_counts(settings, run), worker.tail())
        yield Scenario(run, env, settings, driver_a, driver_b, failed_stop, now - 30 * MIN,
                       metrics_port, prom_url, gateway.url)  # fmt: skip
    finally:
        if prometheus is not None:
            prometheus.terminate()
            prometheus.wait(30)
        gateway.stop()
        worker.kill()
        services.delete_topics(stack.kafka_bootstrap, (f"t{run}.", f"test-{run}-"))


def _run_sql(day: Scenario, sql: str) -> tuple[list[str], list[str], list[list[Any]]]:
    store = open_reader(day.settings)
    try:
        data = store.query(sql, "JSONCompactEachRowWithNamesAndTypes")
    finally:
        store.close()
    lines = [json.loads(line) for line in data.splitlines() if line.strip()]
    return lines[0], lines[1], lines[2:]


def _is_number(ch_type: str) -> bool:
    return any(t in ch_type for t in ("Int", "Float", "Decimal"))


@pytest.mark.parametrize(
    ("uid", "title", "panel_type", "target"),
    _targets(CLICKHOUSE_TYPE),
    ids=[f"{u}:{t}:{q['refId']}" for u, t, _p, q in _targets(CLICKHOUSE_TYPE)],
)
def test_clickhouse_panel_query_returns_what_its_panel_reads(day, uid, title, panel_type, target):
    ctx = QueryContext(day.started_ms - 60 * MIN, day.started_ms + 90 * MIN, interval_s=60)
    sql = expand(target["rawSql"], ctx, {"driver": day.driver_a})
    assert "$" not in sql, sql
    names, types, rows = _run_sql(day, sql)
    assert rows, f"{uid} / {title}: no rows for the scenario"
    if target["format"] == 0 or panel_type == "timeseries":
        assert types[0].startswith("DateTime"), (names, types)
        assert any(_is_number(t) for t in types[1:]), (names, types)
    if panel_type == "geomap":
        lat, lon = names.index("latitude"), names.index("longitude")
        assert types[lat] == types[lon] == "Float64"
        assert all(-90 <= row[lat] <= 90 and -180 <= row[lon] <= 180 for row in rows)
    if panel_type in ("barchart", "piechart"):
        assert "String" in types[0] and any(_is_number(t) for t in types[1:]), (names, types)
    if panel_type == "stat":
        assert all(_is_number(t) for t in types), (names, types)


def test_the_driver_variable_lists_the_scenario_drivers(day):
    ctx = QueryContext(day.started_ms - 60 * MIN, day.started_ms + 90 * MIN)
    (variable,) = as_dict(DASHBOARDS["fleet-driver-detail"]())["templating"]["list"]
    _names, _types, rows = _run_sql(day, expand(variable["query"], ctx))
    assert {day.driver_a, day.driver_b} <= {row[0] for row in rows}


def test_open_alert_queue_names_the_failed_stop_and_the_replan(day):
    """The exception the scenario made: a failed delivery, open, re-planned as version 2."""
    from dashboards.exceptions import OPEN_ALERT_QUEUE

    ctx = QueryContext(day.started_ms - 60 * MIN, day.started_ms + 90 * MIN)
    names, _types, rows = _run_sql(day, expand(OPEN_ALERT_QUEUE, ctx))
    mine = [dict(zip(names, row, strict=True)) for row in rows if row[3] == day.driver_a]
    failed = [r for r in mine if r["kind"] == "failed_delivery"]
    assert [(r["stop_id"], r["reason"], r["decision"]) for r in failed] == [
        (day.failed_stop, "not_home", "re-planned: v2")
    ]


@pytest.mark.parametrize(
    ("uid", "title", "panel_type", "target"),
    _targets(REDIS_TYPE),
    ids=[f"{u}:{t}" for u, t, _p, _q in _targets(REDIS_TYPE)],
)
def test_redis_panel_command_reads_the_live_state(day, uid, title, panel_type, target):
    query = RedisQuery.from_json(target)
    argv = [substitute_variables(a, {"driver": day.driver_a}) for a in query.argv()]
    r = redis.Redis.from_url(day.settings.redis_url, decode_responses=True)
    result = r.execute_command(*argv)
    if argv[0].lower() == "hgetall":
        assert {"lat", "lon", "status", "route_id"} <= set(result), result
    elif argv[0].upper() == "HVALS":
        alerts = [json.loads(v) for v in result]
        assert any(a["driver_id"] == day.driver_a and a["kind"] == "failed_delivery"
                   for a in alerts), alerts  # fmt: skip
    else:
        assert int(result) >= 2, (argv, result)


def _promql(url: str, expr: str) -> dict[str, Any]:
    query = urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(f"{url}/api/v1/query?{query}", timeout=10) as resp:
        body: dict[str, Any] = json.loads(resp.read())
    return body


@pytest.mark.parametrize(
    ("title", "expr"), [(g.title, expr) for g in graphs() for expr, _legend in g.queries]
)
def test_every_promql_expression_returns_series_from_the_live_worker(day, title, expr):
    metrics = set(re.findall(r"\bfleet_\w+", expr))
    if metrics & FAULT_ONLY:
        body = _promql(day.prometheus, expr)
        assert body["status"] == "success", body
        typed = set()
        for url in (f"http://127.0.0.1:{day.metrics_port}", day.gateway):
            with urllib.request.urlopen(f"{url}/metrics", timeout=10) as resp:
                typed |= set(re.findall(r"^# TYPE (\w+) ", resp.read().decode(), re.M))
        assert all({m, m.removesuffix("_total")} & typed for m in metrics), metrics - typed
        return
    result = wait_until(lambda: _promql(day.prometheus, expr)["data"]["result"], timeout=60)
    assert result, f"{title}: {expr} returned no series"
