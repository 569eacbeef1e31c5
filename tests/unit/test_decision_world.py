"""The routes sent to the solver process: a narrowed set from which the solver's own choice
of neighbours is the same as from every active route."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from decision.decide import nearest_routes
from decision.live import DriverState, RouteState
from fleet.records import LatLon
from load_tests.scenarios import build_plan
from streams.decision.world import near_states

_offset = st.floats(-0.05, 0.05, allow_nan=False)


def _state(i: int, dlat: float, dlon: float, tracked: bool) -> RouteState:
    plan = build_plan(f"rt-{i:03d}", f"drv-{i:03d}", origin=(52.5 + dlat, 13.4 + dlon), n_stops=3)
    driver = DriverState(52.5 + dlat / 2, 13.4 + dlon / 2, 0) if tracked else None
    return RouteState(plan, driver)


@settings(max_examples=80, deadline=None)
@given(
    routes=st.lists(st.tuples(_offset, _offset, st.booleans()), min_size=1, max_size=30),
    points=st.lists(st.tuples(_offset, _offset), min_size=1, max_size=4),
    k=st.integers(1, 6),
    keep_first=st.booleans(),
)
def test_the_solver_picks_the_same_neighbours_from_the_narrowed_set(
    routes, points, k, keep_first
) -> None:
    states = [_state(i, a, b, t) for i, (a, b, t) in enumerate(routes)]
    keep = [states[0].route_id] if keep_first else []
    at = [LatLon(52.5 + a, 13.4 + b) for a, b in points]
    narrowed = near_states(states, at, k, keep)
    assert {s.route_id for s in narrowed} >= set(keep)
    assert len(narrowed) <= len(keep) + k * len(at)
    for p in at:
        want = nearest_routes(states, p.lat, p.lon, k, exclude=keep)
        got = nearest_routes(narrowed, p.lat, p.lon, k, exclude=keep)
        assert [s.route_id for s in got] == [s.route_id for s in want]


def test_without_a_point_nothing_is_narrowed() -> None:
    states = [_state(i, 0.01 * i, 0.0, False) for i in range(5)]
    assert near_states(states, [None], 1, ["rt-000"]) == states
