"""Wire records of the contract (shared/contract/README.md) as typed msgspec structs.

Decoding is lenient about unknown fields (forward compatibility) and strict about types:
a boolean is not a number, a float is not an integer time.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

# The JSON Schema form (ECMA regexes: `$` is the end of the string). Python checks use
# IDENTIFIER_RE instead: Python's `$` also matches before a final newline ("drv-1\n").
IDENTIFIER_PATTERN = r"^[A-Za-z0-9._:-]{1,64}$"
IDENTIFIER_RE = r"\A[A-Za-z0-9._:-]{1,64}\Z"
Identifier = Annotated[
    str,
    msgspec.Meta(
        pattern=IDENTIFIER_RE,
        min_length=1,
        max_length=64,
        extra_json_schema={"pattern": IDENTIFIER_PATTERN},
    ),
]
# Numbers bounded to what the stores hold (docs/ingest.md "Bounds"): every integer fits
# ClickHouse's and Arrow's Int64, every epoch-millisecond time lies in a plausible window.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
EPOCH_MS_MIN = 946_684_800_000  # 2000-01-01T00:00Z, inclusive
EPOCH_MS_MAX = 4_102_444_800_000  # 2100-01-01T00:00Z, exclusive
Int64 = Annotated[int, msgspec.Meta(ge=INT64_MIN, le=INT64_MAX)]
EpochMs = Annotated[int, msgspec.Meta(ge=EPOCH_MS_MIN, lt=EPOCH_MS_MAX)]
# A ping's time is checked by fleet.decode after the contract's own checks (it also has an
# upper bound relative to the clock); the schema states the fixed window.
PingTime = Annotated[
    int, msgspec.Meta(extra_json_schema={"minimum": EPOCH_MS_MIN, "exclusiveMaximum": EPOCH_MS_MAX})
]
# The hot path checks the character set itself (with a cache of known-good ids): msgspec's
# regex check would cost more than the whole rest of decoding. The schema still says it.
PingIdentifier = Annotated[
    str,
    msgspec.Meta(min_length=1, max_length=64, extra_json_schema={"pattern": IDENTIFIER_PATTERN}),
]

EVENT_TYPES = ("shift_start", "arrived", "delivered", "failed", "shift_end")
FAILURE_REASONS = ("not_home", "access_denied", "wrong_address", "damaged", "refused", "other")
ALERT_KINDS = (
    "off_route",
    "behind_schedule",
    "stale",
    "failed_delivery",
    "eta_window_risk",
    "unassigned_order",
)
DRIVER_STATUSES = ("on_schedule", "behind_schedule", "off_route", "stale", "idle")
COMMAND_TYPES = (
    "add_stop",
    "remove_stop",
    "resequence",
    "reassign",
    "cancel_route",
    "optimize",
    "accept_proposal",
    "lock_stop",
    "unlock_stop",
)
ROUTE_UPDATE_CAUSES = (
    "assign",
    "optimize",
    "off_route",
    "stale",
    "failed_delivery",
    "behind_schedule",
    "eta_window_risk",
    "reassign_stale",
)  # plus "dispatch:<command type>" for a dispatcher's edit

EventType = Literal["shift_start", "arrived", "delivered", "failed", "shift_end"]
FailureReason = Literal["not_home", "access_denied", "wrong_address", "damaged", "refused", "other"]
AlertKind = Literal[
    "off_route", "behind_schedule", "stale", "failed_delivery", "eta_window_risk",
    "unassigned_order",
]  # fmt: skip
AlertState = Literal["open", "resolved"]
CommandType = Literal[
    "add_stop", "remove_stop", "resequence", "reassign", "cancel_route",
    "optimize", "accept_proposal", "lock_stop", "unlock_stop",
]  # fmt: skip
OptimizeScope = Literal["route", "zone"]


class Ping(msgspec.Struct, frozen=True, omit_defaults=True, gc=False):
    """One GPS fix from a driver app. Identity: (driver_id, ts_ms, seq or -1).

    Decode through ``fleet.decode``, which also enforces the identifier character set.
    """

    driver_id: PingIdentifier
    ts_ms: PingTime
    lat: float
    lon: float
    seq: Int64 | None = None
    accuracy_m: float | None = None
    speed_mps: float | None = None
    heading_deg: float | None = None
    route_id: PingIdentifier | None = None


class LatLon(msgspec.Struct, frozen=True):
    """A WGS84 point."""

    lat: float
    lon: float


class DeliveryEvent(msgspec.Struct, frozen=True, omit_defaults=True):
    """Arrival, delivery, failed attempt or shift boundary reported by a driver app."""

    event_id: Identifier
    driver_id: Identifier
    type: EventType
    ts_ms: EpochMs
    route_id: Identifier | None = None
    stop_id: Identifier | None = None
    reason: FailureReason | None = None
    lat: float | None = None
    lon: float | None = None
    pod: dict[str, Any] | None = None


class Stop(msgspec.Struct, frozen=True, omit_defaults=True):
    """A stop of a route plan, in planned visiting order."""

    stop_id: Identifier
    lat: float
    lon: float
    window_start_ms: EpochMs | None = None
    window_end_ms: EpochMs | None = None
    service_s: float = 0.0
    demand: Int64 = 0
    priority: Int64 = 0
    planned_arrival_ms: EpochMs | None = None


class RoutePlan(msgspec.Struct, frozen=True, omit_defaults=True):
    """A driver's planned route; a higher version replaces a lower one."""

    route_id: Identifier
    driver_id: Identifier
    version: Int64
    stops: list[Stop]
    depot: LatLon | None = None
    shift_start_ms: EpochMs | None = None
    shift_end_ms: EpochMs | None = None
    capacity: Int64 | None = None
    path: list[tuple[float, float]] | None = None


