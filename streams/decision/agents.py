"""Decision agents: orders, tracking's triggers, dispatcher commands, the decision timer.

Error policy: streams/dead_letters.py. An invalid order or a command that cannot apply is
dead-lettered with its reason; a bug while solving an order batch dead-letters the batch's
orders (``processing_error``); a bug in a triggered re-plan is logged and counted (there is
no message to dead-letter) and the route waits for its next trigger.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from functools import partial
from typing import Any

import msgspec
from faust.types import EventT, StreamT

import decision.decide as decide
from decision.orders import validate_order
from decision.params import SolveParams
from decision.solution import Dropped
from fleet.clock import now_ms
from fleet.decode import decode_struct
from fleet.errors import InvalidCommand
from fleet.records import DispatchCommand, LatLon, Order, RoutePlan
from fleet.topics import ORDERS
from streams import hooks
from streams.app import app, settings
from streams.dead_letters import PROCESSING_ERRORS, handle_or_dead_letter, on_processing_error
from streams.decision.pool import solver_pool
from streams.decision.publish import (
    DECISIONS,
    SOLVE_SECONDS,
    StalePlans,
    alert_unassigned,
    publish_decision,
    still_current,
)
from streams.decision.state import (
    CONFIG,
    PINNED,
    gate,
    load_proposal,
    order_seen,
    remember_order,
    save_proposal,
    set_lock,
    solve_lock,
    stale_since,
)
from streams.decision.world import own_state, route_state, states_near
from streams.topics import commands_topic, orders_topic
from streams.tracking import reads
from streams.tracking.publish import publish_plan

log = logging.getLogger(__name__)

_ORDER = msgspec.json.Decoder(Order)
_COMMAND = msgspec.json.Decoder(DispatchCommand)
REPLAN_KINDS = ("off_route", "behind_schedule", "eta_window_risk")
MOVING_KINDS = ("behind_schedule", "eta_window_risk")  # may hand stops to drivers with slack
DECISION_COMMANDS = ("optimize", "accept_proposal", "lock_stop", "unlock_stop")
STALE_RETRIES = 3
MIN_BUDGET_S = 0.2
failed_pending: list[tuple[str, str, int]] = []  # (route_id, stop_id, ts_ms) of failed stops
orders_waiting = [0]  # order batches waiting for the solver: they go before the timer's work


def budget_since(arrived_ms: int | None) -> SolveParams:
    """The solver parameters with the time limit counted from when the input arrived: a
    decision's budget covers its wait in the pipeline too (never under MIN_BUDGET_S)."""
    if arrived_ms is None:
        return CONFIG.params
    spent = max(0.0, (now_ms() - arrived_ms) / 1000)
    limit = max(MIN_BUDGET_S, CONFIG.params.time_limit_s - spent)
    return dataclasses.replace(CONFIG.params, time_limit_s=limit)


async def _timed(cause: str, fn: Any, *args: Any, **kwargs: Any) -> decide.Decision:
    """Run a pure decision in the solver process, timed."""
    began = time.perf_counter()
    try:
        return await solver_pool.run(fn, *args, **kwargs)
    finally:
        SOLVE_SECONDS.labels(cause).observe(time.perf_counter() - began)


# --- orders ---------------------------------------------------------------------------------


@app.agent(orders_topic)
async def assign_new_orders(stream: StreamT[bytes]) -> None:
    """Orders in bursts: each batch is assigned in one solve."""
    batches = stream.take_events(  # type: ignore[attr-defined]
        CONFIG.order_batch_size, within=CONFIG.order_batch_s
    )
    async for events in batches:
        orders: dict[str, tuple[Order, EventT]] = {}
        for event in events:
            await handle_or_dead_letter(ORDERS, event, partial(_collect_order, orders))
        if not orders:
            continue
        try:
            stamps = [e.message.timestamp for _, e in orders.values() if e.message.timestamp]
            arrived = int(min(stamps) * 1000) if stamps else None
            await assign([order for order, _ in orders.values()], arrived)
        except Exception as exc:
            for _, event in orders.values():
                await on_processing_error(ORDERS, event, exc)
            await _answer_failed(list(orders), exc)


async def _answer_failed(order_ids: list[str], exc: Exception) -> None:
    """Orders whose decision failed are not lost: each opens ``unassigned_order`` with the
    reason (``plans_changing`` when routes kept changing under the solve, else
    ``decision_failed``), so the dispatcher sees them in the exception queue; they are not
    remembered, so sending the order again retries it."""
    reason = "plans_changing" if isinstance(exc, StalePlans) else "decision_failed"
    for order_id in order_ids:
        try:
            await alert_unassigned(
                order_id, Dropped(order_id, reason, str(exc)[:300]), [], now_ms()
            )
        except Exception:  # the dead letter above already holds the order
            log.exception("order %s: the unassigned_order alert could not be sent", order_id)


