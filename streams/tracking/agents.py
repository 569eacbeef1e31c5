"""Tracking agents: route plans, delivery events, dispatch commands, moved pings, stale timer.

Error policy: streams/dead_letters.py (invalid -> dead letter; a bug -> dead letter with
``processing_error``; the stream goes on). Moved pings and the timer have no message to
dead-letter: a bug there skips the driver for that step, logged and counted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from functools import partial

import msgspec
from faust.types import EventT, StreamT
from prometheus_client import Counter, Gauge, Histogram

from fleet.clock import now_ms
from fleet.decode import check_key, decode_struct
from fleet.identity import IssuerKeys
from fleet.live import driver_key
from fleet.records import DeliveryEvent, DispatchCommand, Ping, RoutePlan
from fleet.route_geometry import Projection, project_many
from fleet.topics import COMMANDS, EVENTS, ROUTES
from fleet.tracking.completion import COMPLETION_LUA, completion_args, stop_outcomes
from fleet.tracking.plans import DISPATCH_EDITS, apply_command, is_newer
from fleet.tracking.sync import RECENT_COMMANDS, PlanRecord
from fleet.tracking.tracker import (
    DriverTrack,
    PlanGeometry,
    TrackResult,
    apply_event,
    apply_pings,
    check_timers,
    is_on_shift,
    next_timer_ms,
    route_progress,
)
from streams import hooks
from streams.app import app, settings
from streams.dead_letters import PROCESSING_ERRORS, handle_or_dead_letter
from streams.resilience import retry_transient
from streams.resources import redis
from streams.topics import commands_topic, events_topic, routes_topic
from streams.tracking.effects import COMPLETION_TTL_S, Effects
from streams.tracking.publish import publish_plan
from streams.tracking.rebuild import check_read_model
from streams.tracking.state import (
    CONFIG,
    due_drivers,
    forget_driver,
    load_record,
    load_track,
    remember_fixes,
    route_of_driver,
    save_track,
    set_next_check,
    store_record,
    synced,
    track_lock,
    tracks,
    warm_up,
    write_due_tracks,
)

log = logging.getLogger(__name__)

_PLAN = msgspec.json.Decoder(RoutePlan)
_EVENT = msgspec.json.Decoder(DeliveryEvent)
_COMMAND = msgspec.json.Decoder(DispatchCommand)
# Set (the secure profile): a command is applied only when signed by its issued_by.
_ISSUERS = (
    IssuerKeys.from_file(settings.dispatch_keys_file) if settings.dispatch_keys_file else None
)


async def store_plan(record: PlanRecord, previous: PlanRecord | None) -> None:
    """Make ``record`` current, show the route in the read model, tell ``plan_changed``."""
    plan = record.plan
    same_route = previous is not None and previous.plan.route_id == plan.route_id
    # Removed stops are filed before the record is stored (a crash in between replays the
    # message, the record not being there) and again after (a track step that ran on the
    # previous version meanwhile may have filed them as pending).
    if same_route:
        await file_removed_stops(previous.plan, plan)  # type: ignore[union-attr]
    store_record(record)
    set_route = partial(redis.client.hset, driver_key(plan.driver_id), "route_id", plan.route_id)
    await retry_transient("redis_tracking", set_route)
    if same_route:
        await file_removed_stops(previous.plan, plan)  # type: ignore[union-attr]
    previous_version = previous.plan.version if previous is not None else None
    await hooks.plan_changed.fire(hooks.PlanChanged(plan, previous_version))


async def file_removed_stops(old: RoutePlan, new: RoutePlan) -> None:
    """Stops the new version dropped leave the completion reports (idempotent on replay;
    the tracks' steps cannot: they only know the route's current plan)."""
    kept = {s.stop_id for s in new.stops}
    gone = msgspec.structs.replace(old, stops=[s for s in old.stops if s.stop_id not in kept])
    if not gone.stops:
        return
    args = completion_args(
        stop_outcomes(gone, {}, settings.zone_resolution, removed=True, version=new.version),
        COMPLETION_TTL_S,
    )
    write_completion = redis.script(COMPLETION_LUA)
    await retry_transient("redis_completion", lambda: write_completion(args=args))


# --- route plans ----------------------------------------------------------------------------


@app.agent(routes_topic)
async def track_route_plans(stream: StreamT[bytes]) -> None:
    """Latest plan version per route; late old versions are ignored."""
    async for event in stream.events():
        if event.value is None:
            continue  # a tombstone compacts a route away; there is nothing to track
        await handle_or_dead_letter(ROUTES, event, handle_plan)


async def handle_plan(event: EventT) -> None:
    plan = decode_struct(event.value, _PLAN, settings.max_message_bytes)
    current = load_record(plan.route_id)
    if current is None or is_newer(current.plan, plan):
        await store_plan(PlanRecord(plan, commands=current.commands if current else []), current)


# --- delivery events ------------------------------------------------------------------------


@app.agent(events_topic)
async def track_delivery_events(stream: StreamT[bytes]) -> None:
    """Arrivals, outcomes and shift boundaries, in order per driver."""
    async for event in stream.events():
        await handle_or_dead_letter(EVENTS, event, handle_event)


async def handle_event(event: EventT) -> None:
    delivery = decode_struct(event.value, _EVENT, settings.max_message_bytes)
    check_key(event.key, delivery.driver_id)
    async with track_lock:
        now = now_ms()
        before = load_track(delivery.driver_id).track
        sync, geo = synced(before, now)
        result = apply_event(sync.track, geo, delivery, CONFIG)
        effects = Effects()
        effects.add(before, result.track, geo, [*sync.alerts, *result.alerts], now)
        await effects.flush()
        # Written through: the event's offset is committed after Faust flushes the producer.
        save_track(result.track, event.message.partition, now=True)


# --- dispatch commands ----------------------------------------------------------------------


@app.agent(commands_topic)
async def apply_dispatch_commands(stream: StreamT[bytes]) -> None:
    """Dispatcher edits become new plan versions; other command types go to their registered
    handler (hooks.command_handlers); a command that cannot apply is dead-lettered."""
    async for event in stream.events():
        await handle_or_dead_letter(COMMANDS, event, handle_command)


async def handle_command(event: EventT) -> None:
    cmd = decode_struct(event.value, _COMMAND, settings.max_message_bytes)
    if _ISSUERS is not None:
        _ISSUERS.check(cmd.issued_by, event.value, event.headers)
    if cmd.type not in DISPATCH_EDITS:
        await hooks.command_handlers.handle(cmd)
        return
    record = load_record(cmd.route_id)
    target = None
    if cmd.type == "reassign" and cmd.to_driver_id is not None:
        target = load_record(route_of_driver(cmd.to_driver_id))
    if record is not None and cmd.command_id in record.commands:
        # A redelivered command already stored (a crash between storing and publishing, or
        # after): publish its versions again, the same RouteUpdates (idempotent publish).
        await republish_command(cmd, [record, target])
        return
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
        stored = PlanRecord(plan, handled, commands)
        await store_plan(stored, previous)
        await publish_command_plan(cmd, stored)


async def publish_command_plan(cmd: DispatchCommand, record: PlanRecord) -> None:
    """The RouteUpdate of a command's plan version; the same message on every call."""
    rationale = {"moved_stops": [sid for _, ids, _ in record.handled for sid in ids]}
    await publish_plan(
        record.plan, f"dispatch:{cmd.type}", f"command:{cmd.command_id}", rationale, cmd.issued_ms
    )


