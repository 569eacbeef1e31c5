"""Failed deliveries open the exception queue; dispatcher handling resolves them."""

from __future__ import annotations

import pytest

from fleet.records import DeliveryEvent
from fleet.tracking.config import TrackingConfig
from fleet.tracking.plans import StopsHandled
from fleet.tracking.tracker import (
    DriverTrack,
    apply_event,
    apply_plan,
    handle_stops,
    plan_geometry,
    route_progress,
)
from load_tests.scenarios import build_plan

CFG = TrackingConfig()


def _failed(event_id: str = "ev-f1") -> DeliveryEvent:
    return DeliveryEvent(
        event_id, "drv-f", "failed", 5_000, route_id="rt-f", stop_id="st-2", reason="not_home"
    )


def _tracked() -> DriverTrack:
    plan = build_plan("rt-f", "drv-f", n_stops=3)
    return apply_plan(DriverTrack("drv-f"), plan, 0).track


def test_failed_event_opens_with_its_reason_once() -> None:
    plan = build_plan("rt-f", "drv-f", n_stops=3)
    geo = plan_geometry(plan)
    first = apply_event(_tracked(), geo, _failed(), CFG)
    assert [(a.kind, a.state) for a in first.alerts] == [("failed_delivery", "open")]
    assert first.alerts[0].details == {"stop_id": "st-2", "reason": "not_home", "event_id": "ev-f1"}
    assert apply_event(first.track, geo, _failed(), CFG).alerts == []  # duplicate event
    assert route_progress(first.track, plan).failed == 1


@pytest.mark.parametrize("how", ["rescheduled", "reassigned", "removed"])
def test_dispatcher_handling_resolves(how: str) -> None:
    opened = apply_event(_tracked(), None, _failed(), CFG)
    handled = StopsHandled("drv-f", "rt-f", ("st-2",), how)
    result = handle_stops(opened.track, handled, 9_000)
    assert [(a.state, a.alert_id) for a in result.alerts] == [
        ("resolved", opened.alerts[0].alert_id)
    ]
    assert result.alerts[0].details["resolution"] == how
    assert handle_stops(result.track, handled, 9_500).alerts == []  # resolves once
    assert ("st-2" in result.track.done) is (how != "rescheduled")


def test_a_later_successful_delivery_resolves() -> None:
    opened = apply_event(_tracked(), None, _failed(), CFG)
    delivered = DeliveryEvent("ev-d", "drv-f", "delivered", 8_000, stop_id="st-2")
    result = apply_event(opened.track, None, delivered, CFG)
    assert [a.state for a in result.alerts] == ["resolved"]


def test_outcomes_that_come_before_their_routes_plan_are_kept_for_it() -> None:
    """Plans and events are on different topics: a driver's first outcomes can come first."""
    plan = build_plan("rt-f", "drv-f", n_stops=3)
    track = DriverTrack("drv-f")
    delivered = DeliveryEvent("ev-d1", "drv-f", "delivered", 4_000, route_id="rt-f", stop_id="st-1")
    track = apply_event(track, None, delivered, CFG).track
    early = apply_event(track, None, _failed(), CFG)
    assert [(a.kind, a.state, a.route_id) for a in early.alerts] == [
        ("failed_delivery", "open", "rt-f")
    ]
    assert early.track.done == {}
    planned = apply_plan(early.track, plan, 6_000).track
    assert planned.done == {"st-1": "delivered", "st-2": "failed"} and planned.early == {}
    assert route_progress(planned, plan).failed == 1


def test_an_outcome_of_another_route_does_not_mark_the_current_one() -> None:
    """The same stop id on the driver's next route stays pending; the old route's outcome is
    kept for that route (bounded), not applied to this one."""
    track = _tracked()
    late = DeliveryEvent("ev-o", "drv-f", "delivered", 7_000, route_id="rt-old", stop_id="st-1")
    after = apply_event(track, None, late, CFG).track
    assert "st-1" not in after.done and after.early == {"rt-old": {"st-1": "delivered"}}
    for k in range(10):
        event = DeliveryEvent(f"ev-{k}", "drv-f", "delivered", 8_000 + k, route_id=f"rt-{k}",
                              stop_id="st-1")  # fmt: skip
        after = apply_event(after, None, event, CFG).track
    assert len(after.early) == 4 and "rt-9" in after.early and "rt-old" not in after.early
