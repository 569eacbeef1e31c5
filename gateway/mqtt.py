"""The MQTT side: apps' pings and events in (acknowledged after Kafka), route updates out.

"Acknowledged after Kafka" with a client-side bridge: the gateway subscribes with QoS 1 in
a persistent session (``clean_session=False``, a fixed client id) and paho-mqtt's manual
acknowledgements (``manual_ack=True``). A message's PUBACK is sent only after Kafka
acknowledged its write (or its dead letter); while Kafka is down the message is retried
and its PUBACK withheld, so the broker keeps it in flight (Mosquitto bounds that window,
holding further messages for the session). If the gateway stops or crashes meanwhile, the
broker redelivers every unacknowledged message when the session reconnects.
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlparse

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from fleet.errors import InvalidMessage, ServiceUnavailable
from fleet.settings import Settings
from gateway import metrics
from gateway.errors import RateLimited
from gateway.ingest import Ingress, Kind, Outcome
from gateway.protocols import parse_owntracks
from gateway.push import Push

log = logging.getLogger(__name__)

RETRY_MAX_S = 5.0


def route_topic(settings: Settings, driver_id: str, kind: str = "route") -> str:
    """Where a driver's app finds its latest plan (``route``) or ETAs (``etas``), retained."""
    return f"{settings.topic_prefix}fleet/{driver_id}/{'route' if kind == 'route' else 'etas'}"


class MqttBridge:
    """Subscribes to the apps' topics and publishes the drivers' retained route updates."""

    def __init__(self, settings: Settings, ingress: Ingress, loop: asyncio.AbstractEventLoop):
        self.settings = settings
        self.ingress = ingress
        self.loop = loop
        self.prefix = settings.topic_prefix
        self.connected = False
        self._stopping = False
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=settings.mqtt_client_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
            manual_ack=True,
        )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.reconnect_delay_set(1, 10)
        client.max_inflight_messages_set(200)
        self.client = client

    def start(self) -> None:
        url = urlparse(self.settings.mqtt_url)
        if url.username:  # the gateway's own user when Mosquitto has per-device ACLs
            self.client.username_pw_set(url.username, url.password)
        if url.scheme == "mqtts":  # TLS, verified against FLEET_MQTT_SSL_CAFILE (or system CAs)
            cafile = self.settings.mqtt_ssl_cafile
            self.client.tls_set(ca_certs=str(cafile) if cafile else None)
        self.client.connect_async(url.hostname or "127.0.0.1", url.port or 1883, keepalive=30)
        self.client.loop_start()

    def stop(self) -> None:
        self._stopping = True
        self.client.disconnect()
        self.client.loop_stop()

    # --- in -----------------------------------------------------------------------------------
    def _on_connect(
        self, client: mqtt.Client, _u: object, _f: object, rc: object, _p: object
    ) -> None:
        if getattr(rc, "is_failure", False):
            log.warning("mqtt: connection refused: %s", rc)
            return
        self.connected = True
        metrics.MQTT_CONNECTED.set(1)
        client.subscribe(
            [(f"{self.prefix}owntracks/+/+", 1), (f"{self.prefix}fleet/+/pings", 1),
             (f"{self.prefix}fleet/+/events", 1)]
        )  # fmt: skip

    def _on_disconnect(self, *_args: object) -> None:
        self.connected = False
        metrics.MQTT_CONNECTED.set(0)

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        asyncio.run_coroutine_threadsafe(self._bridge(msg), self.loop)

    async def _bridge(self, msg: mqtt.MQTTMessage) -> None:
        """Write one message to Kafka, retrying until acknowledged; then PUBACK it."""
        delay = 0.2
        while not self._stopping:
            try:
                await self._forward(msg.topic, bytes(msg.payload))
                break
            except RateLimited as exc:
                await asyncio.sleep(exc.retry_after_s)
            except ServiceUnavailable as exc:
                log.warning("mqtt %s: Kafka unavailable, retrying in %.1f s: %s", msg.topic,
                            delay, exc)  # fmt: skip
                await asyncio.sleep(delay)
                delay = min(RETRY_MAX_S, delay * 2)
        else:
            return  # stopping: unacknowledged, redelivered to the next session
        if msg.qos > 0:
            self.client.ack(msg.mid, msg.qos)

    async def _forward(self, topic: str, payload: bytes) -> Outcome:
        parts = topic.removeprefix(self.prefix).split("/")
        if len(parts) == 3 and parts[0] == "owntracks":
            device = f"{parts[1]}.{parts[2]}"
            try:
                fix = parse_owntracks(payload, device)
            except InvalidMessage as exc:
                return await self.ingress.reject("mqtt", payload, exc)
            if fix is None:
                metrics.IGNORED.labels("mqtt", "owntracks_not_location").inc()
                return Outcome()
            return await self.ingress.fixes("mqtt", [fix], payload)
        if len(parts) == 3 and parts[0] == "fleet" and parts[2] in ("pings", "events"):
            kind: Kind = "pings" if parts[2] == "pings" else "events"
            return await self.ingress.contract("mqtt", kind, payload, driver_id=parts[1])
        metrics.IGNORED.labels("mqtt", "unknown_topic").inc()
        return Outcome()

    # --- out ----------------------------------------------------------------------------------
    def publish(self, push: Push) -> None:
        """Retain a driver's latest plan or ETAs on its topic (thread-safe; queued offline)."""
        topic = route_topic(self.settings, push.driver_id, push.kind)
        self.client.publish(topic, push.payload, qos=1, retain=True)
        metrics.PUSHES.labels("mqtt", push.kind).inc()
