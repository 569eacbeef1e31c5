"""Metric projection of fixes onto a route line."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleet.geo import haversine_m
from fleet.records import LatLon, RoutePlan, Stop
from fleet.route_geometry import RouteLine, plan_vertices, project_each, project_many
from load_tests.scenarios import offset

ORIGIN = (52.50, 13.40)


def _east_line(length_m: float) -> RouteLine:
    end = offset(*ORIGIN, length_m, 0.0)
    return RouteLine([ORIGIN, end])


def test_projection_is_metric_along_and_across() -> None:
    """A fix 100 m north of the 400 m mark of an eastward line: along 400, cross 100."""
    line = _east_line(1000.0)
    lat, lon = offset(*ORIGIN, 400.0, 100.0)
    along, cross = line.project_one(lat, lon)
    assert along == pytest.approx(400.0, abs=1.0)
    assert cross == pytest.approx(100.0, abs=1.0)
    assert line.length_m == pytest.approx(1000.0, abs=1.0)


def test_cross_track_matches_great_circle_distance_to_nearest_vertex_beyond_the_end() -> None:
    """Past the end of the line the cross distance is the distance to the last vertex."""
    line = _east_line(1000.0)
    end = offset(*ORIGIN, 1000.0, 0.0)
    lat, lon = offset(*ORIGIN, 1300.0, 400.0)
    _, cross = line.project_one(lat, lon)
    assert cross == pytest.approx(haversine_m(lat, lon, *end), rel=0.005)


def test_vectorised_projection_equals_one_by_one() -> None:
    line = RouteLine([ORIGIN, offset(*ORIGIN, 500, 0), offset(*ORIGIN, 500, 800)])
    fixes = [offset(*ORIGIN, x, y) for x, y in [(10, 5), (480, -20), (520, 300), (450, 790)]]
    batch = line.project([f[0] for f in fixes], [f[1] for f in fixes])
    for i, (lat, lon) in enumerate(fixes):
        _along, cross = line.project_one(lat, lon)
        assert batch.cross_m[i] == pytest.approx(cross)
    assert list(batch.along_m) == sorted(batch.along_m)  # the driver moves forward


def test_out_and_back_road_follows_the_previous_position() -> None:
    """On a road driven out and back, the along position stays on the leg being driven."""
    far = offset(*ORIGIN, 1000.0, 0.0)
    line = RouteLine([ORIGIN, far, ORIGIN])
    lat, lon = offset(*ORIGIN, 300.0, 5.0)
    along_out, _ = line.project_one(lat, lon, hint_along_m=250.0)
    along_back, _ = line.project_one(lat, lon, hint_along_m=1650.0)
    assert along_out == pytest.approx(300.0, abs=2.0)
    assert along_back == pytest.approx(1700.0, abs=2.0)


def test_plan_without_path_uses_depot_then_stops() -> None:
    stops = [
        Stop(stop_id="a", lat=52.51, lon=13.40),
        Stop(stop_id="b", lat=52.51, lon=13.42),
    ]
    plan = RoutePlan("rt-1", "drv-1", 1, stops, depot=LatLon(52.50, 13.40))
    assert plan_vertices(plan) == [(52.50, 13.40), (52.51, 13.40), (52.51, 13.42)]
    line = RouteLine.from_plan(plan)
    positions = line.stop_positions(plan)
    assert positions[0] == pytest.approx(haversine_m(52.50, 13.40, 52.51, 13.40), rel=0.005)
    assert positions[1] > positions[0]


def test_single_point_line_projects_to_its_distance() -> None:
    line = RouteLine([ORIGIN])
    lat, lon = offset(*ORIGIN, 30.0, 40.0)
    along, cross = line.project_one(lat, lon)
    assert along == 0.0
    assert cross == pytest.approx(50.0, abs=0.5)


_coord = st.floats(-0.02, 0.02, allow_nan=False)


def _lines_with(fixes: st.SearchStrategy) -> st.SearchStrategy:
    """Cases of (vertices, out and back?, fixes, hint): out-and-back lines are ambiguous."""
    return st.lists(
        st.tuples(
            st.lists(st.tuples(_coord, _coord), min_size=1, max_size=12),
            st.booleans(),
            fixes,
            st.one_of(st.none(), st.floats(0, 8000, allow_nan=False)),
        ),
        min_size=1,
        max_size=8,
    )


@settings(max_examples=60, deadline=None)
@given(_lines_with(st.tuples(_coord, _coord)))
def test_batch_of_single_fixes_equals_projecting_each(cases) -> None:
    """project_each over many lines gives exactly each line's own answer (ties included)."""
    lines, lats, lons, hints = [], [], [], []
    for vertices, back, (dlat, dlon), hint in cases:
        points = [(52.5 + a, 13.4 + b) for a, b in vertices]
        lines.append(RouteLine(points + points[::-1] if back else points))
        lats.append(52.5 + dlat)
        lons.append(13.4 + dlon)
        hints.append(hint)
    both = project_each(lines, lats, lons, hints)
    for i, line in enumerate(lines):
        one = line.project([lats[i]], [lons[i]], hints[i])
        assert (both.along_m[i], both.cross_m[i]) == (one.along_m[0], one.cross_m[0])


