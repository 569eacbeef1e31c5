"""Per-device credentials on real Redis and a real Mosquitto with password and ACL files.

A device publishes only as its own driver and reads only its own route; a wrong or revoked
token is refused (HTTP check: after the authenticator's cache time; MQTT: after the reload
`fleet devices revoke` triggers).
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from fleet import services
from fleet.clients import redis_async_client, redis_client
from fleet.devices import DeviceAuthenticator, DeviceRefused, DeviceStore, InvalidDeviceId
from fleet.devices_cli import sync_mosquitto
from fleet.settings import Settings
from load_tests.harness import free_port
from tests.conftest import service_unavailable, wait_until

GATEWAY_PASSWORD = "gateway-test-password"


@pytest.fixture
def devices(stack: Settings) -> Iterator[tuple[DeviceStore, list[str]]]:
    """The store on the session's Redis; devices added through it are revoked afterwards."""
    store = DeviceStore(redis_client(stack))
    added: list[str] = []
    yield store, added
    for device in added:
        store.revoke(device)


def _add(devices: tuple[DeviceStore, list[str]], driver: str) -> tuple[str, str]:
    store, added = devices
    device = f"dev-{uuid.uuid4().hex[:8]}"
    added.append(device)
    return device, store.add(device, driver)


def test_a_token_opens_only_its_device_and_names_its_driver(devices) -> None:
    store, _ = devices
    device, token = _add(devices, "drv-a")
    other, other_token = _add(devices, "drv-b")
    assert store.check(device, token) == "drv-a"
    with pytest.raises(DeviceRefused, match="wrong token"):
        store.check(device, other_token)
    assert {c.device_id: c.driver_id for c in store.list()}.items() >= {
        device: "drv-a",
        other: "drv-b",
    }.items()
    assert token not in str(store.list())  # only its hash is kept


def test_reissuing_a_token_retires_the_old_one(devices) -> None:
    store, _ = devices
    device, old = _add(devices, "drv-a")
    new = store.add(device, "drv-a")
    assert store.check(device, new) == "drv-a"
    with pytest.raises(DeviceRefused):
        store.check(device, old)


def test_a_device_id_that_cannot_be_an_mqtt_user_is_refused(devices) -> None:
    store, _ = devices
    with pytest.raises(InvalidDeviceId):
        store.add("user:device", "drv-a")


def test_a_revoked_device_is_refused_once_the_cache_time_passed(devices, stack) -> None:
    store, _ = devices
    device, token = _add(devices, "drv-a")

    async def scenario() -> tuple[str, str | None]:
        client = redis_async_client(stack)
        auth = DeviceAuthenticator(client, cache_s=0.3)
        first = await auth.authenticate(device, token)
        store.revoke(device)
        await asyncio.sleep(0.35)  # the bound: the cache time
        try:
            later: str | None = await auth.authenticate(device, token)
        except DeviceRefused:
            later = None
        await client.aclose()
        return first, later

    assert asyncio.run(scenario()) == ("drv-a", None)


# --- MQTT ---------------------------------------------------------------------------------


@pytest.fixture
def broker(stack: Settings, tmp_path: Path) -> Iterator[Settings]:
    """A Mosquitto of `fleet infra`'s kind on a free port, with device passwords and ACLs."""
    settings = stack.model_copy(
        update={
            "var_dir": tmp_path,
            "mqtt_url": f"mqtt://gateway:{GATEWAY_PASSWORD}@127.0.0.1:{free_port()}",
            "mqtt_auth_dir": tmp_path / "mqtt-auth",
        }
    )
    mosquitto = services.Mosquitto(settings)
    try:
        mosquitto.up(lambda _msg: None)
    except Exception as exc:
        service_unavailable(f"mosquitto unavailable: {exc}")
    yield settings
    mosquitto.down(lambda _msg: None)


class Client:
    """A paho MQTT v5 client, connected (or refused) synchronously."""

    def __init__(self, settings: Settings, user: str, password: str) -> None:
        self.connected = threading.Event()
        self.reason: object = None
        self.received: list[str] = []
        self.granted: list[bool] = []
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.c.username_pw_set(user, password)
        self.c.on_connect = self._on_connect
        self.c.on_message = lambda _c, _u, msg: self.received.append(msg.topic)
        self.c.on_subscribe = lambda _c, _u, _m, codes, _p: self.granted.extend(
            not code.is_failure for code in codes
        )
        port = int(settings.mqtt_url.rsplit(":", 1)[1])
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        self.connected.wait(10)

    def _on_connect(self, _c, _u, _flags, reason, _props) -> None:  # type: ignore[no-untyped-def]
        self.reason = reason
        self.connected.set()

    @property
    def accepted(self) -> bool:
        return self.reason is not None and not self.reason.is_failure  # type: ignore[attr-defined]

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def test_a_device_publishes_only_as_its_driver_and_reads_only_its_route(
    devices, broker: Settings
) -> None:
    store, _ = devices
    device, token = _add(devices, "drv-a")
    sync_mosquitto(broker, store)
    gateway = Client(broker, "gateway", GATEWAY_PASSWORD)
    gateway.c.subscribe("fleet/#", qos=1)
    assert wait_until(lambda: gateway.granted == [True], 10)
    phone = Client(broker, device, token)
    assert phone.accepted
    phone.c.subscribe("fleet/+/route", qos=1)  # Mosquitto grants it, delivers by read ACL
    assert wait_until(lambda: phone.granted == [True], 10)
    gateway.c.publish("fleet/drv-b/route", b"{}", qos=1).wait_for_publish(10)
    gateway.c.publish("fleet/drv-a/route", b"{}", qos=1).wait_for_publish(10)
    assert wait_until(lambda: "fleet/drv-a/route" in phone.received, 10)
    assert "fleet/drv-b/route" not in phone.received
    phone.c.publish("fleet/drv-b/pings", b"{}", qos=1).wait_for_publish(10)
    phone.c.publish("fleet/drv-a/pings", b"{}", qos=1).wait_for_publish(10)
    assert wait_until(lambda: "fleet/drv-a/pings" in gateway.received, 10)
    assert "fleet/drv-b/pings" not in gateway.received
    phone.close()
    gateway.close()


def test_wrong_and_revoked_device_credentials_are_refused_by_mqtt(devices, broker) -> None:
    store, _ = devices
    device, token = _add(devices, "drv-a")
    sync_mosquitto(broker, store)
    assert not Client(broker, device, "not-the-token").accepted
    first = Client(broker, device, token)
    assert first.accepted
    first.close()
    store.revoke(device)
    sync_mosquitto(broker, store)  # rewrites the files, SIGHUP: Mosquitto reloads them
    assert wait_until(lambda: not _connects(broker, device, token), 10)


def _connects(settings: Settings, user: str, password: str) -> bool:
    client = Client(settings, user, password)
    client.close()
    time.sleep(0.1)
    return client.accepted
