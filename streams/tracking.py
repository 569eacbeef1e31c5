"""Route tracking agents: plans, events, commands, the ping hook and the stale timer."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import faust
import msgspec
import redis.asyncio as aioredis
from faust.types import EventT, StreamT
from faust.types.tables import GlobalTableT
from prometheus_client import Counter

from fleet.clock import now_ms
from fleet.decode import dead_letter, decode_struct
from fleet.errors import InvalidMessage
from fleet.live import ALERTS_OPEN_KEY, driver_key
from fleet.records import (
    Alert,
    DeliveryEvent,
    DispatchCommand,
    Ping,
    RoutePlan,
    RouteUpdate,
    encode,
)
from fleet.topics import ALERTS, COMMANDS, EVENTS, ROUTE_UPDATES, ROUTES, topic_name
from fleet.tracking.completion import COMPLETION_LUA, completion_args, stop_outcomes
from fleet.tracking.config import TrackingConfig
from fleet.tracking.plans import StopsHandled, apply_command, is_newer
from fleet.tracking.tracker import (
    DriverTrack,
    PlanGeometry,
    TrackResult,
    apply_event,
    apply_pings,
    apply_plan,
    check_timers,
    driver_status,
    handle_stops,
    plan_geometry,
    release_route,
    route_progress,
)
from streams.app import app, dlq_topic, raw_topic, settings, source_partitioned_table
from streams.coalesce import DueWrites
from streams.resilience import retry_transient

log = logging.getLogger(__name__)

CONFIG = TrackingConfig.from_settings(settings)
TRACKING_ERRORS = Counter(
    "fleet_tracking_errors_total", "Inputs the tracker failed on (a bug)", ["source"]
)
COMPLETION_TTL_S = 2 * 86_400
RECENT_COMMANDS = 64  # command ids kept per route: a redelivered command applies once

routes_topic = raw_topic(ROUTES)
events_topic = raw_topic(EVENTS)
commands_topic = raw_topic(COMMANDS)
alerts_topic = raw_topic(ALERTS)
route_updates_topic = raw_topic(ROUTE_UPDATES)

_BYTES: faust.Schema = faust.Schema(
    key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
)


def _global_bytes_table(name: str) -> GlobalTableT:
    """A bytes -> bytes table every worker holds whole (changelog partition from the key)."""
    return app.GlobalTable(
        name,
        schema=_BYTES,
        key_type=bytes,
        value_type=bytes,
        partitions=settings.partitions,
        use_partitioner=True,
    )


# Plans are keyed by route, drivers by driver: every worker needs every plan, so plans and
# the driver -> route index are global. Their changelog partition comes from the key, so
# writes from any agent (routes, commands) land in one place per key.
plans_table = _global_bytes_table("tracking-plans")
driver_routes = _global_bytes_table("tracking-driver-routes")
# Driver state lives with the owner of the driver's pings and events (co-partitioned).
tracks = source_partitioned_table("tracking-drivers")

_redis = aioredis.Redis.from_url(settings.redis_url)
_write_completion = _redis.register_script(COMPLETION_LUA)
_started_ms = now_ms()
# Pings, events and the timer each read a driver's state, await Redis, then write it back:
# one lock keeps those read-modify-writes from overwriting each other.
_track_lock = asyncio.Lock()


class PlanRecord(msgspec.Struct):
    """A plan version as stored, with the stops its command handled and recent commands."""

    plan: RoutePlan
    handled: list[tuple[str, list[str], str]] = msgspec.field(default_factory=list)
    commands: list[str] = msgspec.field(default_factory=list)


class StoredTrack(msgspec.Struct):
    """A driver's track with the source partition of its topics (for timer writes)."""

    track: DriverTrack
    partition: int | None = None


_PLAN = msgspec.json.Decoder(RoutePlan)
_EVENT = msgspec.json.Decoder(DeliveryEvent)
_COMMAND = msgspec.json.Decoder(DispatchCommand)
_RECORD = msgspec.json.Decoder(PlanRecord)
_STORED = msgspec.json.Decoder(StoredTrack)
_record_cache: dict[str, tuple[bytes, PlanRecord]] = {}
_track_cache: dict[str, StoredTrack] = {}  # decoded tracks of the drivers this worker owns
_unsaved_tracks = DueWrites(settings.state_flush_s)  # tracks the table lacks
_written_fields: dict[str, dict[str | bytes, str | int]] = {}  # last read-model write per driver


