"""Decode and validate contract messages from raw Kafka bytes, with machine-readable reasons.

Policy: every failure raises ``InvalidMessage`` (or a subclass) carrying a ``reason`` code
from ``REASONS`` and a detail naming the field and value; callers dead-letter it. Nothing
else escapes: unexpected decoder failures are mapped to ``invalid_json``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec

from fleet.errors import InvalidMessage, InvalidPing
from fleet.records import EPOCH_MS_MIN, IDENTIFIER_RE, DeadLetter, Ping

REASONS = (
    "empty",  # no bytes at all (a tombstone)
    "too_large",  # over the size cap (64 KiB)
    "invalid_utf8",  # not UTF-8
    "invalid_json",  # not parseable JSON
    "not_an_object",  # JSON, but not an object
    "missing_field",  # a required field is absent
    "wrong_type",  # a field has the wrong JSON type (booleans are not numbers)
    "invalid_value",  # a field's value is not allowed (e.g. unknown enum value)
    "invalid_identifier",  # an identifier breaks [A-Za-z0-9._:-]{1,64}
    "not_finite",  # a coordinate is NaN or infinite (or overflows a float)
    "lat_out_of_range",
    "lon_out_of_range",
    "ts_in_future",  # ts_ms more than the allowed skew ahead of the pipeline's clock
    "out_of_range",  # an integer beyond int64, or a time outside [2000-01-01, 2100-01-01)
)
RAW_PREFIX_BYTES = 4096  # a larger input keeps only this prefix in its dead letter
DETAIL_MAX_CHARS = 300  # a dead letter's detail is cut here
# The longest `raw` text kept: the base64 length of a full prefix. A UTF-8 prefix whose JSON
# form would be longer (control characters escape to six bytes each) is kept as base64.
_RAW_MAX_JSON = 4 * ((RAW_PREFIX_BYTES + 2) // 3)
_FLOAT_FIELDS = ("lat", "lon", "accuracy_m", "speed_mps", "heading_deg")
_BOUND = re.compile(r"Expected `int` (>=|<=|<|>) (-?\d+)")

_IDENTIFIER = re.compile(IDENTIFIER_RE)
_known_ids: set[str] = set()  # identifiers already seen valid (bounded, see _valid_id)
_MISSING = re.compile(r"Object missing required field `([^`]+)`")
_AT = re.compile(r" - at `\$\.?([^`]*)`")
_PING_DECODER = msgspec.json.Decoder(Ping)

T = TypeVar("T", bound=msgspec.Struct)


def _value_at(raw: bytes, path: str) -> Any:
    """The JSON value at a msgspec error path (``stops[0].demand``), for error details."""
    try:
        value: Any = json.loads(raw)
        for name, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", path):
            value = value[int(index)] if index else value[name]
    except (ValueError, LookupError, TypeError):
        return "?"
    return value


def _classify(exc: Exception, raw: bytes = b"") -> tuple[str, str]:
    """Map a msgspec error to (reason, detail)."""
    text = str(exc)
    if isinstance(exc, msgspec.ValidationError):
        if m := _MISSING.search(text):
            return "missing_field", f"required field {m.group(1)!r} is missing"
        where = _AT.search(text)
        field = where.group(1) if where else ""
        if "Expected `object`" in text and not field:
            return "not_an_object", text
        if "matching regex" in text or "length" in text:
            return "invalid_identifier", f"{field}: {text.split(' - at')[0]}"
        if "Number out of range" in text:
            if field.rsplit(".", 1)[-1] in _FLOAT_FIELDS:
                return "not_finite", f"{field} overflows a float"
            value = _value_at(raw, field)
            return "out_of_range", f"{field}={value} is outside the 64-bit integer range"
        if bound := _BOUND.search(text):
            value = _value_at(raw, field)
            return "out_of_range", f"{field}={value}: must be {bound.group(1)} {bound.group(2)}"
        if "Invalid enum value" in text:
            return "invalid_value", f"{field}: {text.split(' - at')[0]}"
        return "wrong_type", f"{field}: {text.split(' - at')[0]}" if field else text
    if "invalid character" in text or "truncated" in text or "malformed" in text:
        return "invalid_json", text
    return "invalid_json", text


def check_raw(raw: bytes | None, max_bytes: int) -> bytes:
    """Size, presence and UTF-8 checks shared by every contract message."""
    if raw is None or len(raw) == 0:
        raise InvalidMessage("empty", "message has no value")
    if len(raw) > max_bytes:
        raise InvalidMessage("too_large", f"{len(raw)} bytes > {max_bytes} bytes")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidMessage("invalid_utf8", f"not UTF-8 at byte {exc.start}") from None
    return raw


def decode_struct(raw: bytes | None, decoder: msgspec.json.Decoder[T], max_bytes: int) -> T:
    """Decode any contract record; raise InvalidMessage with a reason on failure."""
    data = check_raw(raw, max_bytes)
    try:
        return decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        reason, detail = _classify(exc, data)
        raise InvalidMessage(reason, detail) from None
    except Exception as exc:  # a decoder bug must still never crash a worker
        raise InvalidMessage("invalid_json", f"{type(exc).__name__}: {exc}") from None


def _valid_id(value: str) -> bool:
    if value in _known_ids:
        return True
    if _IDENTIFIER.match(value) is None:
        return False
    if len(_known_ids) > 200_000:
        _known_ids.clear()
    _known_ids.add(value)
    return True


def validate_ping(ping: Ping, now_ms: int, max_future_ms: int) -> Ping:
    """Identifier, range and clock checks the type system does not express."""
    for name in ("driver_id", "route_id"):
        value = getattr(ping, name)
        if value is not None and not _valid_id(value):
            raise InvalidPing(
                "invalid_identifier", f"{name}={value!r} breaks [A-Za-z0-9._:-]{{1,64}}"
            )
    lat, lon = ping.lat, ping.lon
    if not (math.isfinite(lat) and math.isfinite(lon)):
        raise InvalidPing("not_finite", f"lat={lat} lon={lon} must be finite")
    if not -90.0 <= lat <= 90.0:
        raise InvalidPing("lat_out_of_range", f"lat={lat} outside [-90, 90]")
    if not -180.0 <= lon <= 180.0:
        raise InvalidPing("lon_out_of_range", f"lon={lon} outside [-180, 180]")
    if ping.ts_ms > now_ms + max_future_ms:
        ahead_s = (ping.ts_ms - now_ms) / 1000
        raise InvalidPing(
            "ts_in_future", f"ts_ms={ping.ts_ms} is {ahead_s:.1f} s ahead of the pipeline clock"
        )
    if ping.ts_ms < EPOCH_MS_MIN:
        raise InvalidPing(
            "out_of_range", f"ts_ms={ping.ts_ms} is before 2000-01-01 ({EPOCH_MS_MIN})"
        )
    for name in ("accuracy_m", "speed_mps", "heading_deg"):
        value = getattr(ping, name)
        if value is not None and not math.isfinite(value):
            raise InvalidPing("not_finite", f"{name}={value} must be finite")
    return ping


def check_key(key: bytes | None, driver_id: str) -> None:
    """A driver-keyed topic's message must carry its driver_id as Kafka key (the contract):
    another key, an empty or absent one, puts it on another partition (two states for one
    driver). Raises InvalidMessage ``key_mismatch``."""
    if key is None or key != driver_id.encode():
        shown = key[:80] if key is not None else None
        raise InvalidMessage("key_mismatch", f"Kafka key {shown!r} is not driver_id {driver_id!r}")


def decode_ping(raw: bytes | None, now_ms: int, max_future_ms: int, max_bytes: int) -> Ping:
    """Bytes → a valid Ping, or InvalidPing with a reason."""
    try:
        ping = decode_struct(raw, _PING_DECODER, max_bytes)
    except InvalidMessage as exc:
        raise InvalidPing(exc.reason, exc.detail) from None
    return validate_ping(ping, now_ms, max_future_ms)


def _raw_text(data: bytes) -> tuple[str, str]:
    """(text, encoding) of bytes: UTF-8 when they decode and stay short in JSON, else base64."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        if len(msgspec.json.encode(text)) <= _RAW_MAX_JSON:
            return text, "utf-8"
    return base64.b64encode(data).decode("ascii"), "base64"


