"""The ingest core: de-duplicate, order by event time and filter GPS jumps over a batch of pings.

Pure logic over plain state objects, shared by the Faust agent and ``fleet replay``:
- a ping seen before (same driver_id, ts_ms, seq) is a duplicate and dropped;
- a ping older than the driver's live position is kept for history but never moves it;
- a fix implying a speed above ``max_speed_mps`` is a jump: it moves nothing until
  ``confirm_fixes`` consecutive fixes agree with it (a real relocation), and a fix
  consistent with the old position discards it (a glitch).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import msgspec

from fleet.geo import haversine_m, position_cell, zone_cell
from fleet.records import Ping

RECENT_IDENTITIES = 512  # per driver; older duplicates are caught by history de-duplication
JUMP_SLACK_M = 100.0  # GPS noise allowed on top of max speed x elapsed time


class DriverState(msgspec.Struct):
    """What the pipeline remembers of one driver between batches (a Faust table value)."""

    ts_ms: int = -1
    lat: float = 0.0
    lon: float = 0.0
    seq: int = -1
    recent: list[int] = msgspec.field(default_factory=list)
    pending: list[tuple[int, float, float]] = msgspec.field(default_factory=list)


_state_encoder = msgspec.msgpack.Encoder()
_state_decoder = msgspec.msgpack.Decoder(DriverState)


def encode_state(state: DriverState) -> bytes:
    return _state_encoder.encode(state)


def decode_state(data: bytes | None) -> DriverState:
    return DriverState() if not data else _state_decoder.decode(data)


def identity_key(ts_ms: int, seq: int | None) -> int:
    """A compact identity of a ping within its driver: (ts_ms, seq or -1)."""
    return hash((ts_ms, -1 if seq is None else seq))


@dataclass(frozen=True, slots=True)
class IngestConfig:
    """The ingest thresholds (from Settings)."""

    max_speed_mps: float = 70.0
    confirm_fixes: int = 3
    zone_resolution: int = 7


@dataclass(frozen=True, slots=True)
class LivePosition:
    """A driver's live position after a batch, ready for the read model."""

    ping: Ping
    h3: str
    zone: str


@dataclass(slots=True)
class IngestResult:
    """What one batch did."""

    accepted: list[Ping] = field(default_factory=list)  # valid, first seen: for history
    moved: list[Ping] = field(default_factory=list)  # moved a live position, in order
    live: dict[str, LivePosition] = field(default_factory=dict)
    changed: set[str] = field(default_factory=set)  # drivers whose state changed
    duplicates: int = 0
    late: int = 0
    jumps: int = 0  # fixes flagged as implausible jumps
    jumps_confirmed: int = 0


def ingest_batch(
    pings: Iterable[Ping], states: dict[str, DriverState], config: IngestConfig
) -> IngestResult:
    """Apply a batch of valid pings (in arrival order) to the driver states, in place."""
    result = IngestResult()
    seen: dict[str, set[int]] = {}
    last_moved: dict[str, Ping] = {}
    max_speed = config.max_speed_mps
    confirm = config.confirm_fixes
    for p in pings:
        driver = p.driver_id
        state = states.get(driver)
        if state is None:
            state = states[driver] = DriverState()
        ids = seen.get(driver)
        if ids is None:
            ids = seen[driver] = set(state.recent)
        ident = identity_key(p.ts_ms, p.seq)
        if ident in ids:
            result.duplicates += 1
            continue
        ids.add(ident)
        state.recent.append(ident)
        result.accepted.append(p)
        result.changed.add(driver)
        if p.ts_ms < state.ts_ms:
            result.late += 1
            continue
        if state.ts_ms >= 0 and not _plausible(state.ts_ms, state.lat, state.lon, p, max_speed):
            pending = state.pending
            if pending and _plausible(pending[-1][0], pending[-1][1], pending[-1][2], p, max_speed):
                pending.append((p.ts_ms, p.lat, p.lon))
            else:
                state.pending = [(p.ts_ms, p.lat, p.lon)]
                result.jumps += 1
            if len(state.pending) < confirm:
                continue
            result.jumps_confirmed += 1
        state.pending = []
        state.ts_ms, state.lat, state.lon = p.ts_ms, p.lat, p.lon
        state.seq = -1 if p.seq is None else p.seq
        result.moved.append(p)
        last_moved[driver] = p
    for driver in result.changed:
        recent = states[driver].recent
        if len(recent) > RECENT_IDENTITIES:
            del recent[: len(recent) - RECENT_IDENTITIES]
    for driver, p in last_moved.items():
        cell = position_cell(p.lat, p.lon)
        result.live[driver] = LivePosition(p, cell, zone_cell(cell, config.zone_resolution))
    return result


def _plausible(ts_ms: int, lat: float, lon: float, p: Ping, max_speed: float) -> bool:
    dt_s = max(0.0, (p.ts_ms - ts_ms) / 1000.0)
    return haversine_m(lat, lon, p.lat, p.lon) <= max_speed * dt_s + JUMP_SLACK_M
