"""The project's one exception tree: every error derives from FleetError."""

from __future__ import annotations


class FleetError(Exception):
    """Root of every error the project raises on purpose."""


class ConfigError(FleetError, ValueError):
    """A setting is missing or has an unusable value."""


class InvalidMessage(FleetError, ValueError):
    """An input message breaks the wire contract.

    ``reason`` is a short machine-readable code (``lat_out_of_range``), ``detail`` a
    human-readable sentence naming the field and value (``lat=123.4 outside [-90, 90]``).
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class InvalidPing(InvalidMessage):
    """A Ping breaks the contract."""


class InvalidEvent(InvalidMessage):
    """A DeliveryEvent breaks the contract."""


class InvalidRoutePlan(InvalidMessage):
    """A RoutePlan breaks the contract."""


class InvalidCommand(InvalidMessage):
    """A DispatchCommand breaks the contract or cannot apply."""


class ServiceUnavailable(FleetError, ConnectionError):
    """A local service (Kafka, Redis, ClickHouse) cannot be reached."""
