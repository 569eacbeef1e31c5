"""The routes a decision considers are narrowed before their states are built: the solver's
own choice of neighbours from the narrowed set is the same as from every active route."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from decision.decide import nearest_routes
from decision.live import DriverState, RouteState
from fleet.geo import haversine_m_array
from load_tests.scenarios import build_plan
from streams.decision.world import pick_nearest

_offset = st.floats(-0.05, 0.05, allow_nan=False)


def _state(i: int, dlat: float, dlon: float, tracked: bool) -> RouteState:
    plan = build_plan(f"rt-{i:03d}", f"drv-{i:03d}", origin=(52.5 + dlat, 13.4 + dlon), n_stops=3)
    driver = DriverState(52.5 + dlat / 2, 13.4 + dlon / 2, 0) if tracked else None
    return RouteState(plan, driver)


@settings(max_examples=150, deadline=None)
@given(
    routes=st.lists(
        st.tuples(_offset, _offset, st.booleans(), st.booleans()),  # place, tracked, active
        min_size=1,
        max_size=40,
    ),
    point=st.tuples(_offset, _offset),
    k=st.integers(1, 6),
    twins=st.integers(0, 3),  # routes at exactly the same place: ties broken by route id
)
def test_the_solver_picks_the_same_neighbours_from_the_candidates(routes, point, k, twins) -> None:
    """Among the active routes, nearest_routes picks the same from pick_nearest's candidates
    as from all of them; inactive routes (done since the snapshot) are never candidates."""
    routes = routes + routes[:twins]
    states = [_state(i, a, b, t) for i, (a, b, t, _) in enumerate(routes)]
    active = [on for *_, on in routes]
    positions = [s.position() for s in states]
    lats = np.array([p.lat for p in positions])
    lons = np.array([p.lon for p in positions])
    far = haversine_m_array(52.5 + point[0], 13.4 + point[1], lats, lons)
    looked: list[int] = []

    def valid(i: int) -> RouteState | None:
        looked.append(i)
        return states[i] if active[i] else None

    picked = pick_nearest(far, valid, k)
    live = [s for s, on in zip(states, active, strict=True) if on]
    want = nearest_routes(live, 52.5 + point[0], 13.4 + point[1], k)
    got = nearest_routes(picked, 52.5 + point[0], 13.4 + point[1], k)
    assert [s.route_id for s in got] == [s.route_id for s in want]
    assert all(active[states.index(s)] for s in picked)
    assert len(set(looked)) == len(looked)  # each route's state is asked for once


def test_infinite_distances_are_never_candidates() -> None:
    far = np.array([5.0, np.inf, 1.0, np.inf])
    assert pick_nearest(far, lambda i: i, 5) == [2, 0]


def test_candidates_stop_one_metre_past_the_kth() -> None:
    far = np.array([10.0, 10.5, 11.2, 3.0, 12.0])
    assert pick_nearest(far, lambda i: i, 2) == [3, 0, 1]
