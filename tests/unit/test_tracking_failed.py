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
