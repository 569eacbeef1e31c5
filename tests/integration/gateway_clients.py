"""Real clients of the gateway for tests: HTTP requests, an SSE reader and an MQTT listener."""

from __future__ import annotations

import json
import queue
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from http.client import HTTPConnection, HTTPException
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from load_tests.gateway_process import GatewayProcess
from tests.conftest import FleetEnv, free_port


def http(
    method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of one request; HTTP errors are answers, not exceptions."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


class SseReader:
    """Reads a Server-Sent Events stream on a thread; ``events`` holds (id, event, data)."""

    def __init__(self, url: str, last_event_id: str | None = None) -> None:
        parts = urlsplit(url)
        headers = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        self.conn = HTTPConnection(parts.netloc, timeout=60)
        self.conn.request("GET", parts.path, headers=headers)
        self.response = self.conn.getresponse()
        self.events: queue.Queue[tuple[str | None, str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        event_id, event, data = None, "message", ""
        try:
            for raw in self.response:
                line = raw.decode().rstrip("\n")
                if not line:
                    if data:
                        self.events.put((event_id, event, json.loads(data)))
                    event_id, event, data = None, "message", ""
                elif line.startswith("id: "):
                    event_id = line[4:]
                elif line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    data += line[6:]
        except (OSError, ValueError, AttributeError, HTTPException):
            return  # closed by the test

    def next(self, timeout: float = 30.0) -> tuple[str | None, str, Any]:
        return self.events.get(timeout=timeout)

    def close(self) -> None:
        """Cut the connection now (a blocked reader would otherwise wait for the next line)."""
        if self.conn.sock is not None:
            self.conn.sock.shutdown(socket.SHUT_RDWR)
        self.conn.close()


class MqttListener:
    """A paho-mqtt client subscribed to some topics; ``messages`` holds (topic, payload, retain)."""

    def __init__(self, client_id: str, *topics: str, url: tuple[str, int] = ("127.0.0.1", 1883)):
        self.messages: queue.Queue[tuple[str, bytes, bool]] = queue.Queue()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.on_message = lambda _c, _u, m: self.messages.put(
            (m.topic, bytes(m.payload), m.retain)
        )
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_a: subscribed.set()
        if topics:
            self.client.on_connect = lambda c, *_a: c.subscribe([(t, 1) for t in topics])
        else:
            subscribed.set()
        self.client.connect(*url)
        self.client.loop_start()
        subscribed.wait(10)

    def publish(self, topic: str, payload: bytes) -> None:
        """Publish with QoS 1 and wait for the broker's PUBACK."""
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(30)

    def next(self, timeout: float = 30.0) -> tuple[str, bytes, bool]:
        return self.messages.get(timeout=timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture(name="gateway")
def gateway_fixture(fleet_env: FleetEnv, tmp_path: Path) -> Iterator[Callable[..., GatewayProcess]]:
    """Factory: gateway(**extra_env) starts a ready `fleet gateway` on a free port."""
    started: list[GatewayProcess] = []

    def start(**extra: Any) -> GatewayProcess:
        env = {**fleet_env, "FLEET_GATEWAY_URL": f"http://127.0.0.1:{free_port()}",
               "FLEET_MQTT_CLIENT_ID": f"gw-{fleet_env.prefix}{len(started)}",
               **{k: str(v) for k, v in extra.items()}}  # fmt: skip
        process = GatewayProcess(env, tmp_path / f"gateway-{len(started)}.log")
        started.append(process)
        return process.start()

    yield start
    for process in started:
        process.stop()
