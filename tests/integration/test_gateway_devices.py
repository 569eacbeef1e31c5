"""The gateway with device tokens on (real `fleet gateway`, Kafka, Redis): a phone reports
only as itself, for its own driver, reads only its own route, and is refused once revoked."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.client import HTTPConnection
from urllib.parse import urlsplit

import pytest

from fleet.clients import redis_client
from fleet.devices import DeviceStore
from fleet.topics import PINGS
from load_tests.gateway_process import GatewayProcess
from tests.conftest import FleetEnv, consume_all, wait_until
from tests.integration.gateway_clients import gateway_fixture, http

_ = gateway_fixture  # the `gateway` fixture


@dataclass(frozen=True)
class Phone:
    device: str
    driver: str
    token: str


@pytest.fixture
def phones(fleet_env: FleetEnv) -> Iterator[tuple[DeviceStore, Phone, Phone]]:
    """Two devices, for drivers A and B, with their tokens; revoked afterwards."""
    store = DeviceStore(redis_client(fleet_env.settings))
    run = uuid.uuid4().hex[:6]
    a, b = (Phone(f"phone-{run}-{n}", f"drv-{run}-{n}", "") for n in "ab")
    a, b = (Phone(p.device, p.driver, store.add(p.device, p.driver)) for p in (a, b))
    yield store, a, b
    for phone in (a, b):
        store.revoke(phone.device)


def _basic(device: str, token: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{device}:{token}".encode()).decode()}


def _osmand(base: str, device: str, headers: dict[str, str]) -> int:
    query = f"/?id={device}&lat=52.52&lon=13.405&timestamp={int(time.time())}"
    status, _, _ = http("GET", base + query, headers=headers)
    return status


def _sse_status(base: str, driver: str, headers: dict[str, str]) -> int:
    parts = urlsplit(base)
    conn = HTTPConnection(parts.netloc, timeout=30)
    conn.request("GET", f"/v1/drivers/{driver}/route-updates", headers=headers)
    status = conn.getresponse().status
    conn.close()
    return status


def test_a_phone_reports_only_as_itself_and_reads_only_its_route(
    fleet_env: FleetEnv, gateway: Callable[..., GatewayProcess], phones
) -> None:
    _, a, b = phones
    device_a, token_a, driver_a = a.device, a.token, a.driver
    device_b, driver_b = b.device, b.driver
    base = gateway(FLEET_GATEWAY_DEVICE_TOKENS="true").url
    own = _basic(device_a, token_a)
    assert _osmand(base, device_a, {}) == 401
    assert _osmand(base, device_a, _basic(device_a, "guess")) == 401
    assert _osmand(base, device_b, own) == 403  # as another device
    assert _osmand(base, device_a, own) == 200
    as_b = json.dumps({"driver_id": driver_b, "ts_ms": int(time.time() * 1000),
                       "lat": 52.5, "lon": 13.4}).encode()  # fmt: skip
    status, _, _ = http(
        "POST", base + "/v1/pings", as_b, {**own, "Content-Type": "application/json"}
    )
    assert status == 400  # another driver's ping: rejected and dead-lettered
    assert _sse_status(base, driver_b, own) == 403
    assert _sse_status(base, driver_a, own) == 200
    keys = {k for k, _ in consume_all(fleet_env["FLEET_KAFKA_BOOTSTRAP"], fleet_env.topic(PINGS))}
    assert keys == {driver_a.encode()}  # only the authenticated device's driver


def test_a_revoked_phone_is_refused_within_the_cache_time(
    fleet_env: FleetEnv, gateway: Callable[..., GatewayProcess], phones
) -> None:
    store, a, _ = phones
    device, token = a.device, a.token
    base = gateway(FLEET_GATEWAY_DEVICE_TOKENS="true").url
    assert _osmand(base, device, _basic(device, token)) == 200
    store.revoke(device)
    assert wait_until(lambda: _osmand(base, device, _basic(device, token)) == 401, 15)
