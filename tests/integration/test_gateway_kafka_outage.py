"""Kafka down for 20 s while apps keep sending through the gateway: the apps get 503 answers
(never a hang), their retries succeed once Kafka is back, and every ping the gateway
acknowledged is in Kafka. The broker is a throwaway of this test's own (the shared one on
9092 is never stopped)."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fleet import services
from fleet.clock import now_ms
from fleet.settings import Settings
from fleet.topics import PINGS
from load_tests.gateway_process import throwaway_kafka
from tests.conftest import consume_all
from tests.integration.gateway_clients import gateway_fixture, http

pytestmark = pytest.mark.integration
_ = gateway_fixture  # the `gateway` fixture

OUTAGE_S = 20.0
APPS = 4


def free_port_pair() -> int:
    """A port p with p and p + 1 free (the broker and its controller)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port < 65535 and not services.port_open("127.0.0.1", port + 1):
            return port
    raise RuntimeError("no free port pair")


@dataclass
class App:
    """A tracker app: sends its pings in order, retrying each until it is answered 200."""

    driver: str
    url: str
    acknowledged: list[int] = field(default_factory=list)
    failures: list[tuple[int, float]] = field(default_factory=list)  # (status, seconds held)
    seq: int = 0

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.seq += 1
            ping = {"driver_id": self.driver, "ts_ms": now_ms(), "lat": 52.5, "lon": 13.4,
                    "seq": self.seq}  # fmt: skip
            while True:  # the app's retry loop: a ping is dropped only once acknowledged
                started = time.monotonic()
                try:
                    status = http("POST", f"{self.url}/v1/pings", json.dumps(ping).encode())[0]
                except (urllib.error.URLError, OSError):
                    status = 0
                if status == 200:
                    self.acknowledged.append(self.seq)
                    break
                self.failures.append((status, time.monotonic() - started))
                time.sleep(0.5)
            time.sleep(0.1)


def test_kafka_down_20s_apps_retry_and_no_acknowledged_ping_is_missing(
    fleet_env, gateway, stack, tmp_path: Path
):
    port = free_port_pair()
    broker = throwaway_kafka(tmp_path / "broker", port, stack)
    bootstrap = f"127.0.0.1:{port}"
    try:
        broker.up(lambda _m: None)
        services.ensure_topics(
            Settings(kafka_bootstrap=bootstrap, topic_prefix=fleet_env.prefix, partitions=4)
        )
        gw = gateway(FLEET_KAFKA_BOOTSTRAP=bootstrap, FLEET_GATEWAY_KAFKA_TIMEOUT_S=3)
        apps = [App(f"outage-{i}", gw.url) for i in range(APPS)]
        stop = threading.Event()
        threads = [threading.Thread(target=a.run, args=(stop,), daemon=True) for a in apps]
        for t in threads:
            t.start()
        time.sleep(3)
        broker.down(lambda _m: None)
        down_at = time.monotonic()
        health_during = None
        while time.monotonic() - down_at < OUTAGE_S:
            health_during = gw.health() or health_during
            time.sleep(1)
        broker.up(lambda _m: None)
        sent_before_recovery = {a.driver: a.seq for a in apps}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(
            a.acknowledged and a.acknowledged[-1] > sent_before_recovery[a.driver] for a in apps
        ):
            time.sleep(0.5)
        stop.set()
        for t in threads:
            t.join(60)

        failures = [f for a in apps for f in a.failures]
        held = max((h for _, h in failures), default=0.0)
        acked = sum(len(a.acknowledged) for a in apps)
        print(f"acknowledged {acked}, {len(failures)} failed attempts, longest hold {held:.1f} s")
        assert failures and {status for status, _ in failures} == {503}  # answered, never hung
        assert health_during is not None and health_during["status"] == "degraded"
        for app in apps:  # every app's retries succeeded after Kafka came back
            assert app.acknowledged[-1] > sent_before_recovery[app.driver]
            assert app.acknowledged == list(range(1, len(app.acknowledged) + 1))
        expected = {(a.driver, s) for a in apps for s in a.acknowledged}
        stored = {
            (p["driver_id"], p["seq"])
            for p in (json.loads(v or b"{}") for _, v in consume_all(
                bootstrap, fleet_env.topic(PINGS), timeout=60, expect=None))
        }  # fmt: skip
        assert expected - stored == set()  # no acknowledged ping is missing
        assert gw.health() == {"status": "ok", "kafka_error": None, "mqtt_connected": True}
    finally:
        broker.down(lambda _m: None)