def _utf8_prefix(data: bytes, limit: int) -> bytes:
    """At most ``limit`` bytes of data, cut before a UTF-8 character that would be split."""
    prefix = data[:limit]
    try:
        prefix.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.reason == "unexpected end of data":  # only the last character is cut short
            return prefix[: exc.start]
    return prefix


def dead_letter(
    source_topic: str, raw: bytes | None, error: InvalidMessage, received_ms: int
) -> DeadLetter:
    """The DeadLetter record of a rejected input: its bytes, or a bounded prefix of them.

    An input over RAW_PREFIX_BYTES keeps a prefix (cut on a character boundary when it is
    UTF-8) with ``raw_bytes`` and ``raw_sha256`` of the whole; the detail is cut at
    DETAIL_MAX_CHARS, so a dead letter always encodes to a few KiB.
    """
    data = raw or b""
    truncated = len(data) > RAW_PREFIX_BYTES
    text, encoding = _raw_text(_utf8_prefix(data, RAW_PREFIX_BYTES) if truncated else data)
    detail = error.detail
    if len(detail) > DETAIL_MAX_CHARS:
        detail = detail[: DETAIL_MAX_CHARS - 1] + "…"
    return DeadLetter(
        source_topic=source_topic,
        reason=error.reason,
        detail=detail,
        received_ms=received_ms,
        raw=text,
        raw_encoding=encoding,  # type: ignore[arg-type]
        raw_bytes=len(data) if truncated else None,
        raw_sha256=hashlib.sha256(data).hexdigest() if truncated else None,
    )


