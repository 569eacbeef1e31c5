"""Publishing decisions: plans applied or proposed, unassigned-order alerts, metrics."""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Mapping
from functools import partial
from typing import Any

from prometheus_client import Counter, Histogram

from decision.decide import Decision
from decision.solution import Dropped
from fleet.errors import FleetError
from fleet.live import ALERTS_OPEN_KEY
from fleet.records import Alert, RouteUpdate, encode
from streams.decision.state import Proposal, save_proposal
from streams.resilience import retry_transient
from streams.resources import redis
from streams.topics import alerts_topic
from streams.tracking import reads
from streams.tracking.publish import publish_plan, publish_proposal

log = logging.getLogger(__name__)

DECISIONS = Counter(
    "fleet_decisions_total",
    "Decisions by cause and outcome (applied, proposed, below_margin, unchanged, ...)",
    ["cause", "outcome"],
)
SOLVE_SECONDS = Histogram(
    "fleet_decision_solve_seconds",
    "Wall time of one decision (solve and judge), seconds",
    ["cause"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0),
)


class StalePlans(FleetError):
    """A decision was made from plan versions that changed while it was solved."""


def still_current(decision: Decision) -> bool:
    """Whether every plan of the decision follows its route's current version."""
    for route_id, plan in decision.plans.items():
        current = reads.current_plan(route_id)
        if current is not None and current.version != plan.version - 1:
            return False
    return True


async def publish_decision(
    decision: Decision,
    cause: str,
    caused_by: str | None,
    *,
    propose: bool,
    now: int,
    extra: Mapping[str, Any] | None = None,
) -> list[RouteUpdate]:
    """Apply (``publish_plan``) or propose (``publish_proposal``) the decision's plans.

    A decision made from plan versions that changed meanwhile raises StalePlans (counted
    ``stale``): publishing it would overwrite an edit made during the solve.
    """
    log.info(
        "decision %s (%s): %s, routes %s, gain %s",
        cause, caused_by, decision.reason, sorted(decision.plans), decision.rationale.get("gain"),
    )  # fmt: skip
    if not decision.plans:
        DECISIONS.labels(cause, decision.reason).inc()
        return []
    if not still_current(decision):
        DECISIONS.labels(cause, "stale").inc()
        log.info("decision %s on %s dropped: a plan changed meanwhile", cause, list(decision.plans))
        raise StalePlans(f"{cause}: a plan of {sorted(decision.plans)} changed during the solve")
    rationale = {**decision.rationale, **(extra or {}), "routes": sorted(decision.plans)}
    updates = []
    if propose:
        proposal_id = f"prop-{uuid.uuid4().hex[:16]}"
        save_proposal(
            Proposal(
                proposal_id=proposal_id,
                cause=cause,
                caused_by=caused_by,
                plans=list(decision.plans.values()),
                base_versions={r: p.version - 1 for r, p in decision.plans.items()},
                rationale=rationale,
                issued_ms=now,
            )
        )
        for plan in decision.plans.values():
            updates.append(
                await publish_proposal(plan, proposal_id, cause, caused_by, rationale, now)
            )
        DECISIONS.labels(cause, "proposed").inc()
        return updates
    for plan in decision.plans.values():
        updates.append(await publish_plan(plan, cause, caused_by, rationale, now))
    DECISIONS.labels(cause, "applied").inc()
    return updates


def unassigned_alert_id(order_id: str) -> str:
    """``ua-<order_id>``, or a digest of it when that would pass 64 characters."""
    alert_id = f"ua-{order_id}"
    if len(alert_id) <= 64:
        return alert_id
    return "ua-" + hashlib.sha256(order_id.encode()).hexdigest()[:32]


async def alert_unassigned(
    order_id: str, why: Dropped, candidates: list[dict[str, Any]], now: int
) -> Alert:
    """Open the ``unassigned_order`` alert, keyed by order_id in place of a driver."""
    alert = Alert(
        alert_id=unassigned_alert_id(order_id),
        kind="unassigned_order",
        state="open",
        driver_id=order_id,
        opened_ms=now,
        changed_ms=now,
        severity="warning",
        details={
            "order_id": order_id,
            "reason": why.reason,
            "detail": why.detail,
            "candidates": [c for c in candidates if c.get("stop_id", order_id) == order_id][:5],
        },
    )
    body = encode(alert)
    await retry_transient(
        "redis_decision", partial(redis.client.hset, ALERTS_OPEN_KEY, alert.alert_id, body)
    )
    await retry_transient(
        "kafka_alerts", partial(alerts_topic.send, key=order_id.encode(), value=body)
    )
    DECISIONS.labels("assign", "unassigned").inc()
    return alert
