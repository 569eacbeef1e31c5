"""The device registry: which driver a tracker device reports for.

Looked up in order: the JSON file ``FLEET_GATEWAY_DEVICES_FILE`` (read at start), then the
Redis hash ``fleet:devices`` (device id -> driver id; cached for a few seconds). A device in
neither is its own driver in the development profile, and refused with
``FLEET_GATEWAY_REGISTERED_ONLY=true``.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from fleet.errors import ConfigError, InvalidPing

if TYPE_CHECKING:
    import redis.asyncio

log = logging.getLogger(__name__)

DEVICES_KEY = "fleet:devices"


def read_devices_file(path: Path | None) -> dict[str, str]:
    """A JSON object ``{"<device id>": "<driver id>", ...}``; empty without a file."""
    if path is None:
        return {}
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"FLEET_GATEWAY_DEVICES_FILE={path}: {exc}") from exc
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise ConfigError(f"FLEET_GATEWAY_DEVICES_FILE={path}: not an object of strings")
    return data


class DeviceRegistry:
    """Device id -> driver id, from a file, Redis, or (development) the device id itself."""

    def __init__(
        self,
        devices: dict[str, str],
        client: redis.asyncio.Redis | None,
        registered_only: bool,
        cache_s: float = 5.0,
    ) -> None:
        self._devices = devices
        self._client = client
        self._registered_only = registered_only
        self._cache_s = cache_s
        self._cache: dict[str, tuple[str | None, float]] = {}

    async def driver_for(self, device_id: str) -> str:
        """The driver id of a device; InvalidPing ``unknown_device`` when it may not report."""
        driver = self._devices.get(device_id)
        if driver is None:
            driver = await self._lookup(device_id)
        if driver is not None:
            return driver
        if self._registered_only:
            raise InvalidPing("unknown_device", f"device {device_id!r} is not registered")
        return device_id

    async def _lookup(self, device_id: str) -> str | None:
        if self._client is None:
            return None
        now = time.monotonic()
        cached = self._cache.get(device_id)
        if cached is not None and cached[1] > now:
            return cached[0]
        try:
            value = await self._client.hget(DEVICES_KEY, device_id)
        except Exception as exc:  # Redis down: the file and the profile still answer
            log.warning("device registry: Redis lookup failed: %s", exc)
            return cached[0] if cached else None
        driver = value.decode() if isinstance(value, bytes) else value
        if len(self._cache) > 100_000:
            self._cache.clear()
        self._cache[device_id] = (driver, now + self._cache_s)
        return driver