async def republish_command(cmd: DispatchCommand, records: list[PlanRecord | None]) -> None:
    """Publish again the plan versions ``cmd`` made that are still current (the last
    command of their route): a redelivered command gets its RouteUpdate, never nothing."""
    for record in records:
        if record is not None and record.commands and record.commands[-1] == cmd.command_id:
            await publish_command_plan(cmd, record)


# --- moved pings ----------------------------------------------------------------------------


@hooks.moved_pings.register
async def track_moved_pings(moved: hooks.MovedPings) -> None:
    """Pings that moved live positions, from the ingest agent, in order per driver."""
    async with track_lock:
        await _track_pings(moved.pings, moved.received_ms, moved.partitions, moved.live_written)


async def _track_pings(
    pings: list[Ping],
    now: int,
    partitions: dict[str, int],
    live_written: Awaitable[object] | None = None,
) -> None:
    by_driver: dict[str, list[Ping]] = {}
    for ping in pings:
        by_driver.setdefault(ping.driver_id, []).append(ping)
    synced_drivers: list[tuple[DriverTrack, TrackResult, PlanGeometry | None, list[Ping]]] = []
    for driver_id, driver_pings in by_driver.items():
        try:
            before = load_track(driver_id).track
            sync, geo = synced(before, now)
        except Exception:
            # Valid pings are already live: this driver skips a tracking step, counted.
            log.exception("tracking pings of %s failed", driver_id)
            PROCESSING_ERRORS.labels("tracking_pings").inc()
            continue
        driver_pings.sort(key=lambda p: p.ts_ms)
        synced_drivers.append((before, sync, geo, driver_pings))
    projected = _project_fixes(synced_drivers)
    effects = Effects()
    saves: list[tuple[DriverTrack, int | None, bool, bool]] = []
    tracked: list[list[Ping]] = []  # the pings of each driver tracked
    for before, sync, geo, driver_pings in synced_drivers:
        try:
            projection = projected.get(before.driver_id)
            result = apply_pings(sync.track, geo, driver_pings, now, CONFIG, projection)
        except Exception:
            log.exception("tracking pings of %s failed", before.driver_id)
            PROCESSING_ERRORS.labels("tracking_pings").inc()
            continue
        tracked.append(driver_pings)
        alerts = [*sync.alerts, *result.alerts]
        effects.add(before, result.track, geo, alerts, now)
        # A ping only pushes the timer's times later, unless it changed an alert (a stale
        # driver back: its silence is watched again) or it is the driver's first: the timer
        # may have looked at the driver before any ping and set its next look 10 min away,
        # while silence from now on is stale after FLEET_STALE_AFTER_S.
        due = bool(alerts) or before.last_seen_ms is None
        saves.append((result.track, partitions.get(before.driver_id), bool(alerts), due))
    if live_written is not None:
        # Positions first (the driver hashes' fields from tracking land after them). If they
        # failed, nothing of this step is kept: the batch is processed again.
        await live_written
    for driver_pings in tracked:
        remember_fixes(driver_pings)
    await effects.flush()
    for track, partition, changed, due in saves:
        save_track(track, partition, now=changed, due=due)


