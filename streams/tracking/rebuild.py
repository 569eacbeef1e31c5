"""Read-model rebuild: when Redis has lost its data (a restart without persistence, a
FLUSHDB), the worker writes again everything it owns (docs/tracking.md).

Each worker keeps a sentinel key of its own in Redis. Every FLEET_READ_MODEL_CHECK_S the
tracking timer looks for it; when it is missing (lost with the data, or a worker that just
started), the worker rewrites, from its tables, every owned driver's position (driver hash
and ``fleet:pos``), status and progress fields, open alerts and completion entries, in
chunks that yield to the event loop, then sets the sentinel again. So after Redis loses data
the read model is whole again within FLEET_READ_MODEL_CHECK_S plus one rebuild.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Iterable

from prometheus_client import Counter, Histogram

from fleet.clock import now_ms
from fleet.geo import position_cell, zone_cell
from fleet.ingest import LivePosition, decode_state
from fleet.live import ALERTS_OPEN_KEY, WRITE_POSITIONS_LUA, driver_key, position_args
from fleet.records import Ping, encode
from fleet.topics import EVENTS, topic_name
from fleet.tracking.alerts import to_alert
from fleet.tracking.completion import COMPLETION_LUA, completion_args, stop_outcomes
from fleet.tracking.read_model import driver_fields
from streams.app import app, settings
from streams.ingest.state import INGESTOR, driver_states
from streams.resilience import retry_transient
from streams.resources import redis
from streams.tracking.effects import COMPLETION_TTL_S
from streams.tracking.state import (
    known_drivers,
    peek_track,
    synced,
    track_lock,
    tracks,
    written_fields,
)

log = logging.getLogger(__name__)

CHUNK = 500  # drivers per Redis pipeline; the loop runs other work between chunks
REBUILDS = Counter("fleet_read_model_rebuilds_total", "Read-model rebuilds after Redis lost data")
REBUILD_SECONDS = Histogram(
    "fleet_read_model_rebuild_seconds", "Duration of a read-model rebuild",
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60),
)  # fmt: skip
SENTINEL = f"fleet:sentinel:{settings.app_id}:{uuid.uuid4().hex}"


def owned_partitions() -> set[int]:
    """Partitions of driver-keyed state this worker is active for (not standby)."""
    names = {
        tracks.changelog_topic.get_topic_name(),
        driver_states.changelog_topic.get_topic_name(),
        topic_name(settings, EVENTS),
    }
    return {tp.partition for tp in app.assignor.assigned_actives() if tp.topic in names}


def _owned(partition: int | None, owned: set[int]) -> bool:
    return partition is None or partition in owned


async def check_read_model() -> bool:
    """Rebuild when this worker's sentinel is gone; True when a rebuild ran."""
    if not app.tables.recovery.completed.is_set():  # type: ignore[attr-defined]
        return False  # tables are not whole yet: the next check rebuilds
    if await retry_transient("redis_tracking", lambda: redis.client.exists(SENTINEL)):
        return False
    began = time.perf_counter()
    await rebuild(owned_partitions())
    await retry_transient("redis_tracking", lambda: redis.client.set(SENTINEL, now_ms()))
    REBUILDS.inc()
    REBUILD_SECONDS.observe(time.perf_counter() - began)
    log.info("read model rebuilt in %.2f s", time.perf_counter() - began)
    return True


async def rebuild(owned: set[int]) -> None:
    """Write positions, driver fields, open alerts and completion of every owned driver."""
    written_fields.clear()  # what Redis had is gone: write every field again
    await _rebuild_positions(owned)
    drivers = sorted(known_drivers())
    for i in range(0, len(drivers), CHUNK):
        async with track_lock:
            await _rebuild_tracks(drivers[i : i + CHUNK], owned)
        await asyncio.sleep(0)


async def _rebuild_positions(owned: set[int]) -> None:
    cutoff = now_ms() - settings.position_ttl_s * 1000
    drivers = {k.decode() for k in driver_states} | set(INGESTOR.states)  # type: ignore[attr-defined]
    chunk: list[LivePosition] = []
    for driver in sorted(drivers):
        key = driver.encode()
        if not _owned(driver_states.source_partition.get(key), owned):
            continue
        state = INGESTOR.states.get(driver) or decode_state(driver_states.get(key))  # type: ignore[arg-type]
        if state.ts_ms < cutoff:
            continue
        cell = position_cell(state.lat, state.lon)
        ping = Ping(driver, state.ts_ms, state.lat, state.lon, seq=state.seq)
        chunk.append(LivePosition(ping, cell, zone_cell(cell, settings.zone_resolution)))
        if len(chunk) >= CHUNK:
            await _write_positions(chunk)
            chunk = []
            await asyncio.sleep(0)
    if chunk:
        await _write_positions(chunk)


async def _write_positions(positions: Iterable[LivePosition]) -> None:
    args: list[str | int] = [settings.position_ttl_s, *position_args(positions, now_ms())]
    write = redis.script(WRITE_POSITIONS_LUA)
    await retry_transient("redis_positions", lambda: write(args=args))


async def _rebuild_tracks(drivers: list[str], owned: set[int]) -> None:
    now = now_ms()
    pipe = redis.client.pipeline(transaction=False)
    outcomes = []
    for driver in drivers:
        if not _owned(tracks.source_partition.get(driver.encode()), owned):
            continue
        track = peek_track(driver)
        if track is None:
            continue
        _sync, geo = synced(track, now)
        fields = driver_fields(track, geo, now)
        pipe.hset(driver_key(driver), mapping=fields)  # type: ignore[arg-type]
        written_fields[driver] = fields
        for alert in track.alerts.values():
            opened = to_alert(driver, alert, "open", alert.opened_ms)
            pipe.hset(ALERTS_OPEN_KEY, alert.alert_id, encode(opened))
        if geo is not None and geo.plan.route_id == track.route_id:
            outcomes += stop_outcomes(geo.plan, track.done, settings.zone_resolution)
    await retry_transient("redis_tracking", pipe.execute)
    if outcomes:
        args = completion_args(outcomes, COMPLETION_TTL_S)
        write_completion = redis.script(COMPLETION_LUA)
        await retry_transient("redis_completion", lambda: write_completion(args=args))
