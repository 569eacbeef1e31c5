"""`fleet devices add|list|revoke`: per-device credentials of driver phones (fleet/devices.py)."""

from __future__ import annotations

import argparse
import json
import os
import signal
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from fleet.errors import ConfigError
from fleet.settings import Settings


def _store(settings: Settings) -> Any:
    from fleet.clients import redis_client
    from fleet.devices import DeviceStore

    return DeviceStore(redis_client(settings))


def sync_mosquitto(settings: Settings, store: Any = None) -> Path | None:
    """With FLEET_MQTT_AUTH_DIR: rewrite Mosquitto's password and ACL files there from the
    device store and make a running Mosquitto of `fleet infra` reload them (SIGHUP)."""
    from fleet import services
    from fleet.devices import write_mosquitto_auth

    store = store or _store(settings)
    directory = settings.mqtt_auth_dir
    if directory is None:
        return None
    url = urlparse(settings.mqtt_url)
    if not (url.username and url.password):
        raise ConfigError(
            "FLEET_MQTT_AUTH_DIR needs the gateway's own MQTT user in FLEET_MQTT_URL "
            "(mqtt://<user>:<password>@host:port)"
        )
    write_mosquitto_auth(
        store.list(), directory / "passwords", directory / "acl", url.username, url.password
    )
    secure = services.Mosquitto(settings)
    secure.pidfile = Path(directory) / "mosquitto.pid"  # the secure profile's keeps it there
    pid = secure.pid() or services.Mosquitto(settings).pid()
    if pid is not None:
        os.kill(pid, signal.SIGHUP)
    return Path(directory)


def _add(args: argparse.Namespace, settings: Settings) -> int:
    store = _store(settings)
    token = store.add(args.device, args.driver)
    synced = sync_mosquitto(settings, store)
    print(json.dumps({"device_id": args.device, "driver_id": args.driver, "token": token,
                      "mqtt_auth_dir": str(synced) if synced else None}))  # fmt: skip
    return 0


def _list(args: argparse.Namespace, settings: Settings) -> int:
    for c in _store(settings).list():
        print(json.dumps({"device_id": c.device_id, "driver_id": c.driver_id,
                          "issued_ms": c.issued_ms}))  # fmt: skip
    return 0


def _revoke(args: argparse.Namespace, settings: Settings) -> int:
    store = _store(settings)
    removed = store.revoke(args.device)
    sync_mosquitto(settings, store)
    print(json.dumps({"device_id": args.device, "revoked": removed}))
    return 0 if removed else 1


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    devices = sub.add_parser("devices", help="per-device credentials of driver phones")
    dsub = devices.add_subparsers(dest="action", required=True)
    add = dsub.add_parser("add", help="issue a token for a device bound to a driver (shown once)")
    add.add_argument("device")
    add.add_argument("--driver", required=True)
    add.set_defaults(handler=_add)
    dsub.add_parser("list", help="devices with a credential").set_defaults(handler=_list)
    revoke = dsub.add_parser("revoke", help="remove a device's credential")
    revoke.add_argument("device")
    revoke.set_defaults(handler=_revoke)
