"""The routes a decision considers are narrowed before their states are built: the solver's
own choice of neighbours from the narrowed set is the same as from every active route."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from decision.decide import nearest_routes
from decision.live import DriverState, RouteState
from fleet.records import LatLon
from load_tests.scenarios import build_plan
from streams.decision.world import candidates_near

_offset = st.floats(-0.05, 0.05, allow_nan=False)


def _state(i: int, dlat: float, dlon: float, tracked: bool) -> RouteState:
    plan = build_plan(f"rt-{i:03d}", f"drv-{i:03d}", origin=(52.5 + dlat, 13.4 + dlon), n_stops=3)
    driver = DriverState(52.5 + dlat / 2, 13.4 + dlon / 2, 0) if tracked else None
    return RouteState(plan, driver)


@settings(max_examples=100, deadline=None)
@given(
    routes=st.lists(st.tuples(_offset, _offset, st.booleans()), min_size=1, max_size=40),
    point=st.tuples(_offset, _offset),
    k=st.integers(1, 6),
    twins=st.integers(0, 3),  # routes at exactly the same place: ties broken by route id
)
def test_the_solver_picks_the_same_neighbours_from_the_candidates(routes, point, k, twins) -> None:
    routes = routes + routes[:twins]
    states = [_state(i, a, b, t) for i, (a, b, t) in enumerate(routes)]
    at = LatLon(52.5 + point[0], 13.4 + point[1])
    positions = [s.position() for s in states]
    lats = np.array([p.lat for p in positions if p is not None])
    lons = np.array([p.lon for p in positions if p is not None])
    picked = [states[int(i)] for i in candidates_near(lats, lons, at, k)]
    want = nearest_routes(states, at.lat, at.lon, k)
    got = nearest_routes(picked, at.lat, at.lon, k)
    assert [s.route_id for s in got] == [s.route_id for s in want]


def test_fewer_positions_than_k_are_all_candidates() -> None:
    lats, lons = np.array([52.5, 52.6]), np.array([13.4, 13.5])
    assert list(candidates_near(lats, lons, LatLon(52.5, 13.4), 5)) == [0, 1]
