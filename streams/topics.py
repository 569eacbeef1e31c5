"""The contract topics as Faust topics (raw bytes: decoding is fleet.decode's job)."""

from __future__ import annotations

import faust

from fleet.topics import (
    ALERTS,
    COMMANDS,
    DLQ,
    ETAS,
    EVENTS,
    ORDERS,
    PINGS,
    ROUTE_PROPOSALS,
    ROUTE_UPDATES,
    ROUTES,
    topic_name,
)
from streams.app import app, settings


def raw_topic(base: str) -> faust.TopicT:
    """A contract topic whose keys and values stay bytes."""
    return app.topic(topic_name(settings, base), key_serializer="raw", value_serializer="raw")


pings_topic = raw_topic(PINGS)
events_topic = raw_topic(EVENTS)
routes_topic = raw_topic(ROUTES)
commands_topic = raw_topic(COMMANDS)
alerts_topic = raw_topic(ALERTS)
route_updates_topic = raw_topic(ROUTE_UPDATES)
route_proposals_topic = raw_topic(ROUTE_PROPOSALS)
dlq_topic = raw_topic(DLQ)
orders_topic = raw_topic(ORDERS)
etas_topic = raw_topic(ETAS)