async def _collect_order(orders: dict[str, tuple[Order, EventT]], event: EventT) -> None:
    order = validate_order(decode_struct(event.value, _ORDER, settings.max_message_bytes))
    if order.order_id in orders or order_seen(order.order_id):
        return  # a repeated order_id is a duplicate: assigned once
    orders[order.order_id] = (order, event)


async def assign(orders: list[Order], arrived_ms: int | None = None) -> decide.Decision:
    """Place a batch of orders; publish the changed routes; alert the ones nothing fits.

    When a route changed during the solve (a dispatcher's edit won the race), the batch is
    solved again from the new versions."""
    orders_waiting[0] += 1  # the decision timer starts nothing new while this waits
    try:
        await solve_lock.acquire()
    finally:
        orders_waiting[0] -= 1
    try:
        return await _assign_locked(orders, arrived_ms)
    finally:
        solve_lock.release()


async def _assign_locked(orders: list[Order], arrived_ms: int | None) -> decide.Decision:
    """The batch solved and published, under the solve lock."""
    for _attempt in range(STALE_RETRIES):
        now = now_ms()
        near = states_near([LatLon(o.lat, o.lon) for o in orders], CONFIG.order_candidates)
        decision = await _timed(
            "assign", decide.assign_orders, orders, near, now, CONFIG.travel,
            budget_since(arrived_ms), CONFIG.order_candidates,
        )  # fmt: skip
        if still_current(decision):
            break
        await asyncio.sleep(0.2)
    else:
        raise StalePlans(f"routes kept changing while {len(orders)} orders were assigned")
    by_route: dict[str, list[str]] = {}
    for order_id, route_id in decision.assigned.items():
        by_route.setdefault(route_id, []).append(order_id)
    for route_id, plan in decision.plans.items():
        placed = sorted(by_route.get(route_id, []))
        first = placed[0] if placed else sorted(decision.assigned)[0]
        single = decide.Decision("assign", {route_id: plan}, decision.rationale, True, "issued")
        await publish_decision(
            single, "assign", f"order:{first}", propose=False, now=now,
            extra={"orders": placed},
        )  # fmt: skip
    for order_id, route_id in decision.assigned.items():
        remember_order(order_id, route_id)
    candidates = list(decision.rationale.get("candidates", []))
    for order_id, why in decision.unassigned.items():
        await alert_unassigned(order_id, why, candidates, now)
        remember_order(order_id, None)
    return decision


# --- triggers from tracking -----------------------------------------------------------------


@hooks.alert_changed.register
async def note_alert(alert: Any) -> None:
    """Open alerts of the enabled kinds become triggers (queued; solved by the timer)."""
    route_id = alert.route_id
    if route_id is None:
        return
    if alert.kind == "stale":
        if alert.state == "open" and "stale" in CONFIG.triggers:
            since = alert.details.get("last_seen_ms", alert.opened_ms)
            stale_since[route_id] = (alert.alert_id, int(since))
        else:
            stale_since.pop(route_id, None)
        return
    if alert.state == "open" and alert.kind in REPLAN_KINDS and alert.kind in CONFIG.triggers:
        gate.offer(route_id, f"{alert.kind} alert:{alert.alert_id}", now_ms())


@hooks.stop_completed.register
async def note_failed_stop(outcome: hooks.StopOutcome) -> None:
    """A failed stop gets a new attempt (queued; decided by the timer)."""
    if outcome.outcome == "failed" and "failed_delivery" in CONFIG.triggers:
        failed_pending.append((outcome.route_id, outcome.stop_id, outcome.ts_ms))


@hooks.plan_changed.register
async def cool_down_after_edits(change: hooks.PlanChanged) -> None:
    """A changed plan (an edit, an assignment, a re-plan) starts the route's cooldown."""
    if change.previous_version is not None:
        gate.issued(change.plan.route_id, now_ms())


timer_busy = asyncio.Lock()  # held while a tick decides: a tick never overlaps the last


@app.timer(interval=0.05)
async def run_due_decisions() -> None:
    """The decision timer."""
    await decision_tick()


async def decision_tick() -> bool:
    """One tick; skipped (False) while the previous tick is still deciding."""
    if timer_busy.locked():
        return False
    async with timer_busy:
        await _decide_due()
    return True


