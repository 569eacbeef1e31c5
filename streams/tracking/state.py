"""Tracking state: plan records (global tables) and driver tracks (cache over a table).

Pings, events and the timer each read a driver's track, await Redis, then write it back:
``track_lock`` keeps those read-modify-writes from overwriting each other.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Iterable

import msgspec
from mode import Service

from fleet.clock import now_ms
from fleet.records import Ping
from fleet.tracking.config import TrackingConfig
from fleet.tracking.read_model import DriverFields
from fleet.tracking.sync import PlanRecord, sync_plan
from fleet.tracking.tracker import DriverTrack, PlanGeometry, TrackResult
from streams.app import (
    app,
    global_bytes_table,
    settings,
    source_partitioned_table,
    table_get,
)
from streams.coalesce import DueWrites, on_save_all

log = logging.getLogger(__name__)

CONFIG = TrackingConfig.from_settings(settings)
RECENT_FIXES = 5  # pings kept per driver for the read interface (not persisted)

# Plans are keyed by route, drivers by driver: every worker needs every plan, so plans and
# the driver -> route index are global. Their changelog partition comes from the key, so
# writes from any agent (routes, commands) land in one place per key.
plans_table = global_bytes_table("tracking-plans")
driver_routes = global_bytes_table("tracking-driver-routes")
# Driver state lives with the owner of the driver's pings and events (co-partitioned).
tracks = source_partitioned_table("tracking-drivers")
track_lock = asyncio.Lock()


class StoredTrack(msgspec.Struct):
    """A driver's track with the source partition of its topics (for timer writes)."""

    track: DriverTrack
    partition: int | None = None


_RECORD = msgspec.json.Decoder(PlanRecord)
_STORED = msgspec.json.Decoder(StoredTrack)
_record_cache: dict[str, tuple[bytes, PlanRecord]] = {}
_track_cache: dict[str, StoredTrack] = {}  # decoded tracks of the drivers this worker owns
_unsaved_tracks = DueWrites(settings.state_flush_s)  # tracks the table lacks
written_fields: dict[str, DriverFields] = {}  # last read-model write per driver
recent_fixes: dict[str, deque[Ping]] = {}  # last pings per driver, for the read interface
# The stale timer's due index: driver -> the earliest time (ms) the timer could change it
# (fleet.tracking.tracker.next_timer_ms). A driver absent from it is due: new, changed by an
# input, or its plan changed. The timer looks only at due drivers, so its walk follows what
# is due, not the number of drivers held.
_next_check: dict[str, int] = {}
_route_driver: dict[str, str] = {}  # route -> the driver of its last plan seen (reassigns)


def mark_due(driver_id: str | None) -> None:
    """The timer looks at this driver on its next walk."""
    if driver_id is not None:
        _next_check.pop(driver_id, None)


def set_next_check(driver_id: str, at_ms: int) -> None:
    _next_check[driver_id] = at_ms


def due_drivers(now: int) -> list[str]:
    """Known drivers whose next check time has come (or that have none)."""
    check = _next_check.get
    return [d for d in known_drivers() if check(d, 0) <= now]


# Called with the route id of every plan written by any worker (decisions keep an index).
plan_listeners: list[Callable[[str], None]] = []


def plan_changed_keys(route_keys: Iterable[bytes]) -> None:
    """Plans written by any worker (global table changelog): their drivers are due, and the
    driver a route had before (a reassign moves the route away from it)."""
    for key in route_keys:
        route_id = key.decode()
        for listener in plan_listeners:
            listener(route_id)
        record = load_record(route_id)
        mark_due(_route_driver.pop(route_id, None))
        if record is not None:
            mark_due(record.plan.driver_id)
            _route_driver[route_id] = record.plan.driver_id


def driver_route_changed_keys(driver_keys: Iterable[bytes]) -> None:
    for key in driver_keys:
        mark_due(key.decode())


plans_table.on_changelog_keys = plan_changed_keys  # type: ignore[attr-defined]
driver_routes.on_changelog_keys = driver_route_changed_keys  # type: ignore[attr-defined]


class WarmUpClock(Service):
    """When this worker started tracking: right after a start, silence is not yet meaningful."""

    started_ms: int | None = None

    async def on_start(self) -> None:
        self.started_ms = now_ms()

    def warming_up(self, now: int) -> bool:
        return self.started_ms is None or now - self.started_ms < CONFIG.stale_after_ms

    def ends_ms(self) -> int:
        """When the warm-up ends (now, if the clock has not started)."""
        if self.started_ms is None:
            return now_ms()
        return self.started_ms + CONFIG.stale_after_ms


warm_up = app.resource(WarmUpClock())


def load_record(route_id: str | None) -> PlanRecord | None:
    """The latest plan record of a route (decoded once per stored value)."""
    if route_id is None:
        return None
    raw = table_get(plans_table, route_id.encode())
    if raw is None:
        return None
    cached = _record_cache.get(route_id)
    if cached is not None and cached[0] == raw:
        return cached[1]
    record = _RECORD.decode(raw)
    _record_cache[route_id] = (raw, record)
    return record


def route_of_driver(driver_id: str) -> str | None:
    """The route a driver is indexed under (its latest plan's route)."""
    raw = table_get(driver_routes, driver_id.encode())
    return raw.decode() if raw is not None else None


def store_record(record: PlanRecord) -> None:
    """Make ``record`` the route's current plan and index it under its driver."""
    plans_table[record.plan.route_id.encode()] = msgspec.json.encode(record)
    driver_routes[record.plan.driver_id.encode()] = record.plan.route_id.encode()
    plan_changed_keys([record.plan.route_id.encode()])