class DispatchCommand(msgspec.Struct, frozen=True, omit_defaults=True):
    """A dispatcher's route edit."""

    command_id: Identifier
    route_id: Identifier
    type: CommandType
    issued_ms: EpochMs
    issued_by: str | None = None
    stop: Stop | None = None  # add_stop: only stop_id, lat and lon are required
    stop_id: Identifier | None = None
    stop_ids: list[Identifier] | None = None
    to_driver_id: Identifier | None = None
    scope: OptimizeScope | None = None  # optimize: "route" (default) or "zone"
    proposal_id: Identifier | None = None  # accept_proposal


class Order(msgspec.Struct, frozen=True, omit_defaults=True):
    """A new stop not yet on any route; the pipeline assigns it (stop_id = order_id)."""

    order_id: Identifier
    lat: float
    lon: float
    created_ms: EpochMs
    window_start_ms: EpochMs | None = None
    window_end_ms: EpochMs | None = None
    service_s: float = 0.0
    demand: Int64 = 0
    priority: Int64 = 0
    zone_hint: str | None = None


class RouteUpdate(msgspec.Struct, frozen=True, omit_defaults=True):
    """What a driver app must show next, with the cause and the solver's rationale."""

    route_id: Identifier
    driver_id: Identifier
    version: Int64
    cause: str
    issued_ms: EpochMs
    plan: RoutePlan
    caused_by: str | None = None
    rationale: dict[str, Any] | None = None
    proposal_id: Identifier | None = None  # set on fleet.route-proposals


class Alert(msgspec.Struct, frozen=True, omit_defaults=True):
    """One change of state of an alert: opened once, resolved once."""

    alert_id: Identifier
    kind: AlertKind
    state: AlertState
    driver_id: Identifier
    opened_ms: EpochMs
    changed_ms: EpochMs
    severity: str = "warning"
    route_id: Identifier | None = None
    details: dict[str, Any] = msgspec.field(default_factory=dict)


class StopEta(msgspec.Struct, frozen=True):
    """Arrival-time quantiles of one remaining stop."""

    stop_id: Identifier
    p10_ms: EpochMs
    p50_ms: EpochMs
    p90_ms: EpochMs


class EtaUpdate(msgspec.Struct, frozen=True, omit_defaults=True):
    """ETAs of every remaining stop of a route."""

    route_id: Identifier
    driver_id: Identifier
    model_version: str
    computed_ms: EpochMs
    stops: list[StopEta]


class DeadLetter(msgspec.Struct, frozen=True):
    """A rejected input, with why and the original bytes."""

    source_topic: str
    reason: str
    detail: str
    received_ms: EpochMs
    raw: str
    raw_encoding: Literal["utf-8", "base64"] = "utf-8"
    # Set when `raw` is only a prefix of a large input: its full length and SHA-256 (hex).
    raw_bytes: Int64 | None = None
    raw_sha256: str | None = None


CONTRACT_RECORDS: dict[str, type[msgspec.Struct]] = {
    "Ping": Ping,
    "DeliveryEvent": DeliveryEvent,
    "RoutePlan": RoutePlan,
    "DispatchCommand": DispatchCommand,
    "Order": Order,
    "RouteUpdate": RouteUpdate,
    "Alert": Alert,
    "EtaUpdate": EtaUpdate,
    "DeadLetter": DeadLetter,
}

_encoder = msgspec.json.Encoder()


def encode(record: msgspec.Struct) -> bytes:
    """JSON bytes of a record, as they go on the wire."""
    return _encoder.encode(record)
