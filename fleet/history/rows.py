"""Contract records -> column batches (pyarrow tables) in the column order of the history DDL.

Pure functions over whole batches: one pass per column, no per-row dict building.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
import numpy as np
import pyarrow as pa

from fleet.records import (
    Alert,
    DeadLetter,
    DeliveryEvent,
    EtaUpdate,
    Ping,
    RoutePlan,
    RouteUpdate,
)

COORD_SCALE = 7  # Decimal64(7): 1e-7 degrees, about 1 cm
COORD_TYPE = pa.decimal128(18, COORD_SCALE)
MISSING_SEQ = -1  # the contract's identity value of a ping without seq

_json = msgspec.json.Encoder()


def _json_text(value: Any) -> str | None:
    return None if value is None else _json.encode(value).decode()


def fixed_point(values: Sequence[float]) -> pa.Array:
    """Degrees -> Decimal(18, 7), rounded (not truncated) so 52.5219 stays 52.5219."""
    scaled = np.rint(np.asarray(values, dtype=np.float64) * 10.0**COORD_SCALE).astype(np.int64)
    # Decimal128 is a little-endian 128-bit integer: low word, then the sign extension.
    words = np.empty((len(scaled), 2), dtype=np.int64)
    words[:, 0] = scaled
    words[:, 1] = scaled >> 63
    return pa.Array.from_buffers(COORD_TYPE, len(scaled), [None, pa.py_buffer(words.tobytes())])


def _ingested(n: int, ingested_ms: int) -> pa.Array:
    return pa.array(np.full(n, ingested_ms, dtype=np.int64))


def ping_rows(pings: Sequence[Ping], ingested_ms: int) -> pa.Table:
    """Pings -> `fleet.pings` rows; a missing seq becomes -1 (part of the identity)."""
    n = len(pings)
    return pa.table(
        {
            "driver_id": pa.array([p.driver_id for p in pings], pa.string()),
            "ts_ms": pa.array([p.ts_ms for p in pings], pa.int64()),
            "seq": pa.array([MISSING_SEQ if p.seq is None else p.seq for p in pings], pa.int64()),
            "lat": fixed_point([p.lat for p in pings]),
            "lon": fixed_point([p.lon for p in pings]),
            "accuracy_m": pa.array([p.accuracy_m for p in pings], pa.float32()),
            "speed_mps": pa.array([p.speed_mps for p in pings], pa.float32()),
            "heading_deg": pa.array([p.heading_deg for p in pings], pa.float32()),
            "route_id": pa.array([p.route_id for p in pings], pa.string()),
            "ingested_ms": _ingested(n, ingested_ms),
        }
    )


def event_rows(events: Sequence[DeliveryEvent], ingested_ms: int) -> pa.Table:
    """Delivery events -> `fleet.events` rows; the proof of delivery as JSON text."""
    return pa.table(
        {
            "event_id": pa.array([e.event_id for e in events], pa.string()),
            "driver_id": pa.array([e.driver_id for e in events], pa.string()),
            "type": pa.array([e.type for e in events], pa.string()),
            "ts_ms": pa.array([e.ts_ms for e in events], pa.int64()),
            "route_id": pa.array([e.route_id for e in events], pa.string()),
            "stop_id": pa.array([e.stop_id for e in events], pa.string()),
            "reason": pa.array([e.reason for e in events], pa.string()),
            "lat": pa.array([e.lat for e in events], pa.float64()),
            "lon": pa.array([e.lon for e in events], pa.float64()),
            "pod": pa.array([_json_text(e.pod) for e in events], pa.string()),
            "ingested_ms": _ingested(len(events), ingested_ms),
        }
    )


def alert_rows(alerts: Sequence[Alert], ingested_ms: int) -> pa.Table:
    """Alert changes -> `fleet.alerts` rows; details as JSON text."""
    return pa.table(
        {
            "alert_id": pa.array([a.alert_id for a in alerts], pa.string()),
            "kind": pa.array([a.kind for a in alerts], pa.string()),
            "state": pa.array([a.state for a in alerts], pa.string()),
            "driver_id": pa.array([a.driver_id for a in alerts], pa.string()),
            "opened_ms": pa.array([a.opened_ms for a in alerts], pa.int64()),
            "changed_ms": pa.array([a.changed_ms for a in alerts], pa.int64()),
            "severity": pa.array([a.severity for a in alerts], pa.string()),
            "route_id": pa.array([a.route_id for a in alerts], pa.string()),
            "details": pa.array([_json_text(a.details) or "{}" for a in alerts], pa.string()),
            "ingested_ms": _ingested(len(alerts), ingested_ms),
        }
    )


def eta_rows(updates: Sequence[EtaUpdate], ingested_ms: int) -> pa.Table:
    """ETA updates -> `fleet.etas` rows, one per (update, stop)."""
    flat = [(u, s) for u in updates for s in u.stops]
    return pa.table(
        {
            "route_id": pa.array([u.route_id for u, _ in flat], pa.string()),
            "driver_id": pa.array([u.driver_id for u, _ in flat], pa.string()),
            "model_version": pa.array([u.model_version for u, _ in flat], pa.string()),
            "computed_ms": pa.array([u.computed_ms for u, _ in flat], pa.int64()),
            "stop_id": pa.array([s.stop_id for _, s in flat], pa.string()),
            "p10_ms": pa.array([s.p10_ms for _, s in flat], pa.int64()),
            "p50_ms": pa.array([s.p50_ms for _, s in flat], pa.int64()),
            "p90_ms": pa.array([s.p90_ms for _, s in flat], pa.int64()),
            "ingested_ms": _ingested(len(flat), ingested_ms),
        }
    )


def route_plan_rows(plans: Sequence[RoutePlan], ingested_ms: int) -> pa.Table:
    """Route plans -> `fleet.route_plans` rows; stops, depot and path as JSON text."""
    return pa.table(
        {
            "route_id": pa.array([p.route_id for p in plans], pa.string()),
            "driver_id": pa.array([p.driver_id for p in plans], pa.string()),
            "version": pa.array([p.version for p in plans], pa.int64()),
            "stops": pa.array([_json_text(p.stops) or "[]" for p in plans], pa.string()),
            "depot": pa.array([_json_text(p.depot) for p in plans], pa.string()),
            "shift_start_ms": pa.array([p.shift_start_ms for p in plans], pa.int64()),
            "shift_end_ms": pa.array([p.shift_end_ms for p in plans], pa.int64()),
            "capacity": pa.array([p.capacity for p in plans], pa.int64()),
            "path": pa.array([_json_text(p.path) for p in plans], pa.string()),
            "ingested_ms": _ingested(len(plans), ingested_ms),
        }
    )


def dead_letter_rows(letters: Sequence[DeadLetter], ingested_ms: int) -> pa.Table:
    """Dead letters -> `fleet.dead_letters` rows."""
    return pa.table(
        {
            "source_topic": pa.array([d.source_topic for d in letters], pa.string()),
            "reason": pa.array([d.reason for d in letters], pa.string()),
            "detail": pa.array([d.detail for d in letters], pa.string()),
            "received_ms": pa.array([d.received_ms for d in letters], pa.int64()),
            "raw": pa.array([d.raw for d in letters], pa.string()),
            "raw_encoding": pa.array([d.raw_encoding for d in letters], pa.string()),
            "raw_bytes": pa.array([d.raw_bytes for d in letters], pa.int64()),
            "raw_sha256": pa.array([d.raw_sha256 for d in letters], pa.string()),
            "ingested_ms": _ingested(len(letters), ingested_ms),
        }
    )


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def decision_rows(updates: Sequence[RouteUpdate], ingested_ms: int, applied: bool) -> pa.Table:
    """RouteUpdates -> `fleet.decisions` rows (applied: from fleet.route-updates, else a
    proposal); the rationale and the plan's stops as JSON text."""
    why = [u.rationale or {} for u in updates]
    moved = [[str(s) for s in r.get("moved_stops", []) if isinstance(s, str)] for r in why]
    return pa.table(
        {
            "route_id": pa.array([u.route_id for u in updates], pa.string()),
            "driver_id": pa.array([u.driver_id for u in updates], pa.string()),
            "version": pa.array([u.version for u in updates], pa.int64()),
            "applied": pa.array([int(applied)] * len(updates), pa.uint8()),
            "proposal_id": pa.array([u.proposal_id or "" for u in updates], pa.string()),
            "cause": pa.array([u.cause for u in updates], pa.string()),
            "caused_by": pa.array([u.caused_by for u in updates], pa.string()),
            "issued_ms": pa.array([u.issued_ms for u in updates], pa.int64()),
            "moved_stops": pa.array(moved, pa.list_(pa.string())),
            "objective_before": pa.array([_number(r.get("objective_before")) for r in why],
                                         pa.float64()),
            "objective_after": pa.array([_number(r.get("objective_after")) for r in why],
                                        pa.float64()),
            "rationale": pa.array([_json_text(u.rationale) for u in updates], pa.string()),
            "stops": pa.array([_json_text(u.plan.stops) or "[]" for u in updates], pa.string()),
            "ingested_ms": _ingested(len(updates), ingested_ms),
        }
    )  # fmt: skip