def plan_route_ids() -> list[str]:
    """Every route with a plan (plans are global: every worker knows them all)."""
    return [key.decode() for key in plans_table]  # type: ignore[attr-defined]


def load_track(driver_id: str) -> StoredTrack:
    """The driver's track (from the in-memory cache, else the table), or a fresh one."""
    cached = _track_cache.get(driver_id)
    if cached is not None:
        return cached
    key = driver_id.encode()
    raw = table_get(tracks, key)
    stored = _STORED.decode(raw) if raw is not None else StoredTrack(DriverTrack(driver_id))
    if stored.partition is not None:
        tracks.source_partition.setdefault(key, stored.partition)
    _track_cache[driver_id] = stored
    return stored


def known_drivers() -> set[str]:
    """Drivers with a track in the table or the cache."""
    return {k.decode() for k in tracks} | set(_track_cache)  # type: ignore[attr-defined]


def peek_track(driver_id: str) -> DriverTrack | None:
    """The driver's track if this worker has one, without caching it."""
    cached = _track_cache.get(driver_id)
    if cached is not None:
        return cached.track
    raw = table_get(tracks, driver_id.encode())
    return _STORED.decode(raw).track if raw is not None else None


def save_track(
    track: DriverTrack, partition: int | None, now: bool = False, due: bool = True
) -> None:
    """Keep the track; it reaches the changelog once due (streams/coalesce.py), or at once
    with ``now`` (an event, a command, an alert change: docs/tracking.md, crash consistency).

    Offsets of the input that changed a track are committed only once the change is in the
    changelog: Faust flushes its producer before committing an agent's offsets (events are
    written through), the ping consumer waits for ``coalesce.oldest_unsaved``.
    """
    key = track.driver_id.encode()
    if partition is not None:
        tracks.source_partition[key] = partition
    if due:  # pings only push the timer's deadlines later: they leave the due index alone
        mark_due(track.driver_id)
    _track_cache[track.driver_id] = StoredTrack(track, tracks.source_partition.get(key))
    if now:
        write_tracks([track.driver_id])
    else:
        _unsaved_tracks.mark(track.driver_id)
    write_tracks(_unsaved_tracks.take_due())


def write_tracks(driver_ids: Iterable[str]) -> None:
    """Write drivers' tracks to the changelog-backed table."""
    for driver_id in driver_ids:
        stored = _track_cache.get(driver_id)
        if stored is not None:
            tracks[driver_id.encode()] = msgspec.json.encode(stored)


on_save_all(_unsaved_tracks, write_tracks)


def write_due_tracks() -> None:
    write_tracks(_unsaved_tracks.take_due())


def forget_driver(track: DriverTrack, partition: int | None) -> bool:
    """Drop an idle driver from tables (tombstones) and caches; also its route's plan when
    that plan is finished and indexed under it. True when the route was dropped too."""
    from streams.ingest.state import INGESTOR, driver_states  # ingest's state of the driver

    driver_id = track.driver_id
    key = driver_id.encode()
    partition = partition if partition is not None else tracks.source_partition.get(key)
    for table in (tracks, driver_states):
        if partition is not None:
            table.source_partition.setdefault(key, partition)
        if key in table:
            del table[key]  # a tombstone on the changelog, at the driver's partition
        table.source_partition.pop(key, None)
    INGESTOR.states.pop(driver_id, None)
    _track_cache.pop(driver_id, None)
    _next_check.pop(driver_id, None)
    written_fields.pop(driver_id, None)
    recent_fixes.pop(driver_id, None)
    route_id = route_of_driver(driver_id)
    record = load_record(route_id)
    if route_id is None or record is None or record.plan.driver_id != driver_id:
        return False
    if any(stop.stop_id not in track.done for stop in record.plan.stops):
        return False  # stops left: the route is not finished
    del plans_table[route_id.encode()]
    del driver_routes[key]
    _record_cache.pop(route_id, None)
    return True


def remember_fixes(pings: Iterable[Ping]) -> None:
    """Keep the last few fixes per driver (pings arrive in order per driver)."""
    for ping in pings:
        fixes = recent_fixes.get(ping.driver_id)
        if fixes is None:
            fixes = recent_fixes[ping.driver_id] = deque(maxlen=RECENT_FIXES)
        fixes.append(ping)


def synced(track: DriverTrack, at_ms: int) -> tuple[TrackResult, PlanGeometry | None]:
    """The track moved onto its route's latest plan version (or off a route it lost)."""
    route_id = route_of_driver(track.driver_id) or track.route_id
    return sync_plan(track, load_record(route_id), at_ms)


@app.on_before_shutdown.connect  # type: ignore[arg-type]
async def save_tracks_on_shutdown(app: object, *args: object, **kwargs: object) -> None:
    """A clean stop saves every change (the producer is flushed right after)."""
    write_tracks(_unsaved_tracks.take_all())


@app.on_partitions_revoked.connect  # type: ignore[arg-type]
async def forget_tracks(app: object, *args: object, **kwargs: object) -> None:
    """Save what changed, then read tracks from the table again (partitions may move)."""
    try:
        write_tracks(_unsaved_tracks.take_all())
    except Exception:  # the partitions may already be gone: the next owner replays
        log.exception("could not save tracks before a rebalance")
    _unsaved_tracks.clear()
    _track_cache.clear()
    written_fields.clear()
    recent_fixes.clear()
    _next_check.clear()  # every driver this worker holds next is due
