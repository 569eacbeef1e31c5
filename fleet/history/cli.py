"""`fleet history ...`: SQL, reports and Parquet exports over whichever backend is configured."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fleet.errors import ConfigError
from fleet.history.access import open_reader
from fleet.history.queries import REPORTS, TIME_COLUMNS, export_sql, run_report
from fleet.settings import Settings

FORMATS = ("JSONEachRow", "CSV", "Pretty")
END_OF_TIME_MS = 2**62


def parse_time_ms(text: str) -> int:
    """Epoch milliseconds, or an ISO-8601 date/time (UTC when no zone is given)."""
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"time {text!r} is neither epoch milliseconds nor ISO-8601 (2026-11-21T08:00Z)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _cmd_sql(args: argparse.Namespace, settings: Settings) -> int:
    store = open_reader(settings)
    try:
        sys.stdout.buffer.write(store.query(args.query, args.format))
    finally:
        store.close()
    sys.stdout.flush()
    return 0


def _cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    params = {"since_ms": parse_time_ms(args.since), "until_ms": END_OF_TIME_MS}
    if args.until:
        params["until_ms"] = parse_time_ms(args.until)
    store = open_reader(settings)
    try:
        data = store.query(export_sql(args.table), "Parquet", params)
    finally:
        store.close()
    target = Path(args.to)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(target)  # a reader never sees half a file
    print(f"{target} ({len(data)} bytes)")
    return 0


def _cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    since = parse_time_ms(args.since)
    until = parse_time_ms(args.until) if args.until else END_OF_TIME_MS
    store = open_reader(settings)
    try:
        rows: list[dict[str, Any]] = run_report(
            store, args.name, since, until, settings.zone_resolution
        )
    finally:
        store.close()
    for row in rows:
        print(json.dumps(row))
    return 0


def register(subparsers: Any) -> None:
    """Add `fleet history {sql,export,report}` to the `fleet` command's subparsers."""
    history = subparsers.add_parser("history", help="query and export the history store")
    hsub = history.add_subparsers(dest="history_command", required=True)

    sql = hsub.add_parser("sql", help="run a read-only SQL query (each identity once)")
    sql.add_argument("query")
    sql.add_argument("--format", choices=FORMATS, default="JSONEachRow")
    sql.set_defaults(handler=_cmd_sql)

    export = hsub.add_parser("export", help="write a table's rows of a period to Parquet")
    export.add_argument("table", choices=sorted(TIME_COLUMNS))
    export.add_argument("--since", required=True, help="epoch ms or ISO-8601 (inclusive)")
    export.add_argument("--until", default=None, help="epoch ms or ISO-8601 (exclusive)")
    export.add_argument("--to", required=True, help="target FILE.parquet")
    export.set_defaults(handler=_cmd_export)

    report = hsub.add_parser("report", help="run a reporting query (JSON lines)")
    report.add_argument("name", choices=sorted(REPORTS))
    report.add_argument("--since", default="0", help="epoch ms or ISO-8601 (inclusive)")
    report.add_argument("--until", default=None, help="epoch ms or ISO-8601 (exclusive)")
    report.set_defaults(handler=_cmd_report)