def _project_fixes(
    drivers: list[tuple[DriverTrack, TrackResult, PlanGeometry | None, list[Ping]]],
) -> dict[str, Projection]:
    """Every fix of the batch's drivers on a route, projected together on their lines
    (``project_many``: the same answers as one driver at a time)."""
    on_route = [
        (sync.track, geo, driver_pings)
        for _before, sync, geo, driver_pings in drivers
        if geo is not None
    ]
    try:
        both = project_many(
            [geo.line for _, geo, _ in on_route],
            [len(driver_pings) for _, _, driver_pings in on_route],
            [ping.lat for _, _, driver_pings in on_route for ping in driver_pings],
            [ping.lon for _, _, driver_pings in on_route for ping in driver_pings],
            [track.along_m for track, _, _ in on_route],
        )
    except Exception:  # each driver then projects its own pings
        log.exception("projecting a batch of %d drivers failed", len(on_route))
        return {}
    out: dict[str, Projection] = {}
    at = 0
    for track, _, driver_pings in on_route:
        end = at + len(driver_pings)
        out[track.driver_id] = Projection(both.along_m[at:end], both.cross_m[at:end])
        at = end
    return out


# --- stale timer ----------------------------------------------------------------------------


def _owned_partitions() -> set[int]:
    """Partitions of the tracks changelog this worker is active for (not standby)."""
    changelog = tracks.changelog_topic.get_topic_name()
    return {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == changelog}


