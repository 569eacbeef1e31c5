"""Route plan versions and dispatcher commands applied to them, as pure functions."""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from fleet.errors import InvalidCommand
from fleet.records import DispatchCommand, RoutePlan, Stop

# Command types this module applies; the others (optimize, proposals, locks) belong to the
# decision agent, which registers for them.
DISPATCH_EDITS = frozenset({"add_stop", "remove_stop", "resequence", "reassign", "cancel_route"})


def is_newer(current: RoutePlan | None, incoming: RoutePlan) -> bool:
    """Whether ``incoming`` replaces ``current``: the latest version wins, late old ones lose."""
    return current is None or incoming.version > current.version


@dataclass(frozen=True, slots=True)
class StopsHandled:
    """Stops of one driver that a command rescheduled, reassigned or removed."""

    driver_id: str
    route_id: str
    stop_ids: tuple[str, ...]
    how: str  # rescheduled | reassigned | removed | cancelled


@dataclass(frozen=True, slots=True)
class CommandOutcome:
    """New plan versions a command produces, and the stops it handled."""

    plans: list[RoutePlan]
    handled: list[StopsHandled] = field(default_factory=list)


def _with_stops(plan: RoutePlan, stops: list[Stop]) -> RoutePlan:
    # The planned driving line no longer matches edited stops; the stop line stands in.
    return msgspec.structs.replace(plan, stops=stops, version=plan.version + 1, path=None)


def _require_stops(plan: RoutePlan, stop_ids: list[str], command: DispatchCommand) -> None:
    known = {s.stop_id for s in plan.stops}
    missing = [sid for sid in stop_ids if sid not in known]
    if missing:
        raise InvalidCommand(
            "unknown_stop", f"{command.type}: stop(s) {missing} not on route {plan.route_id}"
        )
    if len(set(stop_ids)) != len(stop_ids):
        raise InvalidCommand("invalid_value", f"{command.type}: stop_ids repeat a stop")


def _add_stop(plan: RoutePlan, cmd: DispatchCommand) -> CommandOutcome:
    if cmd.stop is None:
        raise InvalidCommand("missing_field", "add_stop needs 'stop'")
    # A stop added by hand has no planned arrival until the route is planned again.
    new = msgspec.structs.replace(cmd.stop, planned_arrival_ms=None)
    # Adding a stop the plan already has reschedules it: it moves to the end, new window.
    kept = [s for s in plan.stops if s.stop_id != new.stop_id]
    handled = []
    if len(kept) < len(plan.stops):
        handled.append(StopsHandled(plan.driver_id, plan.route_id, (new.stop_id,), "rescheduled"))
    return CommandOutcome([_with_stops(plan, [*kept, new])], handled)


def _remove_stop(plan: RoutePlan, cmd: DispatchCommand) -> CommandOutcome:
    if cmd.stop_id is None:
        raise InvalidCommand("missing_field", "remove_stop needs 'stop_id'")
    _require_stops(plan, [cmd.stop_id], cmd)
    stops = [s for s in plan.stops if s.stop_id != cmd.stop_id]
    handled = [StopsHandled(plan.driver_id, plan.route_id, (cmd.stop_id,), "removed")]
    return CommandOutcome([_with_stops(plan, stops)], handled)


def _resequence(plan: RoutePlan, cmd: DispatchCommand) -> CommandOutcome:
    """The listed stops take the places they held, in the new order; others stay put."""
    if not cmd.stop_ids:
        raise InvalidCommand("missing_field", "resequence needs 'stop_ids'")
    _require_stops(plan, cmd.stop_ids, cmd)
    listed = set(cmd.stop_ids)
    by_id = {s.stop_id: s for s in plan.stops}
    order = iter(cmd.stop_ids)
    stops = [by_id[next(order)] if s.stop_id in listed else s for s in plan.stops]
    handled = [StopsHandled(plan.driver_id, plan.route_id, tuple(cmd.stop_ids), "rescheduled")]
    return CommandOutcome([_with_stops(plan, stops)], handled)


def _reassign(plan: RoutePlan, cmd: DispatchCommand, target: RoutePlan | None) -> CommandOutcome:
    if not cmd.stop_ids or cmd.to_driver_id is None:
        raise InvalidCommand("missing_field", "reassign needs 'to_driver_id' and 'stop_ids'")
    _require_stops(plan, cmd.stop_ids, cmd)
    if cmd.to_driver_id == plan.driver_id:
        raise InvalidCommand(
            "invalid_value", f"reassign to the route's own driver {plan.driver_id}"
        )
    if target is None:
        raise InvalidCommand(
            "unknown_route", f"reassign: driver {cmd.to_driver_id} has no active route"
        )
    moving = set(cmd.stop_ids)
    moved = [s for s in plan.stops if s.stop_id in moving]
    clash = {s.stop_id for s in target.stops} & moving
    if clash:
        raise InvalidCommand("invalid_value", f"reassign: {sorted(clash)} already on target")
    source = _with_stops(plan, [s for s in plan.stops if s.stop_id not in moving])
    receiving = _with_stops(target, [*target.stops, *moved])
    handled = [StopsHandled(plan.driver_id, plan.route_id, tuple(cmd.stop_ids), "reassigned")]
    return CommandOutcome([source, receiving], handled)


def _cancel(plan: RoutePlan, cmd: DispatchCommand) -> CommandOutcome:
    ids = tuple(s.stop_id for s in plan.stops)
    handled = [StopsHandled(plan.driver_id, plan.route_id, ids, "cancelled")]
    return CommandOutcome([_with_stops(plan, [])], handled)


def apply_command(
    plan: RoutePlan | None, cmd: DispatchCommand, target: RoutePlan | None = None
) -> CommandOutcome:
    """The plan versions a command yields; ``target`` is the receiving route of a reassign.

    Raises InvalidCommand (reason ``unknown_route``, ``unknown_stop``, ``missing_field`` or
    ``invalid_value``) when the command cannot apply; the caller dead-letters it.
    """
    if plan is None:
        raise InvalidCommand("unknown_route", f"route {cmd.route_id} is not known")
    if cmd.type == "add_stop":
        return _add_stop(plan, cmd)
    if cmd.type == "remove_stop":
        return _remove_stop(plan, cmd)
    if cmd.type == "resequence":
        return _resequence(plan, cmd)
    if cmd.type == "reassign":
        return _reassign(plan, cmd, target)
    if cmd.type == "cancel_route":
        return _cancel(plan, cmd)
    raise InvalidCommand("unsupported_command", f"{cmd.type} is not a dispatcher edit")
