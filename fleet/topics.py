"""Topic names of the wire contract and how the project creates them."""

from __future__ import annotations

from dataclasses import dataclass

from fleet.settings import Settings

PINGS = "fleet.pings"
EVENTS = "fleet.events"
ROUTES = "fleet.routes"
COMMANDS = "fleet.commands"
ORDERS = "fleet.orders"
ROUTE_PROPOSALS = "fleet.route-proposals"
ROUTE_UPDATES = "fleet.route-updates"
ALERTS = "fleet.alerts"
ETAS = "fleet.etas"
DLQ = "fleet.pings.dlq"

CONTRACT_TOPICS = (
    PINGS, EVENTS, ROUTES, COMMANDS, ORDERS, ROUTE_PROPOSALS, ROUTE_UPDATES, ALERTS, ETAS, DLQ,
)  # fmt: skip


@dataclass(frozen=True)
class TopicSpec:
    """How one contract topic is created."""

    name: str
    partitions: int
    compacted: bool = False


def topic_name(settings: Settings, base: str) -> str:
    """The real topic name of a contract topic under the configured prefix."""
    return f"{settings.topic_prefix}{base}"


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """Every contract topic with its partition count and cleanup policy."""
    n = settings.partitions
    return [
        TopicSpec(topic_name(settings, base), n, compacted=(base == ROUTES))
        for base in CONTRACT_TOPICS
    ]