def test_batch_of_no_fixes_is_empty() -> None:
    both = project_each([], [], [], [])
    assert len(both.along_m) == len(both.cross_m) == 0


def _stop_positions_one_by_one(line: RouteLine, plan: RoutePlan) -> list[float]:
    """The definition: each stop projected alone, hinted by the furthest position so far."""
    positions, hint = [], 0.0
    for stop in plan.stops:
        along, _ = line.project_one(stop.lat, stop.lon, hint)
        hint = max(hint, along)
        positions.append(hint)
    return positions


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(_coord, _coord), min_size=1, max_size=12),  # path vertices
    st.booleans(),  # out and back (ambiguous stretches)
    st.lists(st.tuples(_coord, _coord), min_size=0, max_size=20),  # stops
    st.sampled_from([1, 3, 256]),  # stops per numpy pass (chunk edges carry the hint)
)
def test_stop_positions_equal_projecting_stop_by_stop(vertices, back, stops, chunk) -> None:
    """The one-pass stop positions are exactly the stop-by-stop ones (ties included)."""
    import fleet.route_geometry as route_geometry

    points = [(52.5 + a, 13.4 + b) for a, b in vertices]
    path = points + points[::-1] if back else points
    plan = RoutePlan(
        route_id="r",
        driver_id="d",
        version=1,
        stops=[Stop(stop_id=f"s{i}", lat=52.5 + a, lon=13.4 + b) for i, (a, b) in enumerate(stops)],
        path=path if len(path) >= 2 else None,
    )
    line = RouteLine.from_plan(plan) if plan.stops or plan.path else RouteLine([(0.0, 0.0)])
    saved = route_geometry._STOP_CHUNK
    route_geometry._STOP_CHUNK = chunk
    try:
        assert line.stop_positions(plan).tolist() == _stop_positions_one_by_one(line, plan)
    finally:
        route_geometry._STOP_CHUNK = saved


@settings(max_examples=80, deadline=None)
@given(_lines_with(st.lists(st.tuples(_coord, _coord), min_size=1, max_size=5)))
def test_batch_of_fix_sequences_equals_projecting_each_line(cases) -> None:
    """project_many gives exactly each line's own ``project`` of its fixes in order."""
    lines, counts, lats, lons, hints = [], [], [], [], []
    for vertices, back, fixes, hint in cases:
        points = [(52.5 + a, 13.4 + b) for a, b in vertices]
        lines.append(RouteLine(points + points[::-1] if back else points))
        counts.append(len(fixes))
        lats.extend(52.5 + a for a, _ in fixes)
        lons.extend(13.4 + b for _, b in fixes)
        hints.append(hint)
    many = project_many(lines, counts, lats, lons, hints)
    at = 0
    for line, count, hint in zip(lines, counts, hints, strict=True):
        one = line.project(lats[at : at + count], lons[at : at + count], hint)
        assert many.along_m[at : at + count].tolist() == one.along_m.tolist()
        assert many.cross_m[at : at + count].tolist() == one.cross_m.tolist()
        at += count
