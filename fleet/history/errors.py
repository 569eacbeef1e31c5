"""Errors of the history store."""

from __future__ import annotations

from fleet.errors import FleetError


class HistoryError(FleetError, RuntimeError):
    """The history store refused or failed a statement."""


class StoreBusy(HistoryError):
    """The embedded store is owned by another process (a running worker)."""
