"""Who may do what: the Kafka roles with their least-privilege ACLs and the Redis ACL users.

Pure data and functions; the secure profile (fleet/secure_profile.py) applies them to a
broker and a Redis server, and docs/security.md explains them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from fleet.settings import Settings
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

Resource = Literal["topic", "group", "transactional_id", "cluster"]
Pattern = Literal["literal", "prefixed"]

ADMIN = "admin"
# Kafka principals (User:<role>); the admin is a super user and has no ACLs of its own.
KAFKA_ROLES = (ADMIN, "pipeline", "gateway", "dispatch", "planner", "reader")
# What the pipeline publishes; everything else on the contract it only reads.
PIPELINE_OUTPUTS = (ROUTES, ROUTE_UPDATES, ROUTE_PROPOSALS, ALERTS, ETAS, DLQ)
# Consumer-group prefixes of the tools outside the pipeline.
GATEWAY_GROUP = "fleet-gateway"
DISPATCH_GROUP = "fleet-dispatch"
READER_GROUP = "fleet-reader"

# Redis users: the worker writes the read model, dashboards only read it.
REDIS_USERS = (ADMIN, "worker", "dashboard")
REDIS_KEYS = "fleet:*"
# Every command the worker sends (its Lua scripts' calls included); nothing else.
WORKER_COMMANDS = (
    "hset", "hsetnx", "hget", "hmget", "hgetall", "hvals", "hdel", "hlen", "hincrby",
    "zadd", "zrem", "zrange", "zrangebyscore", "zremrangebyscore", "zcount", "zcard",
    "geoadd", "geosearch", "get", "set", "exists", "expire", "pexpire", "del", "unlink",
    "publish", "eval", "evalsha", "script|load", "script|exists", "multi", "exec", "discard",
    "ping", "select", "hello", "client|setname", "info", "time",
)  # fmt: skip
# The Redis user each Kafka role's environment gets.
REDIS_USER_OF_ROLE = {ADMIN: ADMIN, "pipeline": "worker"}


@dataclass(frozen=True)
class Grant:
    """Operations a principal may perform on a resource name (or name prefix)."""

    resource: Resource
    name: str
    operations: tuple[str, ...]
    pattern: Pattern = "literal"


def _topics(settings: Settings, bases: tuple[str, ...], *operations: str) -> list[Grant]:
    return [Grant("topic", topic_name(settings, b), ("DESCRIBE", *operations)) for b in bases]


def _group(prefix: str) -> Grant:
    return Grant("group", prefix, ("READ", "DESCRIBE"), "prefixed")


def role_grants(settings: Settings) -> dict[str, list[Grant]]:
    """Each non-admin role's ACLs under the configured topic prefix and app id."""
    contract = topic_name(settings, "fleet.")
    app = settings.app_id
    writer = Grant("cluster", "kafka-cluster", ("IDEMPOTENT_WRITE",))
    return {
        "pipeline": [
            Grant("topic", contract, ("READ", "DESCRIBE"), "prefixed"),
            *_topics(settings, PIPELINE_OUTPUTS, "WRITE"),
            # Faust's changelog and repartition topics, created and owned by the app.
            Grant("topic", f"{app}-", ("ALL",), "prefixed"),
            _group(app),
            Grant("transactional_id", app, ("WRITE", "DESCRIBE"), "prefixed"),
            writer,
        ],
        "gateway": [
            *_topics(settings, (PINGS, EVENTS), "WRITE"),
            *_topics(settings, (ROUTE_UPDATES, ETAS), "READ"),
            _group(GATEWAY_GROUP),
            writer,
        ],
        "dispatch": [
            *_topics(settings, (COMMANDS, ORDERS), "WRITE"),
            *_topics(settings, (ALERTS, ROUTE_PROPOSALS, ROUTE_UPDATES), "READ"),
            _group(DISPATCH_GROUP),
            writer,
        ],
        "planner": [*_topics(settings, (ROUTES,), "WRITE"), writer],
        "reader": [
            Grant("topic", contract, ("READ", "DESCRIBE"), "prefixed"),
            _group(f"{app}-history"),
            _group(READER_GROUP),
        ],
    }


def _password_hash(password: str) -> str:
    """Redis keeps only the SHA-256 of a password (``#<hex>`` in an ACL rule)."""
    return "#" + hashlib.sha256(password.encode()).hexdigest()


def redis_acl_rules(passwords: Mapping[str, str]) -> dict[str, str]:
    """The ACL rule of each Redis user (for ``user <name> <rule>``); the default user is off."""
    worker = " ".join(f"+{c}" for c in WORKER_COMMANDS)
    return {
        "default": "off resetkeys resetchannels -@all",
        ADMIN: f"on {_password_hash(passwords[ADMIN])} ~* &* +@all",
        "worker": (
            f"on {_password_hash(passwords['worker'])} resetkeys ~{REDIS_KEYS} "
            f"resetchannels &{REDIS_KEYS} -@all {worker}"
        ),
        "dashboard": (
            f"on {_password_hash(passwords['dashboard'])} resetkeys ~{REDIS_KEYS} "
            "resetchannels -@all +@read +@connection -@dangerous -@write"
        ),
    }
