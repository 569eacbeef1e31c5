"""From an app's input to acknowledged Kafka writes: map, validate, rate-limit, produce.

Policy: an input that breaks the contract is answered with its reason and written to the
dead-letter topic (the same ``fleet.decode`` validation as Kafka ingest, so the reasons are
the same); valid inputs of the same request are still written. A request returns only once
Kafka acknowledged every write it caused, or raises ``ServiceUnavailable`` (nothing of it
is to be taken as stored; the app retries, and duplicates are harmless downstream).
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from fleet.clock import now_ms
from fleet.decode import dead_letter, decode_ping, decode_struct, validate_ping
from fleet.errors import InvalidEvent, InvalidMessage, InvalidPing, ServiceUnavailable
from fleet.records import DeliveryEvent, Ping, encode
from fleet.settings import Settings
from fleet.topics import DLQ, EVENTS, PINGS, topic_name
from gateway import metrics
from gateway.errors import RateLimited
from gateway.kafka import KafkaWriter
from gateway.limits import RateLimiter
from gateway.protocols import Fix
from gateway.registry import DeviceRegistry

Kind = Literal["pings", "events"]
_EVENT = msgspec.json.Decoder(DeliveryEvent)
_ITEMS = msgspec.json.Decoder(list[msgspec.Raw])
_encoder = msgspec.json.Encoder()
INT64 = 2**63


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why one item of a request was dead-lettered."""

    index: int
    reason: str
    detail: str


@dataclass(slots=True)
class Outcome:
    """What became of a request's items: written, or dead-lettered with a reason."""

    accepted: int = 0
    rejected: list[Rejection] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "rejected": [{"index": r.index, "reason": r.reason, "detail": r.detail}
                         for r in self.rejected],
        }  # fmt: skip


def split_batch(body: bytes) -> list[bytes]:
    """A JSON array's items as raw bytes (an offline queue); anything else is one item."""
    if body.lstrip()[:1] != b"[":
        return [body]
    try:
        return [bytes(item) for item in _ITEMS.decode(body)]
    except msgspec.DecodeError:
        return [body]  # decoded again as one item: dead-lettered with its JSON error


def ping_bytes(fix: Fix, driver_id: str, received_ms: int, max_future_ms: int) -> bytes:
    """The contract Ping of a fix, validated like Kafka ingest; the device's extra readings
    (altitude, battery, attributes) travel along as extra fields, ignored by the pipeline."""
    if not -INT64 <= fix.ts_ms < INT64:
        raise InvalidPing("invalid_value", f"ts_ms={fix.ts_ms} is out of the 64-bit range")
    ping = Ping(
        driver_id=driver_id,
        ts_ms=fix.ts_ms,
        lat=fix.lat,
        lon=fix.lon,
        accuracy_m=fix.accuracy_m,
        speed_mps=fix.speed_mps,
        heading_deg=fix.heading_deg,
    )
    validate_ping(ping, received_ms, max_future_ms)
    extra: dict[str, Any] = {"device_id": fix.device_id}
    if fix.altitude_m is not None:
        extra["altitude_m"] = fix.altitude_m
    if fix.battery_pct is not None:
        extra["battery_pct"] = fix.battery_pct
    if fix.attributes:
        extra["attributes"] = fix.attributes
    return encode(ping)[:-1] + b"," + _encoder.encode(extra)[1:]