async def _decide_due() -> None:
    """Failed stops, long-stale drivers and debounced triggers, one decision at a time.

    Orders come first: while an order batch waits for the solver, the tick starts no new
    decision (what is left stays queued for the next tick). Without this, a day with many
    triggers kept new orders waiting behind a queue of re-plans until their windows closed.
    """
    now = now_ms()
    while failed_pending and not orders_waiting[0]:
        route_id, stop_id, ts_ms = failed_pending.pop(0)
        await _guarded("failed_delivery", reinsert_failed(route_id, stop_id, ts_ms))
    for route_id, (alert_id, since) in list(stale_since.items()):
        if orders_waiting[0]:
            return
        if now - since >= CONFIG.stale_reassign_s * 1000:
            del stale_since[route_id]
            await _guarded("reassign_stale", reassign_stale(route_id, alert_id))
    while not orders_waiting[0] and (due := gate.pop_due(now)) is not None:
        route_id, causes = due
        kind, _, caused_by = causes[0].partition(" ")
        await _guarded(kind, replan_route(route_id, kind, caused_by or None))


async def _guarded(cause: str, work: Any) -> None:
    try:
        await work
    except StalePlans:
        pass  # an edit won the race: the route's next trigger starts from it
    except Exception:
        log.exception("decision %s failed", cause)
        PROCESSING_ERRORS.labels(f"decision_{cause}").inc()


async def reinsert_failed(route_id: str, stop_id: str, ts_ms: int) -> decide.Decision | None:
    """A new attempt at a failed stop on its route or a nearby one."""
    async with solve_lock:
        own = own_state(route_id, active_only=False)
        if own is None:
            return None
        now = now_ms()
        stop = next((s for s in own.plan.stops if s.stop_id == stop_id), None)
        at = LatLon(stop.lat, stop.lon) if stop is not None else None
        states = states_near([at], CONFIG.neighbours, [own])
        decision = await _timed(
            "failed_delivery", decide.reinsert_failed, route_id, stop_id, states, now,
            CONFIG.travel, budget_since(ts_ms), retry_after_s=CONFIG.retry_after_s,
            neighbours=CONFIG.neighbours,
        )  # fmt: skip
        await publish_decision(
            decision,
            "failed_delivery",
            f"stop:{route_id}/{stop_id}",
            propose=CONFIG.propose,
            now=now,
        )
        return decision


async def reassign_stale(route_id: str, alert_id: str) -> decide.Decision | None:
    """A long-silent driver's urgent stops go to nearby routes."""
    async with solve_lock:
        own = own_state(route_id)
        if own is None:
            return None
        now = now_ms()
        states = states_near([own.position()], max(1, CONFIG.neighbours), [own])
        decision = await _timed(
            "reassign_stale", decide.reassign_stale, route_id, states, now, CONFIG.travel,
            CONFIG.params, critical_within_s=CONFIG.critical_within_s,
            neighbours=max(1, CONFIG.neighbours),
        )  # fmt: skip
        await publish_decision(
            decision, "reassign_stale", f"alert:{alert_id}", propose=CONFIG.propose, now=now
        )
        return decision


async def replan_route(route_id: str, kind: str, caused_by: str | None) -> decide.Decision | None:
    """Re-plan a route after a trigger; issued only above the margin."""
    async with solve_lock:
        own = own_state(route_id)
        if own is None:
            return None
        now = now_ms()
        neighbours = CONFIG.neighbours if kind in MOVING_KINDS else 0
        states = states_near([own.position()], neighbours, [own])
        decision = await _timed(
            kind, decide.replan, kind, route_id, states, now, CONFIG.travel, CONFIG.params,
            CONFIG.policy, neighbours=neighbours,
        )  # fmt: skip
        updates = await publish_decision(decision, kind, caused_by, propose=CONFIG.propose, now=now)
        if updates:
            for plan_route in decision.plans:
                gate.issued(plan_route, now)
        elif not decision.issue:
            gate.held(route_id, kind, now)  # not solved again for this kind until the plan changes
        return decision


# --- dispatcher commands --------------------------------------------------------------------


async def apply_decision_command(cmd: DispatchCommand) -> None:
    """optimize, accept_proposal, lock_stop, unlock_stop (InvalidCommand when they cannot)."""
    if cmd.type == "accept_proposal":
        await accept_proposal(cmd)
        return
    plan = reads.current_plan(cmd.route_id)
    if plan is None:
        raise InvalidCommand("unknown_route", f"route_id={cmd.route_id} has no plan")
    if cmd.type in ("lock_stop", "unlock_stop"):
        if cmd.stop_id is None:
            raise InvalidCommand("missing_stop_id", f"{cmd.type} needs stop_id")
        if cmd.stop_id not in {s.stop_id for s in plan.stops}:
            raise InvalidCommand("unknown_stop", f"stop_id={cmd.stop_id} not on {cmd.route_id}")
        set_lock(cmd.stop_id, cmd.route_id if cmd.type == "lock_stop" else None)
        DECISIONS.labels(f"dispatch:{cmd.type}", "applied").inc()
        return
    await optimize(cmd, plan)