# --- state access ---------------------------------------------------------------------------


def load_record(route_id: str | None) -> PlanRecord | None:
    """The latest plan record of a route (decoded once per stored value)."""
    if route_id is None:
        return None
    raw = plans_table.get(route_id.encode())
    if raw is None:
        return None
    cached = _record_cache.get(route_id)
    if cached is not None and cached[0] == raw:
        return cached[1]
    record = _RECORD.decode(raw)
    _record_cache[route_id] = (raw, record)
    return record


def store_record(record: PlanRecord) -> None:
    """Make ``record`` the route's current plan and index it under its driver."""
    plans_table[record.plan.route_id.encode()] = msgspec.json.encode(record)
    driver_routes[record.plan.driver_id.encode()] = record.plan.route_id.encode()


def load_track(driver_id: str) -> StoredTrack:
    """The driver's track (from the in-memory cache, else the table), or a fresh one."""
    cached = _track_cache.get(driver_id)
    if cached is not None:
        return cached
    key = driver_id.encode()
    raw = tracks.get(key)
    stored = _STORED.decode(raw) if raw is not None else StoredTrack(DriverTrack(driver_id))
    if stored.partition is not None:
        tracks.source_partition.setdefault(key, stored.partition)
    _track_cache[driver_id] = stored
    return stored


def save_track(track: DriverTrack, partition: int | None) -> None:
    """Keep the track; it reaches the changelog once due (streams/coalesce.py).

    A crash loses at most FLEET_STATE_FLUSH_S of tracking state, which alert ids derived from
    the opening time make safe to replay.
    """
    key = driver_id_key(track.driver_id)
    if partition is not None:
        tracks.source_partition[key] = partition
    _track_cache[track.driver_id] = StoredTrack(track, tracks.source_partition.get(key))
    _unsaved_tracks.mark(track.driver_id)
    write_tracks(_unsaved_tracks.take_due())


@app.on_before_shutdown.connect  # type: ignore[arg-type]
async def save_tracks_on_shutdown(app: object, *args: object, **kwargs: object) -> None:
    """A clean stop saves every change (the producer is flushed right after)."""
    write_tracks(_unsaved_tracks.take_all())


def write_tracks(driver_ids: Iterable[str]) -> None:
    """Write drivers' tracks to the changelog-backed table."""
    for driver_id in driver_ids:
        stored = _track_cache.get(driver_id)
        if stored is not None:
            tracks[driver_id_key(driver_id)] = msgspec.json.encode(stored)


@app.on_partitions_revoked.connect  # type: ignore[arg-type]
async def forget_tracks(app: object, *args: object, **kwargs: object) -> None:
    """Save what changed, then read tracks from the table again (partitions may move)."""
    try:
        write_tracks(_unsaved_tracks.take_all())
    except Exception:  # the partitions may already be gone: the next owner replays
        log.exception("could not save tracks before a rebalance")
    _unsaved_tracks.clear()
    _track_cache.clear()
    _written_fields.clear()


def driver_id_key(driver_id: str) -> bytes:
    return driver_id.encode()


def sync_plan(track: DriverTrack, at_ms: int) -> tuple[TrackResult, PlanGeometry | None]:
    """Bring the driver onto its route's latest plan version (or off a route it lost)."""
    raw_route = driver_routes.get(driver_id_key(track.driver_id))
    route_id = raw_route.decode() if raw_route is not None else track.route_id
    record = load_record(route_id)
    if record is None or record.plan.driver_id != track.driver_id:
        if track.route_id is not None:
            return release_route(track, track.route_id, at_ms), None
        return TrackResult(track, []), None
    plan = record.plan
    if plan.route_id == track.route_id and plan.version == track.plan_version:
        return TrackResult(track, []), plan_geometry(plan)
    result = apply_plan(track, plan, at_ms)
    alerts = list(result.alerts)
    current = result.track
    for _route, stop_ids, how in record.handled:
        handled = handle_stops_of(current, stop_ids, how, at_ms)
        current, alerts = handled.track, alerts + handled.alerts
    return TrackResult(current, alerts), plan_geometry(plan)


