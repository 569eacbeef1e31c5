"""The ingest core: de-duplicate, order by event time and filter GPS jumps over a batch of pings.

Pure logic over plain state objects, shared by the Faust agent and ``fleet replay``:
- a ping seen before (same driver_id, ts_ms, seq) is a duplicate and dropped;
- a ping older than the driver's live position is kept for history but never moves it;
- a fix implying a speed above ``max_speed_mps`` is a jump: it moves nothing until
  ``confirm_fixes`` consecutive fixes agree with it (a real relocation), and a fix
  consistent with the old position discards it (a glitch).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

import msgspec

from fleet.geo import haversine_m, position_cell, zone_cell
from fleet.records import Ping

RECENT_IDENTITIES = 256  # per driver, in memory; older duplicates are caught by history
JUMP_SLACK_M = 100.0  # GPS noise allowed on top of max speed x elapsed time
M_PER_DEG = 111_195.0  # metres per degree of latitude (and of longitude at the equator)


class DriverState(msgspec.Struct):
    """What must survive a restart for one driver (a Faust table value, kept small)."""

    ts_ms: int = -1
    lat: float = 0.0
    lon: float = 0.0
    seq: int = -1
    pending: list[tuple[int, float, float]] = msgspec.field(default_factory=list)


_state_encoder = msgspec.msgpack.Encoder()
_state_decoder = msgspec.msgpack.Decoder(DriverState)


def encode_state(state: DriverState) -> bytes:
    return _state_encoder.encode(state)


def decode_state(data: bytes | None) -> DriverState:
    return DriverState() if not data else _state_decoder.decode(data)


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
    changed: set[str] = field(default_factory=set)  # drivers whose DriverState changed
    duplicates: int = 0
    late: int = 0
    jumps: int = 0  # fixes flagged as implausible jumps
    jumps_confirmed: int = 0


class Ingestor:
    """Driver states plus the recent ping identities of each driver, across batches.

    De-duplication has two layers. The live position's own identity is part of the durable
    state, so a redelivered newest fix never moves anything, even after a restart. Older
    identities are remembered in memory only (the last RECENT_IDENTITIES per driver): a
    duplicate of an old ping that is no longer remembered is classed as late, which moves
    nothing live either; the history store de-duplicates it by identity.
    """

    def __init__(self, config: IngestConfig) -> None:
        self.config = config
        self.states: dict[str, DriverState] = {}
        self._recent: dict[str, tuple[set[int], deque[int]]] = {}

    def forget(self) -> None:
        """Drop every cached state (after a rebalance the durable copy is the truth)."""
        self.states.clear()
        self._recent.clear()

    def ingest(self, pings: Iterable[Ping]) -> IngestResult:
        """Apply a batch of valid pings (in arrival order); states change in place."""
        # The hot path: per-ping work is inlined and distances are compared squared in a local
        # equirectangular frame, which is exact enough at jump scales.
        result = IngestResult()
        last_moved: dict[str, Ping] = {}
        accepted = result.accepted
        moved = result.moved
        changed = result.changed
        states = self.states
        recent = self._recent
        max_speed = self.config.max_speed_mps
        confirm = self.config.confirm_fixes
        cos = math.cos
        rad = math.radians
        for p in pings:
            driver = p.driver_id
            state = states.get(driver)
            if state is None:
                state = states[driver] = DriverState()
            memory = recent.get(driver)
            if memory is None:
                memory = recent[driver] = (set(), deque())
            ids, order = memory
            seq = -1 if p.seq is None else p.seq
            ts = p.ts_ms
            ident = hash((ts, seq))  # hash of an int tuple: the same in every process
            if ident in ids or (ts == state.ts_ms and seq == state.seq):
                result.duplicates += 1
                continue
            ids.add(ident)
            order.append(ident)
            if len(order) > RECENT_IDENTITIES:
                ids.discard(order.popleft())
            accepted.append(p)
            if ts < state.ts_ms:
                result.late += 1
                continue
            changed.add(driver)
            if state.ts_ms >= 0:
                reach = max_speed * (ts - state.ts_ms) / 1000.0 + JUMP_SLACK_M
                dy = (p.lat - state.lat) * M_PER_DEG
                dx = (p.lon - state.lon) * M_PER_DEG * cos(rad(p.lat))
                if dx * dx + dy * dy > reach * reach:
                    if not _extends_pending(state, p, max_speed):
                        state.pending = [(ts, p.lat, p.lon)]
                        result.jumps += 1
                    if len(state.pending) < confirm:
                        continue
                    result.jumps_confirmed += 1
                if state.pending:
                    state.pending = []
            state.ts_ms = ts
            state.lat = p.lat
            state.lon = p.lon
            state.seq = seq
            moved.append(p)
            last_moved[driver] = p
        zone_res = self.config.zone_resolution
        for driver, p in last_moved.items():
            cell = position_cell(p.lat, p.lon)
            result.live[driver] = LivePosition(p, cell, zone_cell(cell, zone_res))
        return result


def _extends_pending(state: DriverState, p: Ping, max_speed: float) -> bool:
    """Append p to the jump candidate chain when it is consistent with the chain's last fix."""
    if not state.pending:
        return False
    ts, lat, lon = state.pending[-1]
    if not _plausible(ts, lat, lon, p, max_speed):
        return False
    state.pending.append((p.ts_ms, p.lat, p.lon))
    return True


def _plausible(ts_ms: int, lat: float, lon: float, p: Ping, max_speed: float) -> bool:
    dt_s = max(0.0, (p.ts_ms - ts_ms) / 1000.0)
    return haversine_m(lat, lon, p.lat, p.lon) <= max_speed * dt_s + JUMP_SLACK_M
