"""Registries through which agents hand what they learnt to agents that plug in later.

A producer fires a registry; every registered subscriber is awaited in registration order.
A subscriber that raises is logged and counted (``fleet_hook_errors_total{hook}``) and never
reaches the producer: the stream that fired goes on. Subscribers run inline on the
producer's agent, so they must be quick (update a cache, put on a queue, send a message).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from prometheus_client import Counter

from fleet.errors import InvalidCommand
from fleet.records import Alert, DispatchCommand, Ping, RoutePlan

log = logging.getLogger(__name__)
T = TypeVar("T")
Subscriber = Callable[[T], Awaitable[None]]

HOOK_ERRORS = Counter(
    "fleet_hook_errors_total", "Calls of a registered hook that raised (logged)", ["hook"]
)


class Hook(Generic[T]):
    """A named list of async subscribers called with one value."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._subscribers: list[Subscriber[T]] = []

    def __len__(self) -> int:
        return len(self._subscribers)

    def register(self, subscriber: Subscriber[T]) -> Subscriber[T]:
        """Subscribe (usable as a decorator); returns ``subscriber``."""
        self._subscribers.append(subscriber)
        return subscriber

    async def fire(self, value: T) -> None:
        for subscriber in self._subscribers:
            try:
                await subscriber(value)
            except Exception:
                HOOK_ERRORS.labels(self.name).inc()
                log.exception("%s subscriber %r failed", self.name, subscriber)


@dataclass(frozen=True, slots=True)
class MovedPings:
    """Pings that moved drivers' live positions, in Kafka order, and when they were received.

    ``partitions`` maps each driver to the fleet.pings partition its pings came from (state
    keyed by driver stays co-partitioned with them).
    """

    pings: list[Ping]
    received_ms: int
    partitions: dict[str, int]
    # Done when the batch's live positions are in Redis (raises if they could not be
    # written). Subscribers that write the same driver hashes await it before writing, so
    # their fields land after the positions; their computing overlaps Redis's work.
    live_written: Awaitable[object] | None = None


@dataclass(frozen=True, slots=True)
class StopOutcome:
    """A stop got its outcome (pipeline time ``ts_ms``)."""

    driver_id: str
    route_id: str
    stop_id: str
    outcome: Literal["delivered", "failed"]
    ts_ms: int


@dataclass(frozen=True, slots=True)
class PlanChanged:
    """A route's current plan is a new version (``previous_version`` None: a new route)."""

    plan: RoutePlan
    previous_version: int | None


moved_pings: Hook[MovedPings] = Hook("moved_pings")
stop_completed: Hook[StopOutcome] = Hook("stop_completed")  # delivered or failed
alert_changed: Hook[Alert] = Hook("alert_changed")  # opened or resolved (alert.state)
plan_changed: Hook[PlanChanged] = Hook("plan_changed")

CommandHandler = Callable[[DispatchCommand], Awaitable[None]]


class CommandHandlers:
    """Who applies the command types the dispatch-edit agent does not apply itself."""

    def __init__(self) -> None:
        self._by_type: dict[str, CommandHandler] = {}

    def register(self, types: Iterable[str], handler: CommandHandler) -> CommandHandler:
        """Route ``types`` (e.g. optimize, accept_proposal, lock_stop, unlock_stop) to
        ``handler``; it raises InvalidCommand when a command cannot apply (dead-lettered)."""
        for command_type in types:
            if command_type in self._by_type:
                raise ValueError(f"command type {command_type!r} already has a handler")
            self._by_type[command_type] = handler
        return handler

    async def handle(self, cmd: DispatchCommand) -> None:
        """Apply ``cmd`` through its handler; without one it cannot apply (dead letter)."""
        handler = self._by_type.get(cmd.type)
        if handler is None:
            raise InvalidCommand("unsupported_command", f"no agent applies {cmd.type} commands")
        await handler(cmd)


command_handlers = CommandHandlers()
