"""Publishing new plan versions and proposals, for any cause (dispatch, decisions, orders)."""

from __future__ import annotations

from typing import Any

from fleet.clock import now_ms
from fleet.records import RoutePlan, RouteUpdate, encode
from streams.resilience import retry_transient
from streams.topics import route_proposals_topic, route_updates_topic, routes_topic


def route_update(
    plan: RoutePlan,
    cause: str,
    caused_by: str | None,
    rationale: dict[str, Any] | None,
    issued_ms: int | None = None,
    proposal_id: str | None = None,
) -> RouteUpdate:
    """The RouteUpdate announcing ``plan`` (contract: cause, caused_by, rationale)."""
    return RouteUpdate(
        route_id=plan.route_id,
        driver_id=plan.driver_id,
        version=plan.version,
        cause=cause,
        caused_by=caused_by,
        issued_ms=issued_ms if issued_ms is not None else now_ms(),
        plan=plan,
        rationale=rationale,
        proposal_id=proposal_id,
    )


async def publish_plan(
    plan: RoutePlan,
    cause: str,
    caused_by: str | None,
    rationale: dict[str, Any] | None,
    issued_ms: int | None = None,
) -> RouteUpdate:
    """Make ``plan`` the route's new version: RoutePlan on fleet.routes (the routes agent
    stores it and tracking follows), RouteUpdate on fleet.route-updates for the driver app.

    ``plan.version`` must be above the current one (a late or equal version is ignored by
    the routes agent). ``cause`` is ``dispatch:<type>``, ``assign`` or a re-plan trigger.
    """
    update = route_update(plan, cause, caused_by, rationale, issued_ms)
    await retry_transient(
        "kafka_routes", lambda: routes_topic.send(key=plan.route_id.encode(), value=encode(plan))
    )
    await retry_transient(
        "kafka_route_updates",
        lambda: route_updates_topic.send(key=plan.driver_id.encode(), value=encode(update)),
    )
    return update


async def publish_proposal(
    plan: RoutePlan,
    proposal_id: str,
    cause: str,
    caused_by: str | None,
    rationale: dict[str, Any] | None,
    issued_ms: int | None = None,
) -> RouteUpdate:
    """Offer ``plan`` to the dispatcher on fleet.route-proposals (keyed by route); it is
    applied only by an ``accept_proposal`` command, through ``publish_plan``."""
    update = route_update(plan, cause, caused_by, rationale, issued_ms, proposal_id)
    await retry_transient(
        "kafka_route_proposals",
        lambda: route_proposals_topic.send(key=plan.route_id.encode(), value=encode(update)),
    )
    return update