def handle_stops_of(track: DriverTrack, stop_ids: list[str], how: str, at_ms: int) -> TrackResult:
    """Resolve what a dispatcher handled on the driver's route."""
    handled = StopsHandled(track.driver_id, track.route_id or "", tuple(stop_ids), how)
    return handle_stops(track, handled, at_ms)


# --- effects --------------------------------------------------------------------------------


@dataclass(slots=True)
class Effects:
    """Alerts and read-model writes of one step, flushed in one Redis pipeline."""

    alerts: list[Alert] = field(default_factory=list)
    driver_fields: dict[str, dict[str | bytes, str | int]] = field(default_factory=dict)
    completion: list[Any] = field(default_factory=list)

    def add(
        self,
        before: DriverTrack,
        after: DriverTrack,
        geo: PlanGeometry | None,
        alerts: Iterable[Alert],
        now: int,
    ) -> None:
        self.alerts.extend(alerts)
        plan = geo.plan if geo is not None else None
        progress = route_progress(after, plan)
        fields: dict[str | bytes, str | int] = {
            "status": driver_status(after, geo, now),
            "progress": f"{progress.fraction:.4f}",
            "next_stop_id": progress.next_stop_id or "",
            "route_id": after.route_id or "",
            "stops_total": progress.total,
            "stops_delivered": progress.delivered,
            "stops_failed": progress.failed,
        }
        # Most batches change nothing a dashboard shows: skip writing what Redis already has.
        if _written_fields.get(after.driver_id) != fields:
            self.driver_fields[after.driver_id] = fields
        self.completion.extend(_completion_changes(before, after, plan))

    async def flush(self) -> None:
        """Read model first, then alert messages: both are safe to repeat on a replay."""
        if not (self.alerts or self.driver_fields or self.completion):
            return
        pipe = _redis.pipeline(transaction=False)
        for driver_id, fields in self.driver_fields.items():
            pipe.hset(driver_key(driver_id), mapping=fields)  # type: ignore[arg-type]
        for alert in self.alerts:
            if alert.state == "open":
                pipe.hset(ALERTS_OPEN_KEY, alert.alert_id, encode(alert))
            else:
                pipe.hdel(ALERTS_OPEN_KEY, alert.alert_id)
        await retry_transient("redis_tracking", pipe.execute)
        _written_fields.update(self.driver_fields)
        if self.completion:
            args = completion_args(self.completion, COMPLETION_TTL_S)
            await retry_transient("redis_completion", lambda: _write_completion(args=args))
        for alert in self.alerts:
            await alerts_topic.send(key=alert.driver_id.encode(), value=encode(alert))


def _completion_changes(
    before: DriverTrack, after: DriverTrack, plan: RoutePlan | None
) -> list[Any]:
    """Stop outcomes to file when the route, its version or an outcome changed."""
    unchanged = (before.route_id, before.plan_version, before.done) == (
        after.route_id,
        after.plan_version,
        after.done,
    )
    if unchanged or plan is None or plan.route_id != after.route_id:
        return []
    outcomes = stop_outcomes(plan, after.done, settings.zone_resolution)
    # Stops an older version had and this one dropped leave the reports.
    old = load_record(before.route_id) if before.route_id == after.route_id else None
    if old is not None and old.plan.version != plan.version:
        kept = {s.stop_id for s in plan.stops}
        gone = msgspec.structs.replace(
            old.plan, stops=[s for s in old.plan.stops if s.stop_id not in kept]
        )
        outcomes += stop_outcomes(gone, {}, settings.zone_resolution, removed=True)
    return outcomes