TIMER_CHUNK = 1000  # drivers per step of the stale timer; ingest runs between steps
TIMER_SECONDS = Histogram(
    "fleet_stale_timer_seconds", "Duration of one stale-timer walk over the owned drivers",
    buckets=(0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10),
)  # fmt: skip
TIMER_DUE = Gauge(
    "fleet_stale_timer_due_drivers", "Drivers the last stale-timer walk looked at (due ones)"
)
FORGOTTEN = Counter(
    "fleet_tracking_forgotten_total", "Idle drivers and finished routes dropped from state",
    ["what"],
)  # fmt: skip


@app.timer(interval=settings.stale_check_interval_s)
async def check_stale_drivers() -> None:
    """Silence on shift makes a driver stale; plan changes reach quiet drivers too; idle
    drivers and their finished routes leave the state. In chunks that yield to ingest."""
    began = time.perf_counter()
    now = now_ms()
    drivers = sorted(due_drivers(now))
    TIMER_DUE.set(len(drivers))
    for i in range(0, len(drivers), TIMER_CHUNK):
        async with track_lock:
            await _check_drivers(drivers[i : i + TIMER_CHUNK])
        await asyncio.sleep(0)
    async with track_lock:
        write_due_tracks()
    TIMER_SECONDS.observe(time.perf_counter() - began)


async def _check_drivers(drivers: list[str]) -> None:
    now = now_ms()
    warming_up = warm_up.warming_up(now)
    owned = _owned_partitions()
    effects = Effects()
    saves: list[tuple[DriverTrack, int | None, bool]] = []
    idle: list[tuple[DriverTrack, int | None]] = []
    checked: list[tuple[DriverTrack, PlanGeometry | None]] = []
    for driver_id in drivers:
        try:
            stored = load_track(driver_id)
            if stored.partition is not None and stored.partition not in owned:
                continue
            before = stored.track
            sync, geo = synced(before, now)
            result = sync if warming_up else check_timers(sync.track, geo, now, CONFIG)
        except Exception:
            log.exception("stale check of %r failed", driver_id)
            PROCESSING_ERRORS.labels("tracking_timer").inc()
            continue
        alerts = sync.alerts if warming_up else [*sync.alerts, *result.alerts]
        if warming_up:
            # Only plan changes reach it now, and they make it due again: the next full
            # check is when the warm-up ends (every driver is due then).
            set_next_check(driver_id, warm_up.ends_ms())
        else:
            checked.append((result.track, geo))
        if alerts or result.track != before:
            effects.add(before, result.track, geo, alerts, now)
            saves.append((result.track, stored.partition, bool(alerts)))
        elif not warming_up and is_idle(result.track, geo, now):
            idle.append((result.track, stored.partition))
    await effects.flush()
    for track, partition, changed in saves:
        save_track(track, partition, now=changed)
    forget_ms = int(settings.idle_forget_s * 1000)
    for track, geo in checked:
        plan = geo.plan if geo is not None else None
        set_next_check(track.driver_id, next_timer_ms(track, plan, now, CONFIG, forget_ms))
    for track, partition in idle:
        forgot_route = forget_driver(track, partition)
        FORGOTTEN.labels("driver").inc()
        if forgot_route:
            FORGOTTEN.labels("route").inc()


def is_idle(track: DriverTrack, geo: PlanGeometry | None, now: int) -> bool:
    """Silent for FLEET_IDLE_FORGET_S, no open alert, off shift or its route finished."""
    if track.alerts or track.last_seen_ms is None:
        return False
    if now - track.last_seen_ms < settings.idle_forget_s * 1000:
        return False
    plan = geo.plan if geo is not None else None
    finished = plan is None or route_progress(track, plan).fraction >= 1
    return finished or not is_on_shift(track, plan, now)


# --- read-model rebuild -----------------------------------------------------------------------


@app.timer(interval=settings.read_model_check_s)
async def check_read_model_present() -> None:
    """Redis lost its data (restart, flush): rewrite what this worker owns (rebuild.py)."""
    try:
        await check_read_model()
    except Exception:
        log.exception("read-model rebuild failed; the next check tries again")
        PROCESSING_ERRORS.labels("read_model_rebuild").inc()