async def optimize(cmd: DispatchCommand, plan: RoutePlan) -> decide.Decision:
    """Re-plan the route now (``zone``: with the nearest routes); always answered: when a
    plan changed during the solve, solved again from the new versions."""
    for _attempt in range(STALE_RETRIES):
        try:
            return await _optimize_once(cmd, plan)
        except StalePlans:
            await asyncio.sleep(0.2)  # let the routes agent store the version that won
    raise InvalidCommand(
        "stale_plan", f"{cmd.route_id} kept changing during {STALE_RETRIES} solves"
    )


async def _optimize_once(cmd: DispatchCommand, plan: RoutePlan) -> decide.Decision:
    async with solve_lock:
        plan = reads.current_plan(plan.route_id) or plan
        # The dispatcher asked: hand-placed stops may move.
        own = route_state(plan, pinned=False)
        now = now_ms()
        neighbours = max(1, CONFIG.neighbours) if cmd.scope == "zone" else 0
        states = states_near([own.position()], neighbours, [own], pinned=False)
        decision = await _timed(
            "optimize", decide.replan, "optimize", plan.route_id, states, now, CONFIG.travel,
            CONFIG.params, None, neighbours=neighbours, force=True,
        )  # fmt: skip
        await publish_decision(
            decision, "optimize", f"command:{cmd.command_id}", propose=CONFIG.propose, now=now,
            extra={"scope": cmd.scope or "route"},
        )  # fmt: skip
        return decision


async def accept_proposal(cmd: DispatchCommand) -> None:
    """Apply a waiting proposal as it stands, if its routes did not change since."""
    if cmd.proposal_id is None:
        raise InvalidCommand("missing_proposal_id", "accept_proposal needs proposal_id")
    proposal = load_proposal(cmd.proposal_id)
    if proposal is None:
        raise InvalidCommand("unknown_proposal", f"proposal_id={cmd.proposal_id} is not known")
    if proposal.accepted_by == cmd.command_id:
        return  # a redelivered command already applied
    if proposal.accepted_by is not None:
        raise InvalidCommand(
            "stale_proposal", f"{cmd.proposal_id} was accepted by {proposal.accepted_by}"
        )
    if cmd.route_id not in {p.route_id for p in proposal.plans}:
        raise InvalidCommand(
            "unknown_proposal", f"proposal_id={cmd.proposal_id} is not for route {cmd.route_id}"
        )
    for route_id, base in proposal.base_versions.items():
        current = reads.current_plan(route_id)
        version = current.version if current is not None else None
        if version != base:
            raise InvalidCommand(
                "stale_proposal",
                f"{cmd.proposal_id} was made from {route_id} v{base}, now v{version}",
            )
    rationale = {**proposal.rationale, "proposal_id": proposal.proposal_id,
                 "proposed_cause": proposal.cause, "proposed_by": proposal.caused_by}  # fmt: skip
    save_proposal(msgspec.structs.replace(proposal, accepted_by=cmd.command_id))
    for plan in proposal.plans:
        await publish_plan(
            plan, "dispatch:accept_proposal", f"command:{cmd.command_id}", rationale, now_ms()
        )
    DECISIONS.labels("dispatch:accept_proposal", "applied").inc()


hooks.command_handlers.register(DECISION_COMMANDS, apply_decision_command)


# --- hand-placed stops ----------------------------------------------------------------------


@app.agent(commands_topic)
async def pin_dispatched_stops(stream: StreamT[bytes]) -> None:
    """Stops a dispatcher placed by hand (add, resequence, reassign) keep their place in
    automatic re-plans: a dispatcher's explicit edit is never re-optimised away."""
    async for value in stream:
        try:
            cmd = decode_struct(value, _COMMAND, settings.max_message_bytes)
        except Exception:
            continue  # the tracking commands agent dead-letters it
        if cmd.type == "add_stop" and cmd.stop is not None:
            set_lock(cmd.stop.stop_id, PINNED)
        elif cmd.type in ("resequence", "reassign"):
            for stop_id in cmd.stop_ids or []:
                set_lock(stop_id, PINNED)
