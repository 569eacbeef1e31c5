"""Errors of the decision library, inside the project's FleetError tree."""

from __future__ import annotations

from fleet.errors import FleetError, InvalidMessage


class DecisionError(FleetError):
    """Root of the decision library's errors."""


class InvalidParams(DecisionError, ValueError):
    """Solver parameters or objective weights have an unusable value."""


class InvalidProblem(DecisionError, ValueError):
    """A routing problem is inconsistent (unknown ids, bad locations, impossible locks)."""


class InvalidInstance(DecisionError, ValueError):
    """A Solomon-format instance file cannot be read."""


class TravelTimeError(DecisionError, LookupError):
    """A travel-time provider cannot price a leg (unknown location)."""


class InvalidOrder(InvalidMessage):
    """An Order breaks the contract (dead-lettered with the reason)."""