class Ingress:
    """The one path from any channel (HTTP, MQTT) to Kafka."""

    def __init__(
        self,
        settings: Settings,
        writer: KafkaWriter,
        registry: DeviceRegistry,
        limiter: RateLimiter,
    ) -> None:
        self.settings = settings
        self.writer = writer
        self.registry = registry
        self.limiter = limiter
        self.topics = {k: topic_name(settings, base) for k, base in
                       (("pings", PINGS), ("events", EVENTS), ("dlq", DLQ))}  # fmt: skip

    async def fixes(self, channel: str, fixes: Sequence[Fix], raw: bytes) -> Outcome:
        """Device fixes (OsmAnd, Traccar, OwnTracks) -> Pings of their drivers."""
        started = time.monotonic()
        now = now_ms()
        out = Outcome()
        writes: list[tuple[str, bytes | None, bytes]] = []
        letters: list[tuple[str, bytes | None, bytes]] = []
        drivers: Tally[str] = Tally()
        for i, fix in enumerate(fixes):
            try:
                driver = await self.registry.driver_for(fix.device_id)
                value = ping_bytes(fix, driver, now, self.settings.max_future_ms)
            except InvalidMessage as exc:
                letters.append(self._letter(channel, "pings", None, raw, exc, now))
                out.rejected.append(Rejection(i, exc.reason, exc.detail))
                continue
            drivers[driver] += 1
            writes.append((self.topics["pings"], driver.encode(), value))
        self._limit(channel, drivers)
        await self._write(channel, "pings", writes, letters, started)
        out.accepted = len(writes)
        return out

    async def contract(
        self, channel: str, kind: Kind, body: bytes, driver_id: str | None = None
    ) -> Outcome:
        """Contract Pings or DeliveryEvents, one or a JSON array; with ``driver_id`` (an MQTT
        topic's driver) every item must be that driver's."""
        started = time.monotonic()
        now = now_ms()
        out = Outcome()
        writes: list[tuple[str, bytes | None, bytes]] = []
        letters: list[tuple[str, bytes | None, bytes]] = []
        drivers: Tally[str] = Tally()
        for i, item in enumerate(split_batch(body)):
            try:
                driver = self._decode(kind, item, now)
                if driver_id is not None and driver != driver_id:
                    detail = f"driver_id={driver!r} differs from the topic's {driver_id!r}"
                    raise InvalidMessage("invalid_value", detail)
            except InvalidMessage as exc:
                letters.append(self._letter(channel, kind, driver_id, item, exc, now))
                out.rejected.append(Rejection(i, exc.reason, exc.detail))
                continue
            drivers[driver] += 1
            writes.append((self.topics[kind], driver.encode(), item))
        self._limit(channel, drivers)
        await self._write(channel, kind, writes, letters, started)
        out.accepted = len(writes)
        return out

    async def reject(self, channel: str, raw: bytes, error: InvalidMessage) -> Outcome:
        """An input that could not even be parsed: dead-letter it."""
        letter = self._letter(channel, "pings", None, raw, error, now_ms())
        await self._write(channel, "pings", [], [letter], time.monotonic())
        return Outcome(0, [Rejection(0, error.reason, error.detail)])

    def _decode(self, kind: Kind, item: bytes, now: int) -> str:
        limit = self.settings.max_message_bytes
        if kind == "pings":
            return decode_ping(item, now, self.settings.max_future_ms, limit).driver_id
        try:
            return decode_struct(item, _EVENT, limit).driver_id
        except InvalidMessage as exc:
            raise InvalidEvent(exc.reason, exc.detail) from None

    def _letter(
        self, channel: str, kind: Kind, key: str | None, raw: bytes, exc: InvalidMessage, now: int
    ) -> tuple[str, bytes | None, bytes]:
        metrics.DEAD_LETTERS.labels(channel, exc.reason).inc()
        letter = dead_letter(self.topics[kind], raw, exc, now)
        return (self.topics["dlq"], key.encode() if key else None, encode(letter))

    def _limit(self, channel: str, drivers: Tally[str]) -> None:
        for driver, count in drivers.items():
            wait = self.limiter.take(driver, count)
            if wait > 0:
                metrics.RATE_LIMITED.labels(channel).inc()
                raise RateLimited(driver, wait)

    async def _write(
        self,
        channel: str,
        kind: Kind,
        writes: list[tuple[str, bytes | None, bytes]],
        letters: list[tuple[str, bytes | None, bytes]],
        started: float,
    ) -> None:
        try:
            await self.writer.send_all([*writes, *letters])
        except ServiceUnavailable:
            metrics.KAFKA_FAILURES.labels(channel).inc()
            raise
        metrics.ACK_SECONDS.labels(channel).observe(time.monotonic() - started)
        if writes:
            metrics.ACCEPTED.labels(channel, kind).inc(len(writes))
