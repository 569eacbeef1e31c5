"""Parse the tracker apps' protocols (OsmAnd/Traccar, Traccar Client JSON, OwnTracks) into fixes.

Policy: a request that cannot be read as a fix raises ``InvalidPing`` with a reason from
``fleet.decode.REASONS`` and a detail naming the parameter and its value; the caller
dead-letters it. Range and clock checks are not done here: the mapped Ping goes through
``fleet.decode.decode_ping``, the same validation as Kafka ingest.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec

from fleet.errors import InvalidPing

KNOT_MPS = 0.514444  # 1 knot in metres per second
KMH_MPS = 1 / 3.6
EPOCH_SECONDS_LIMIT = 2**31 - 1  # like Traccar: a smaller number is seconds, a larger one ms


@dataclass(frozen=True, slots=True)
class Fix:
    """A position report of a device, in the contract's units, before the driver is known."""

    device_id: str
    ts_ms: int
    lat: float
    lon: float
    accuracy_m: float | None = None
    speed_mps: float | None = None
    heading_deg: float | None = None
    altitude_m: float | None = None
    battery_pct: float | None = None
    attributes: dict[str, Any] = field(default_factory=dict)


def parse_timestamp(value: str) -> int:
    """Epoch seconds, epoch milliseconds or ISO 8601 (UTC when no zone) -> epoch ms."""
    text = value.strip()
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if math.isfinite(number):
        return round(number * 1000) if abs(number) < EPOCH_SECONDS_LIMIT else int(number)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InvalidPing(
            "invalid_value",
            f"timestamp={value!r} is neither epoch seconds, epoch milliseconds nor ISO 8601",
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1000)