async def send_dead_letter(
    source: str, key: bytes | None, raw: bytes | None, error: InvalidMessage
) -> None:
    """Every rejected input goes to the dead-letter topic with its reason."""
    letter = dead_letter(topic_name(settings, source), raw, error, now_ms())
    send = partial(dlq_topic.send, key=key, value=encode(letter))
    await retry_transient("dlq", send)


async def _processing_error(source: str, event: EventT, exc: Exception) -> None:
    """A bug on one message dead-letters it (reason processing_error) instead of the agent."""
    log.exception("%s message at offset %s failed", source, event.message.offset)
    TRACKING_ERRORS.labels(source).inc()
    error = InvalidMessage("processing_error", f"{type(exc).__name__}: {exc}")
    await send_dead_letter(source, event.key, event.value, error)


# --- the ping hook --------------------------------------------------------------------------


def _ping_partition(driver_id: str) -> int | None:
    """The pings partition of a driver, as the ingest agent recorded it."""
    from streams import ingest  # imported late: ingest imports this module

    return ingest.driver_states.source_partition.get(driver_id.encode())


async def on_pings(pings: list[Ping], now_ms: int) -> None:
    """Called by the ingest agent with the pings that moved live positions, in order."""
    async with _track_lock:
        await _track_pings(pings, now_ms)


async def _track_pings(pings: list[Ping], now_ms: int) -> None:
    by_driver: dict[str, list[Ping]] = {}
    for ping in pings:
        by_driver.setdefault(ping.driver_id, []).append(ping)
    effects = Effects()
    saves: list[tuple[DriverTrack, int | None]] = []
    for driver_id, driver_pings in by_driver.items():
        try:
            before = load_track(driver_id).track
            synced, geo = sync_plan(before, now_ms)
            driver_pings.sort(key=lambda p: p.ts_ms)
            result = apply_pings(synced.track, geo, driver_pings, now_ms, CONFIG)
        except Exception:
            # A tracking bug must not stop the ingest: this driver skips a batch, counted.
            log.exception("tracking pings of %s failed", driver_id)
            TRACKING_ERRORS.labels("pings").inc()
            continue
        effects.add(before, result.track, geo, [*synced.alerts, *result.alerts], now_ms)
        saves.append((result.track, _ping_partition(driver_id)))
    await effects.flush()
    for track, partition in saves:
        save_track(track, partition)


# --- agents ---------------------------------------------------------------------------------


@app.agent(routes_topic)
async def track_route_plans(stream: StreamT[bytes]) -> None:
    """Latest plan version per route; late old versions are ignored."""
    async for event in stream.events():
        if event.value is None:
            continue  # a tombstone compacts a route away; there is nothing to track
        try:
            plan = decode_struct(event.value, _PLAN, settings.max_message_bytes)
        except InvalidMessage as exc:
            await send_dead_letter(ROUTES, event.key, event.value, exc)
            continue
        current = load_record(plan.route_id)
        if current is None or is_newer(current.plan, plan):
            store_record(PlanRecord(plan, commands=current.commands if current else []))
            await index_route(plan)


async def index_route(plan: RoutePlan) -> None:
    """The read model shows the driver's route as soon as the plan is known."""
    set_route = partial(_redis.hset, driver_key(plan.driver_id), "route_id", plan.route_id)
    await retry_transient("redis_tracking", set_route)


@app.agent(events_topic)
async def track_delivery_events(stream: StreamT[bytes]) -> None:
    """Arrivals, outcomes and shift boundaries, in order per driver."""
    async for event in stream.events():
        try:
            await handle_event(event)
        except InvalidMessage as exc:
            await send_dead_letter(EVENTS, event.key, event.value, exc)
        except Exception as exc:
            await _processing_error(EVENTS, event, exc)


async def handle_event(event: EventT) -> None:
    async with _track_lock:
        await _track_event(event)


async def _track_event(event: EventT) -> None:
    delivery = decode_struct(event.value, _EVENT, settings.max_message_bytes)
    now = now_ms()
    before = load_track(delivery.driver_id).track
    synced, geo = sync_plan(before, now)
    result = apply_event(synced.track, geo, delivery, CONFIG)
    effects = Effects()
    effects.add(before, result.track, geo, [*synced.alerts, *result.alerts], now)
    await effects.flush()
    save_track(result.track, event.message.partition)


