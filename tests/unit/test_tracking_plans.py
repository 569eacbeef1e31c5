"""Plan versions and dispatcher commands."""

from __future__ import annotations

import pytest

from fleet.errors import InvalidCommand
from fleet.records import DispatchCommand, RoutePlan, Stop
from fleet.tracking.plans import apply_command, is_newer
from load_tests.scenarios import build_plan


def _cmd(type_: str, **kw: object) -> DispatchCommand:
    return DispatchCommand("cmd-1", "rt-a", type_, 1_000, **kw)  # type: ignore[arg-type]


def _ids(plan: RoutePlan) -> list[str]:
    return [s.stop_id for s in plan.stops]


PLAN = build_plan("rt-a", "drv-a", n_stops=4)
OTHER = build_plan("rt-b", "drv-b", n_stops=1)


def test_latest_version_wins_and_late_old_versions_lose() -> None:
    v2 = build_plan("rt-a", "drv-a", version=2)
    assert is_newer(None, PLAN)
    assert is_newer(PLAN, v2)
    assert not is_newer(v2, PLAN)
    assert not is_newer(v2, v2)


def test_add_stop_appends_and_bumps_the_version() -> None:
    out = apply_command(PLAN, _cmd("add_stop", stop=Stop("st-9", 52.5, 13.4)))
    (plan,) = out.plans
    assert plan.version == PLAN.version + 1
    assert _ids(plan) == ["st-1", "st-2", "st-3", "st-4", "st-9"]
    assert plan.path is None  # edited stops no longer match the routed path
    assert out.handled == []


def test_adding_an_existing_stop_reschedules_it() -> None:
    out = apply_command(PLAN, _cmd("add_stop", stop=Stop("st-2", 52.5, 13.4)))
    assert _ids(out.plans[0]) == ["st-1", "st-3", "st-4", "st-2"]
    assert out.handled[0].how == "rescheduled"


def test_remove_and_resequence() -> None:
    removed = apply_command(PLAN, _cmd("remove_stop", stop_id="st-3")).plans[0]
    assert _ids(removed) == ["st-1", "st-2", "st-4"]
    reseq = apply_command(PLAN, _cmd("resequence", stop_ids=["st-4", "st-2"])).plans[0]
    assert _ids(reseq) == ["st-1", "st-4", "st-3", "st-2"]


def test_reassign_moves_stops_to_the_target_route() -> None:
    cmd = _cmd("reassign", stop_ids=["st-2"], to_driver_id="drv-b")
    source, target = apply_command(PLAN, cmd, OTHER).plans
    assert _ids(source) == ["st-1", "st-3", "st-4"]
    assert _ids(target) == ["st-1", "st-2"]
    assert target.driver_id == "drv-b" and target.version == OTHER.version + 1


def test_cancel_route_empties_it() -> None:
    out = apply_command(PLAN, _cmd("cancel_route"))
    assert out.plans[0].stops == []
    assert out.handled[0].stop_ids == ("st-1", "st-2", "st-3", "st-4")


@pytest.mark.parametrize(
    ("plan", "cmd", "target", "reason"),
    [
        (None, _cmd("cancel_route"), None, "unknown_route"),
        (PLAN, _cmd("remove_stop", stop_id="st-77"), None, "unknown_stop"),
        (PLAN, _cmd("resequence", stop_ids=["st-1", "st-x"]), None, "unknown_stop"),
        (PLAN, _cmd("remove_stop"), None, "missing_field"),
        (PLAN, _cmd("reassign", stop_ids=["st-1"], to_driver_id="drv-z"), None, "unknown_route"),
        (PLAN, _cmd("resequence", stop_ids=["st-1", "st-1"]), None, "invalid_value"),
        # Not dispatcher edits: applied by the agent registered for them, never here.
        (PLAN, _cmd("optimize"), None, "unsupported_command"),
        (PLAN, _cmd("lock_stop", stop_id="st-1"), None, "unsupported_command"),
    ],
)
def test_commands_that_cannot_apply_say_why(
    plan: RoutePlan | None, cmd: DispatchCommand, target: RoutePlan | None, reason: str
) -> None:
    with pytest.raises(InvalidCommand) as info:
        apply_command(plan, cmd, target)
    assert info.value.reason == reason