def _float(name: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise InvalidPing("wrong_type", f"{name}={value!r} is not a number") from None


def _known(value: float | None) -> float | None:
    """Trackers send -1 for an unknown speed, course or accuracy."""
    return None if value is None or value < 0 else value


def _attribute(value: str) -> Any:
    if value in ("true", "false"):
        return value == "true"
    try:
        number = float(value)
    except ValueError:
        return value
    return number if math.isfinite(number) else value


OSMAND_FIELDS = {"id", "deviceid", "lat", "lon", "location", "timestamp", "speed", "bearing",
                 "heading", "altitude", "accuracy", "batt"}  # fmt: skip


def parse_osmand(params: Mapping[str, str], now_ms: int) -> Fix:
    """OsmAnd / Traccar Client query or form parameters -> Fix (speed in knots)."""
    device = params.get("id") or params.get("deviceid")
    if not device:
        raise InvalidPing("missing_field", "required parameter 'id' (or 'deviceid') is missing")
    if "location" in params:
        parts = params["location"].split(",")
        if len(parts) != 2:
            raise InvalidPing("wrong_type", f"location={params['location']!r} is not 'lat,lon'")
        lat, lon = _float("lat", parts[0]), _float("lon", parts[1])
    else:
        for name in ("lat", "lon"):
            if name not in params:
                raise InvalidPing("missing_field", f"required parameter {name!r} is missing")
        lat, lon = _float("lat", params["lat"]), _float("lon", params["lon"])
    ts = params.get("timestamp")
    speed = params.get("speed")
    course = params.get("bearing", params.get("heading"))
    numbers = {k: _float(k, params[k]) for k in ("altitude", "accuracy", "batt") if k in params}
    extra = {k: _attribute(v) for k, v in params.items() if k not in OSMAND_FIELDS}
    return Fix(
        device_id=device,
        ts_ms=parse_timestamp(ts) if ts else now_ms,
        lat=lat,
        lon=lon,
        accuracy_m=_known(numbers.get("accuracy")),
        speed_mps=_known(_float("speed", speed) * KNOT_MPS if speed else None),
        heading_deg=_known(_float("bearing", course) if course else None),
        altitude_m=numbers.get("altitude"),
        battery_pct=numbers.get("batt"),
        attributes=extra,
    )


def _object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        data = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise InvalidPing("invalid_json", f"{what}: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidPing("not_an_object", f"{what} is a JSON {type(data).__name__}, not an object")
    return data


def _number(obj: Mapping[str, Any], name: str, where: str = "") -> float | None:
    value = obj.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidPing("wrong_type", f"{where}{name}={value!r} is not a number")
    return float(value)


def _required(obj: Mapping[str, Any], name: str, where: str = "") -> float:
    value = _number(obj, name, where)
    if value is None:
        raise InvalidPing("missing_field", f"required field {where}{name!r} is missing")
    return value


def parse_traccar_json(raw: bytes, now_ms: int) -> list[Fix]:
    """Traccar Client 9 JSON (``{"location": {...} or [...], "device_id": ...}``) -> fixes.

    Its ``coords.speed`` is in m/s and -1 (unknown speed or heading) means absent;
    ``battery.level`` is a fraction of 1.
    """
    root = _object(raw, "body")
    device = root.get("device_id")
    if not isinstance(device, str) or not device:
        raise InvalidPing("missing_field", "required field 'device_id' is missing or not text")
    locations = root.get("location")
    if isinstance(locations, dict):
        locations = [locations]
    if not isinstance(locations, list) or not locations:
        raise InvalidPing("missing_field", "required field 'location' is missing")
    return [_traccar_location(device, loc, now_ms) for loc in locations]


def _traccar_location(device: str, loc: Any, now_ms: int) -> Fix:
    if not isinstance(loc, dict):
        raise InvalidPing("wrong_type", "location is not an object")
    coords = loc.get("coords")
    if not isinstance(coords, dict):
        raise InvalidPing("missing_field", "required field 'location.coords' is missing")
    ts = loc.get("timestamp")
    if ts is not None and not isinstance(ts, str | int | float):
        raise InvalidPing("wrong_type", f"location.timestamp={ts!r} is not a time")
    battery: dict[str, Any] = loc["battery"] if isinstance(loc.get("battery"), dict) else {}
    level = _known(_number(battery, "level", "battery."))
    extra: dict[str, Any] = {k: loc[k] for k in ("event", "is_moving", "odometer", "uuid", "mock")
                             if k in loc}  # fmt: skip
    if isinstance(loc.get("activity"), dict) and "type" in loc["activity"]:
        extra["activity"] = loc["activity"]["type"]
    if isinstance(loc.get("extras"), dict):
        extra.update(loc["extras"])
    if "is_charging" in battery:
        extra["charging"] = battery["is_charging"]
    return Fix(
        device_id=device,
        ts_ms=parse_timestamp(str(ts)) if ts is not None else now_ms,
        lat=_required(coords, "latitude", "coords."),
        lon=_required(coords, "longitude", "coords."),
        accuracy_m=_known(_number(coords, "accuracy", "coords.")),
        speed_mps=_known(_number(coords, "speed", "coords.")),
        heading_deg=_known(_number(coords, "heading", "coords.")),
        altitude_m=_number(coords, "altitude", "coords."),
        battery_pct=level * 100 if level is not None else None,
        attributes=extra,
    )


OWNTRACKS_FIELDS = {"_type", "lat", "lon", "tst", "acc", "alt", "vel", "cog", "batt"}


def parse_owntracks(raw: bytes, device_id: str) -> Fix | None:
    """An OwnTracks message -> Fix; None for a message that is not a location (ignored).

    Units: ``tst`` epoch seconds, ``acc``/``alt`` metres, ``vel`` km/h, ``cog`` degrees,
    ``batt`` percent; other fields (``tid``, ``conn``, ``t`` ...) become attributes.
    """
    data = _object(raw, "payload")
    if data.get("_type") != "location":
        return None
    tst = data.get("tst")
    if tst is None:
        raise InvalidPing("missing_field", "required field 'tst' is missing")
    if isinstance(tst, bool) or not isinstance(tst, int | float):
        raise InvalidPing("wrong_type", f"tst={tst!r} is not epoch seconds")
    vel = _known(_number(data, "vel"))
    return Fix(
        device_id=device_id,
        ts_ms=round(tst * 1000),
        lat=_required(data, "lat"),
        lon=_required(data, "lon"),
        accuracy_m=_known(_number(data, "acc")),
        speed_mps=vel * KMH_MPS if vel is not None else None,
        heading_deg=_known(_number(data, "cog")),
        altitude_m=_number(data, "alt"),
        battery_pct=_number(data, "batt"),
        attributes={k: v for k, v in data.items() if k not in OWNTRACKS_FIELDS},
    )


def owntracks_device(user: str | None, device: str | None) -> str:
    """The device id of an OwnTracks user and device: ``<user>.<device>``."""
    if not user or not device:
        raise InvalidPing(
            "missing_field", "OwnTracks user and device are missing (X-Limit-U/X-Limit-D or ?u=&d=)"
        )
    return f"{user}.{device}"
