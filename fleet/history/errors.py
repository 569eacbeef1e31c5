"""Errors of the history store."""

from __future__ import annotations

from fleet.errors import FleetError


class HistoryError(FleetError, RuntimeError):
    """The history store refused or failed a statement."""


class StoreBusy(HistoryError):
    """The embedded store is owned by another process (a running worker)."""


class ReadRefused(HistoryError):
    """A history read was refused before it ran: not exactly one read-only statement."""


class Unauthorized(HistoryError, PermissionError):
    """The history query endpoint was called without the right token."""