@app.agent(commands_topic)
async def apply_dispatch_commands(stream: StreamT[bytes]) -> None:
    """Dispatcher edits become new plan versions; those that cannot apply are dead-lettered."""
    async for event in stream.events():
        try:
            await handle_command(event.value)
        except InvalidMessage as exc:
            await send_dead_letter(COMMANDS, event.key, event.value, exc)
        except Exception as exc:
            await _processing_error(COMMANDS, event, exc)


async def handle_command(raw: bytes | None) -> None:
    cmd = decode_struct(raw, _COMMAND, settings.max_message_bytes)
    record = load_record(cmd.route_id)
    if record is not None and cmd.command_id in record.commands:
        return  # a redelivered command already applied
    target = None
    if cmd.type == "reassign" and cmd.to_driver_id is not None:
        raw_route = driver_routes.get(cmd.to_driver_id.encode())
        target = load_record(raw_route.decode()) if raw_route is not None else None
    outcome = apply_command(record.plan if record else None, cmd, target.plan if target else None)
    for plan in outcome.plans:
        previous = record if plan.route_id == cmd.route_id else target
        assert previous is not None
        handled = [
            (h.route_id, list(h.stop_ids), h.how)
            for h in outcome.handled
            if h.route_id == plan.route_id
        ]
        commands = [*previous.commands[-(RECENT_COMMANDS - 1) :], cmd.command_id]
        store_record(PlanRecord(plan, handled, commands))
        await index_route(plan)
        await publish_plan(plan, cmd, handled)


async def publish_plan(
    plan: RoutePlan, cmd: DispatchCommand, handled: list[tuple[str, list[str], str]]
) -> None:
    """The new version on fleet.routes, and what the driver app must show next."""
    await routes_topic.send(key=plan.route_id.encode(), value=encode(plan))
    update = RouteUpdate(
        route_id=plan.route_id,
        driver_id=plan.driver_id,
        version=plan.version,
        cause=f"dispatch:{cmd.type}",
        caused_by=f"command:{cmd.command_id}",
        issued_ms=cmd.issued_ms,
        plan=plan,
        rationale={"moved_stops": [sid for _, ids, _ in handled for sid in ids]},
    )
    await route_updates_topic.send(key=plan.driver_id.encode(), value=encode(update))


# --- stale timer ----------------------------------------------------------------------------


def _owned_partitions() -> set[int]:
    """Partitions of the tracks changelog this worker is active for (not standby)."""
    changelog = tracks.changelog_topic.get_topic_name()
    return {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == changelog}


@app.timer(interval=settings.stale_check_interval_s)
async def check_stale_drivers() -> None:
    """Silence on shift makes a driver stale; plan changes reach quiet drivers too."""
    async with _track_lock:
        await _check_all_drivers()
        write_tracks(_unsaved_tracks.take_due())


async def _check_all_drivers() -> None:
    now = now_ms()
    # Right after a start the ingest is still catching up: silence is not yet meaningful.
    warming_up = now - _started_ms < CONFIG.stale_after_ms
    owned = _owned_partitions()
    effects = Effects()
    saves: list[tuple[DriverTrack, int | None]] = []
    drivers = {k.decode() for k in tracks} | set(_track_cache)  # type: ignore[attr-defined]
    for driver_id in drivers:
        try:
            stored = load_track(driver_id)
            if stored.partition is not None and stored.partition not in owned:
                continue
            before = stored.track
            synced, geo = sync_plan(before, now)
            result = synced if warming_up else check_timers(synced.track, geo, now, CONFIG)
        except Exception:
            log.exception("stale check of %r failed", driver_id)
            TRACKING_ERRORS.labels("timer").inc()
            continue
        alerts = synced.alerts if warming_up else [*synced.alerts, *result.alerts]
        if alerts or result.track != before:
            effects.add(before, result.track, geo, alerts, now)
            saves.append((result.track, stored.partition))
    await effects.flush()
    for track, partition in saves:
        save_track(track, partition)
