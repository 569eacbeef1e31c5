"""Per-device credentials: a token per phone, bound to one driver, issued and revoked.

A device's token is shown once when it is issued; Redis keeps its SHA-256 (hash
``fleet:device-credentials``, device id -> JSON) and the device -> driver mapping the gateway's
registry reads (``fleet:devices``). For MQTT the same credential becomes a Mosquitto password
file entry (PBKDF2-SHA512, Mosquitto's ``$7$`` format) and ACL lines that let a device publish
only under its own driver's topics and read only its own route: `write_mosquitto_auth`
rewrites both files and a running Mosquitto reloads them on SIGHUP. HTTP checks go through
`DeviceAuthenticator`, whose cache bounds how long a revoked token keeps working.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fleet.clock import now_ms
from fleet.errors import FleetError

if TYPE_CHECKING:
    import redis
    import redis.asyncio

CREDENTIALS_KEY = "fleet:device-credentials"
DEVICES_KEY = "fleet:devices"  # device id -> driver id, the gateway's registry
MOSQUITTO_ITERATIONS = 101  # mosquitto_passwd's default for $7$


class DeviceRefused(FleetError, PermissionError):
    """A device without a valid, unrevoked credential."""


class InvalidDeviceId(FleetError, ValueError):
    """A device or driver id that cannot be a credential (it is also an MQTT user name)."""


DEVICE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}\Z")
DRIVER_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}\Z")  # the contract's identifiers


@dataclass(frozen=True)
class DeviceCredential:
    """What the store keeps about one device (never the token itself)."""

    device_id: str
    driver_id: str
    token_sha256: str
    mosquitto_hash: str
    issued_ms: int


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def mosquitto_hash(password: str, salt: bytes | None = None) -> str:
    """A Mosquitto 2 password-file hash (``$7$``: PBKDF2-SHA512, 101 iterations)."""
    salt = salt or secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, MOSQUITTO_ITERATIONS, 64)
    b64 = base64.b64encode
    return f"$7${MOSQUITTO_ITERATIONS}${b64(salt).decode()}${b64(digest).decode()}"


def _decode(raw: bytes | str | None) -> DeviceCredential | None:
    return DeviceCredential(**json.loads(raw)) if raw else None


class DeviceStore:
    """Issue, list, revoke and check device credentials in Redis (synchronous client)."""

    def __init__(self, client: redis.Redis) -> None:
        self.r = client

    def add(self, device_id: str, driver_id: str) -> str:
        """Issue (or re-issue: the old token stops working) a token; return it, once."""
        if not DEVICE_ID.match(device_id):
            raise InvalidDeviceId(f"device id {device_id!r}: 1-64 of [A-Za-z0-9._-]")
        if not DRIVER_ID.match(driver_id):
            raise InvalidDeviceId(f"driver id {driver_id!r}: 1-64 of [A-Za-z0-9._:-]")
        token = secrets.token_urlsafe(32)
        credential = DeviceCredential(
            device_id, driver_id, token_sha256(token), mosquitto_hash(token), now_ms()
        )
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(CREDENTIALS_KEY, device_id, json.dumps(asdict(credential)))
        pipe.hset(DEVICES_KEY, device_id, driver_id)
        pipe.execute()
        return token

    def list(self) -> list[DeviceCredential]:
        found = [_decode(raw) for raw in self.r.hvals(CREDENTIALS_KEY)]
        return sorted((c for c in found if c is not None), key=lambda c: c.device_id)

    def revoke(self, device_id: str) -> bool:
        """Remove a device's credential and its registry entry; False when it had none."""
        pipe = self.r.pipeline(transaction=True)
        pipe.hdel(CREDENTIALS_KEY, device_id)
        pipe.hdel(DEVICES_KEY, device_id)
        removed, _ = pipe.execute()
        return bool(removed)

    def check(self, device_id: str, token: str) -> str:
        """The driver id of a device presenting ``token``; DeviceRefused otherwise."""
        return _checked(device_id, token, _decode(self.r.hget(CREDENTIALS_KEY, device_id)))


def _checked(device_id: str, token: str, credential: DeviceCredential | None) -> str:
    if credential is None:
        raise DeviceRefused(f"device {device_id!r} has no credential (unknown or revoked)")
    if not hmac.compare_digest(credential.token_sha256, token_sha256(token)):
        raise DeviceRefused(f"device {device_id!r}: wrong token")
    return credential.driver_id


class DeviceAuthenticator:
    """The gateway's check of a device's token (asyncio Redis), cached for ``cache_s``: a
    revoked or re-issued token is refused at most ``cache_s`` after the change."""

    def __init__(self, client: redis.asyncio.Redis, cache_s: float = 5.0) -> None:
        self._client = client
        self._cache_s = cache_s
        self._cache: dict[str, tuple[DeviceCredential | None, float]] = {}

    async def authenticate(self, device_id: str, token: str) -> str:
        """The driver id the device may report for; DeviceRefused otherwise."""
        cached = self._cache.get(device_id)
        if cached is None or time.monotonic() - cached[1] > self._cache_s:
            raw = await self._client.hget(CREDENTIALS_KEY, device_id)
            cached = (_decode(raw), time.monotonic())
            self._cache[device_id] = cached
        return _checked(device_id, token, cached[0])


def parse_authorization(header: str | None) -> tuple[str, str]:
    """(device id, token) from an HTTP ``Authorization`` header: ``Basic`` with the device id
    as user and the token as password, or ``Bearer <device id>:<token>``. DeviceRefused
    names what is missing or malformed."""
    if not header:
        raise DeviceRefused("no Authorization header (Basic device:token or Bearer device:token)")
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "basic":
        try:
            value = base64.b64decode(value, validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            raise DeviceRefused("Authorization Basic: not base64 of device:token") from None
    elif scheme.lower() != "bearer":
        raise DeviceRefused(f"Authorization scheme {scheme[:20]!r}: use Basic or Bearer")
    device_id, sep, token = value.partition(":")
    if not sep or not DEVICE_ID.match(device_id) or not token:
        raise DeviceRefused("Authorization: expected <device id>:<token>")
    return device_id, token


def mosquitto_acl(credentials: list[DeviceCredential], gateway_user: str) -> str:
    """Mosquitto ACL: the gateway reads and writes everything; a device writes only its
    driver's pings and events (and its OwnTracks topic) and reads only its driver's route."""
    lines = [f"user {gateway_user}", "topic readwrite #", ""]
    for c in credentials:
        lines += [
            f"user {c.device_id}",
            f"topic write fleet/{c.driver_id}/pings",
            f"topic write fleet/{c.driver_id}/events",
            f"topic read fleet/{c.driver_id}/route",
        ]
        if "." in c.device_id:  # OwnTracks: device id <user>.<device>
            user, _, device = c.device_id.partition(".")
            lines.append(f"topic write owntracks/{user}/{device}")
        lines.append("")
    return "\n".join(lines)


def write_mosquitto_auth(
    credentials: list[DeviceCredential],
    password_file: Path,
    acl_file: Path,
    gateway_user: str,
    gateway_password: str,
) -> None:
    """Rewrite Mosquitto's password and ACL files (0600) from the store's credentials."""
    entries = [f"{gateway_user}:{mosquitto_hash(gateway_password)}"]
    entries += [f"{c.device_id}:{c.mosquitto_hash}" for c in credentials]
    for path, text in ((password_file, "\n".join(entries) + "\n"),
                       (acl_file, mosquitto_acl(credentials, gateway_user))):  # fmt: skip
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        temporary.replace(path)  # a reload never reads a half-written file
