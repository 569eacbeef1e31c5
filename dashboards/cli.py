"""`fleet dashboards {build,push,queries}`: render, upload, and show the panels' SQL."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from fleet.errors import ConfigError
from fleet.settings import Settings


def _cmd_build(args: argparse.Namespace, settings: Settings) -> int:
    from dashboards.build import write

    for path in write(Path(args.dir)):
        print(path)
    return 0


def _cmd_push(args: argparse.Namespace, settings: Settings) -> int:
    from dashboards.build import render
    from dashboards.push import load, push

    result = push(settings, load(render()))
    for uid in result.created_datasources:
        print(f"created data source {uid}")
    if result.created_folder:
        print("created folder fleet")
    for uid, version in result.dashboards.items():
        print(f"{uid}: version {version}")
    return 0


def _variables(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ConfigError(f"--var takes NAME=VALUE, got {pair!r}")
        out[name] = value
    return out


def _cmd_queries(args: argparse.Namespace, settings: Settings) -> int:
    from dashboards.build import DASHBOARDS, as_dict
    from dashboards.macros import QueryContext, expand
    from dashboards.sources import CLICKHOUSE_TYPE
    from fleet.history.cli import parse_time_ms

    until = parse_time_ms(args.until) if args.until else int(time.time() * 1000)
    since = parse_time_ms(args.since) if args.since else until - 6 * 3_600_000
    ctx = QueryContext(since, until, args.interval_s)
    variables = _variables(args.var)
    for uid, build in DASHBOARDS.items():
        if args.uid and uid != args.uid:
            continue
        board: dict[str, Any] = as_dict(build())
        for panel in board.get("panels", []):
            for target in panel.get("targets", []):
                if target.get("datasource", {}).get("type") != CLICKHOUSE_TYPE:
                    continue
                sql = expand(target["rawSql"], ctx, variables)
                print(json.dumps({"dashboard": uid, "panel": panel["title"], "sql": sql}))
    return 0


def register(subparsers: Any) -> None:
    """Add `fleet dashboards ...` to the `fleet` command's subparsers."""
    dashboards = subparsers.add_parser("dashboards", help="Grafana dashboards as code")
    dsub = dashboards.add_subparsers(dest="dashboards_command", required=True)

    build = dsub.add_parser("build", help="write every dashboard's JSON into DIR")
    build.add_argument("dir")
    build.set_defaults(handler=_cmd_build)

    push = dsub.add_parser(
        "push", help="upload to FLEET_GRAFANA_URL (token FLEET_GRAFANA_TOKEN), data sources too"
    )
    push.set_defaults(handler=_cmd_push)

    queries = dsub.add_parser(
        "queries", help="each ClickHouse panel's SQL as Grafana would send it (JSON lines)"
    )
    queries.add_argument("--uid", default=None, help="one dashboard (default: all)")
    queries.add_argument("--since", default=None, help="epoch ms or ISO-8601 (default: 6 h ago)")
    queries.add_argument("--until", default=None, help="epoch ms or ISO-8601 (default: now)")
    queries.add_argument("--interval-s", type=int, default=60, help="the panels' interval")
    queries.add_argument("--var", action="append", default=[], help="NAME=VALUE (repeatable)")
    queries.set_defaults(handler=_cmd_queries)
