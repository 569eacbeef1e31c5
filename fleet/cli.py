"""The ``fleet`` command: services, worker, replay, spatial queries, schemas and history."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fleet.errors import ConfigError, FleetError
from fleet.settings import Settings, get_settings

Handler = Callable[[argparse.Namespace, Settings], int]

# Feature packages add their sub-commands through a ``register(subparsers)`` function in
# these modules. They are named, not imported, here, so the kernel never depends on them
# (a module's own imports happen inside its handlers, keeping `fleet --help` fast).
FEATURE_CLIS: tuple[str, ...] = (
    "fleet.history.cli",
    "fleet.devices_cli",
    "models.cli",
    "decision.cli",
    "gateway.cli",
    "dashboards.cli",
    "dashboards.dispatch_cli",
    "load_tests.cli",
)


def _cmd_infra(args: argparse.Namespace, settings: Settings) -> int:
    from fleet import services

    if args.action == "fetch":
        services.Kafka(settings).ensure_jars(print)
        return 0
    if args.secure:
        return _secure_infra(args.action, settings)
    if args.action == "init":
        raise ConfigError("`fleet infra init` writes the secure profile's files: add --secure")
    if args.action == "up":
        services.up(settings, with_prometheus=None if args.prometheus else False)
    elif args.action == "down":
        services.down(settings)
    for status in services.status(settings):
        print(status.line())
    return 0


def _secure_infra(action: str, settings: Settings) -> int:
    from fleet import secure_profile
    from fleet.security import KAFKA_ROLES

    if action == "init":
        profile = secure_profile.SecureProfile.of(settings)
        profile.ensure_material()
        print(f"secure profile material in {profile.root}")
        return 0
    if action == "up":
        profile = secure_profile.up(settings)
        print(f"secure profile: clients load {profile.env_file('<role>')}, roles:",
              " ".join(KAFKA_ROLES))  # fmt: skip
    elif action == "down":
        secure_profile.down(settings)
    for status in secure_profile.status(settings):
        print(status.line())
    return 0


def _cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    # The worker is the Faust app in streams/; exec it so fleet/ never imports streams.
    argv = [sys.executable, "-m", "faust", "-A", "streams.worker", "worker", "-l", args.loglevel,
            "--without-web"]  # fmt: skip
    os.execv(sys.executable, argv)
    return 0  # pragma: no cover - execv does not return


def _print_rows(rows: Sequence[dict[str, Any]], fmt: str) -> None:
    if fmt == "json":
        for row in rows:
            print(json.dumps(row, sort_keys=True))
        return
    if not rows:
        print("(no drivers)")
        return
    cols = ["driver_id", "lat", "lon", "ts_ms", "status", "route_id", "h3"]
    if "distance_m" in rows[0]:
        cols.append("distance_m")
    print("  ".join(f"{c:<18}" for c in cols))
    for row in rows:
        print("  ".join(f"{row.get(c, '')!s:<18}" for c in cols))


def _cmd_drivers(args: argparse.Namespace, settings: Settings) -> int:
    from fleet.live import LiveReader

    reader = LiveReader.from_settings(settings)
    if args.query == "near":
        rows = reader.near(args.lat, args.lon, args.radius_m, args.limit)
    elif args.query == "in-cell":
        rows = reader.in_cell(args.cell)
    else:
        rows = reader.within(json.loads(Path(args.area).read_text()))
    _print_rows([r.as_dict() for r in rows], args.format)
    return 0


def _cmd_zones(args: argparse.Namespace, settings: Settings) -> int:
    from fleet.clock import now_ms
    from fleet.live import LiveReader

    counts = LiveReader.from_settings(settings).zone_counts(now_ms() - settings.zone_ttl_s * 1000)
    for zone, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        print(json.dumps({"zone": zone, "drivers": n}))
    return 0


def _cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    from fleet.clock import now_ms
    from fleet.ingest import IngestConfig
    from fleet.replay import read_messages, replay

    outcome = replay(
        read_messages(Path(args.file)),
        now_ms=args.now_ms or now_ms(),
        config=IngestConfig(
            settings.max_speed_mps, settings.jump_confirm_fixes, settings.zone_resolution
        ),
        max_future_ms=settings.max_future_ms,
        max_bytes=settings.max_message_bytes,
    )
    print(json.dumps({"summary": outcome.summary()}))
    for row in outcome.live_rows():
        print(json.dumps({"live": row}))
    for letter in outcome.dead_letters:
        print(
            json.dumps(
                {
                    "dead_letter": {
                        "reason": letter.reason,
                        "detail": letter.detail,
                        "raw": letter.raw,
                        "raw_encoding": letter.raw_encoding,
                    }
                }
            )
        )
    return 0


def _cmd_schema(args: argparse.Namespace, settings: Settings) -> int:
    from fleet.schemas import export_schemas

    for path in export_schemas(Path(args.dir)):
        print(path)
    return 0


def _cmd_config(args: argparse.Namespace, settings: Settings) -> int:
    from fleet.settings import settings_table

    if args.markdown:
        print(settings_table())
    else:
        for name, value in settings.model_dump().items():
            print(f"FLEET_{name.upper()}={_shown(value)}")
    return 0


def _shown(value: object) -> object:
    """A setting as `fleet config` prints it: secrets and URL passwords masked."""
    from urllib.parse import urlsplit

    from pydantic import SecretStr

    if isinstance(value, SecretStr):
        return "***" if value.get_secret_value() else ""
    if isinstance(value, str) and "://" in value:
        url = urlsplit(value)
        if url.password:
            user = f"{url.username}:" if url.username else ":"
            return url._replace(netloc=f"{user}***@{url.netloc.rpartition('@')[2]}").geturl()
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fleet", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    infra = sub.add_parser("infra", help="start, stop or show the local services")
    infra.add_argument(
        "action",
        choices=["up", "down", "status", "fetch", "init"],
        help="init (with --secure): write var/secure/ only, e.g. for docker compose",
    )
    infra.add_argument(
        "--no-prometheus",
        dest="prometheus",
        action="store_false",
        help="do not start Prometheus with `up`",
    )
    infra.add_argument(
        "--secure",
        action="store_true",
        help="the secure profile: SASL_SSL broker with ACLs, TLS Redis with ACL users",
    )
    infra.set_defaults(handler=_cmd_infra)

    worker = sub.add_parser("worker", help="run a Faust worker of the pipeline")
    worker.add_argument("-l", "--loglevel", default="info")
    worker.set_defaults(handler=_cmd_worker)

    replay = sub.add_parser("replay", help="run the ingest core over a JSON-lines/Parquet file")
    replay.add_argument("file")
    replay.add_argument("--now-ms", type=int, default=None, help="the pipeline clock (default now)")
    replay.set_defaults(handler=_cmd_replay)

    drivers = sub.add_parser("drivers", help="spatial queries over live positions")
    dsub = drivers.add_subparsers(dest="query", required=True)
    near = dsub.add_parser("near", help="drivers within a radius of a point")
    near.add_argument("lat", type=float)
    near.add_argument("lon", type=float)
    near.add_argument("--radius-m", type=float, required=True)
    near.add_argument("--limit", type=int, default=None)
    cell = dsub.add_parser("in-cell", help="drivers in an H3 cell (any resolution)")
    cell.add_argument("cell")
    within = dsub.add_parser("within", help="drivers inside a GeoJSON polygon")
    within.add_argument("area")
    for p in (near, cell, within):
        p.add_argument("--format", choices=["table", "json"], default="table")
    drivers.set_defaults(handler=_cmd_drivers)

    zones = sub.add_parser("zones", help="live drivers per H3 zone cell")
    zones.set_defaults(handler=_cmd_zones)

    schema = sub.add_parser("schema", help="JSON Schemas of the wire contract")
    ssub = schema.add_subparsers(dest="action", required=True)
    export = ssub.add_parser("export", help="write one schema file per message into DIR")
    export.add_argument("dir")
    schema.set_defaults(handler=_cmd_schema)

    config = sub.add_parser("config", help="show the effective settings")
    config.add_argument("--markdown", action="store_true", help="the README table of settings")
    config.set_defaults(handler=_cmd_config)

    # --- commands registered by feature packages ------------------------------------------
    for module in FEATURE_CLIS:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args, get_settings()))
    except FleetError as exc:
        print(f"fleet: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