@dataclass(frozen=True, slots=True)
class DecodedBatch:
    """Valid pings and dead letters (with their Kafka keys) of one batch of raw messages."""

    pings: list[Ping]
    dead_letters: list[tuple[bytes | None, DeadLetter]]
    positions: list[int]  # index in the input of each valid ping


def decode_ping_batch(
    messages: Iterable[tuple[bytes | None, bytes | None]],
    *,
    source_topic: str,
    now_ms: int,
    max_future_ms: int,
    max_bytes: int,
    require_key: bool = False,
) -> DecodedBatch:
    """Decode (key, value) pairs; every message ends up valid or dead-lettered.

    With ``require_key`` (the pipeline's consumers), a valid ping whose Kafka key is not its
    ``driver_id`` (an absent or empty key included) is dead-lettered ``key_mismatch``.
    """
    pings: list[Ping] = []
    dead: list[tuple[bytes | None, DeadLetter]] = []
    positions: list[int] = []
    decoder = _PING_DECODER
    limit = now_ms + max_future_ms
    for i, (key, raw) in enumerate(messages):
        # Fast path: well-formed pings skip the exception machinery entirely.
        if raw and len(raw) <= max_bytes:
            try:
                p = decoder.decode(raw)
            except Exception:
                p = None
            if (
                p is not None
                and (p.driver_id in _known_ids)
                and (p.route_id is None or p.route_id in _known_ids)
                and -90.0 <= p.lat <= 90.0
                and -180.0 <= p.lon <= 180.0
                and EPOCH_MS_MIN <= p.ts_ms <= limit
                and (p.accuracy_m is None or math.isfinite(p.accuracy_m))
                and (p.speed_mps is None or math.isfinite(p.speed_mps))
                and (p.heading_deg is None or math.isfinite(p.heading_deg))
                and (not require_key or key == p.driver_id.encode())
            ):
                pings.append(p)
                positions.append(i)
                continue
        try:
            ping = decode_ping(raw, now_ms, max_future_ms, max_bytes)
            if require_key:
                check_key(key, ping.driver_id)
            pings.append(ping)
            positions.append(i)
        except InvalidMessage as exc:
            dead.append((key, dead_letter(source_topic, raw, exc, now_ms)))
    return DecodedBatch(pings, dead, positions)
