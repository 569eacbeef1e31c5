"""`fleet gateway`: the HTTP server, the MQTT bridge and the route feed, wired and run."""

from __future__ import annotations

import asyncio
import logging
import signal
from urllib.parse import urlparse

from aiohttp import web

from fleet.clients import redis_async_client
from fleet.devices import DeviceAuthenticator
from fleet.settings import Settings
from gateway.http import build_app
from gateway.ingest import Ingress
from gateway.kafka import KafkaWriter
from gateway.limits import RateLimiter
from gateway.mqtt import MqttBridge
from gateway.push import FeedConsumer, Push, RouteFeed
from gateway.registry import DeviceRegistry, read_devices_file

log = logging.getLogger(__name__)


def listen_address(settings: Settings) -> tuple[str, int]:
    """FLEET_LISTEN_HOST and the port of FLEET_GATEWAY_URL."""
    url = urlparse(settings.gateway_url)
    return settings.listen_host, url.port or (443 if url.scheme == "https" else 80)


async def serve(settings: Settings) -> None:
    """Run the gateway until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    writer = KafkaWriter(settings)
    registry = DeviceRegistry(
        read_devices_file(settings.gateway_devices_file),
        redis_async_client(settings),
        settings.gateway_registered_only,
    )
    limiter = RateLimiter(settings.gateway_rate_per_s, settings.gateway_rate_burst)
    ingress = Ingress(settings, writer, registry, limiter)
    feed = RouteFeed()
    bridge = MqttBridge(settings, ingress, loop)

    def on_change(push: Push) -> None:  # the feed thread
        bridge.publish(push)
        loop.call_soon_threadsafe(feed.deliver, push)

    def on_caught_up() -> None:  # the feed thread, once
        for push in [*feed.routes.values(), *feed.etas.values()]:
            bridge.publish(push)
        log.info("route feed caught up: %d drivers' plans retained", len(feed.routes))

    consumer = FeedConsumer(settings, feed.offer, on_change, on_caught_up)
    devices = (
        DeviceAuthenticator(redis_async_client(settings))
        if settings.gateway_device_tokens
        else None
    )
    app = build_app(
        ingress, feed, settings.gateway_max_body_bytes, lambda: bridge.connected, devices
    )
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    host, port = listen_address(settings)
    await web.TCPSite(runner, host, port, backlog=1024).start()
    bridge.start()
    consumer.start()
    log.info("gateway: http://%s:%d, MQTT %s", host, port, settings.mqtt_url)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("gateway: stopping")
    bridge.stop()
    consumer.stop()
    await runner.cleanup()
    writer.close()
