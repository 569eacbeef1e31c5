"""Live ETA logic: anchors at the latest fix, when to publish, eta_window_risk open/resolve."""

from __future__ import annotations

import numpy as np

from fleet.records import LatLon, RoutePlan, Stop, StopEta
from models.estimators import EtaModel, EtaModelParams
from models.features import PlanContext, ZoneSpeeds
from models.registry import EtaArtifact
from models.serving import (
    DriverEtaState,
    LiveModel,
    anchor_at_latest_fix,
    build_query,
    eta_update,
    needs_publish,
    observe_arrival,
    predict_queries,
    record_predictions,
    remaining_stops,
    stop_etas,
    window_risk_changes,
)
from tests.unit.test_eta_model_contract import synthetic

T0 = 1_791_190_000_000


def _plan(window_end_ms: int | None = None) -> RoutePlan:
    stops = [
        Stop(f"st-{i}", 52.5 + 0.009 * i, 13.4, service_s=60.0, window_end_ms=window_end_ms)
        for i in (1, 2, 3)
    ]
    return RoutePlan("rt-1", "drv-1", 1, stops, depot=LatLon(52.5, 13.4))


def _model() -> LiveModel:
    batch, y = synthetic(600)
    model = EtaModel(EtaModelParams(max_iter=10)).fit(batch, y)
    return LiveModel("eta-1", EtaArtifact(model, ZoneSpeeds({}, {}, 8.0), 7))


def _state_with_fixes() -> DriverEtaState:
    state = DriverEtaState("drv-1")
    state.follow("rt-1", 1)
    for i in range(10):
        state.add_fix(T0 + i * 10_000, 52.5 + 0.0008 * i, 13.4)  # about 9 m/s north
    return state


def test_the_anchor_is_the_latest_fix_and_progress_never_goes_back() -> None:
    ctx = PlanContext.from_plan(_plan(), 7)
    state = _state_with_fixes()
    first = anchor_at_latest_fix(state, ctx)
    assert first is not None and first.ts_ms == T0 + 90_000
    assert 8.0 < first.recent_speed_mps < 10.0
    state.add_fix(T0 + 100_000, 52.5, 13.4)  # a fix back at the depot (GPS glitch)
    again = anchor_at_latest_fix(state, ctx)
    assert again is not None and again.along_m == first.along_m


def test_reached_and_done_stops_are_not_predicted_and_service_left_counts() -> None:
    ctx = PlanContext.from_plan(_plan(), 7)
    state = _state_with_fixes()
    state.arrived["st-1"] = T0 + 60_000  # at st-1 since 30 s before the latest fix
    assert remaining_stops(state, ctx) == [1, 2]
    anchor = anchor_at_latest_fix(state, ctx)
    assert anchor is not None and anchor.service_left_s == 30.0
    state.done.add("st-1")
    assert anchor_at_latest_fix(state, ctx).service_left_s == 0.0  # type: ignore[union-attr]


def test_publish_on_new_model_changed_stops_or_a_60_s_move_only() -> None:
    state = DriverEtaState("drv-1", route_id="rt-1")
    etas = [StopEta("st-2", T0, T0 + 100_000, T0 + 200_000)]
    assert needs_publish(state, etas, "eta-1")  # nothing sent yet
    eta_update(state, etas, "eta-1", T0)
    moved_59 = [StopEta("st-2", T0, T0 + 159_000, T0 + 200_000)]
    moved_60 = [StopEta("st-2", T0, T0 + 160_000, T0 + 200_000)]
    assert not needs_publish(state, moved_59, "eta-1")
    assert needs_publish(state, moved_60, "eta-1")
    assert needs_publish(state, etas, "eta-2")
    assert needs_publish(state, [], "eta-1")  # the stop is done


def test_window_risk_opens_once_and_resolves_once_with_a_margin() -> None:
    end = T0 + 1_000_000
    plan = _plan(window_end_ms=end)
    state = DriverEtaState("drv-1", route_id="rt-1")

    def step(p90: int, stops: tuple[str, ...] = ("st-1",)) -> list:
        etas = [StopEta(s, p90 - 2000, p90 - 1000, p90) for s in stops]
        return window_risk_changes(state, plan, etas, T0)

    opened = step(end + 1)
    assert [(a.kind, a.state) for a in opened] == [("eta_window_risk", "open")]
    assert opened[0].details["stop_id"] == "st-1" and opened[0].details["window_end_ms"] == end
    assert step(end + 5000) == []  # still late: no second open
    assert step(end - 30_000) == []  # inside, but within the margin: no flapping
    resolved = step(end - 61_000)
    assert [(a.alert_id, a.state) for a in resolved] == [(opened[0].alert_id, "resolved")]
    assert step(end - 90_000) == []


def test_window_risk_resolves_when_the_stop_is_reached() -> None:
    end = T0 + 1_000_000
    plan = _plan(window_end_ms=end)
    state = DriverEtaState("drv-1", route_id="rt-1")
    window_risk_changes(state, plan, [StopEta("st-2", end, end + 1, end + 2)], T0)
    out = window_risk_changes(state, plan, [], T0 + 5000)
    assert [a.state for a in out] == ["resolved"]


def test_one_batched_predict_serves_every_route_and_feeds_the_correction() -> None:
    model = _model()
    plan = _plan()
    ctx = PlanContext.from_plan(plan, 7)
    states = [_state_with_fixes(), _state_with_fixes()]
    states[1].arrived["st-1"] = T0
    queries = [build_query(s, plan, ctx, model) for s in states]
    assert all(q is not None for q in queries)
    results = predict_queries(model, queries)  # type: ignore[arg-type]
    assert [len(q.p50_s) for q, _ in results] == [3, 2]
    etas = stop_etas(queries[0], results[0][0])  # type: ignore[arg-type]
    assert [e.stop_id for e in etas] == ["st-1", "st-2", "st-3"]
    assert all(e.p10_ms <= e.p50_ms <= e.p90_ms and e.p10_ms >= T0 + 90_000 for e in etas)
    for query, (_, raw) in zip(queries, results, strict=True):
        record_predictions(query, np.maximum(raw, 600.0), keep=12)  # type: ignore[arg-type]
    state = states[0]
    assert set(state.recorded) == {"st-1", "st-2", "st-3"}
    observe_arrival(model, state, str(ctx.stop_zones[0]), "st-1", T0 + 90_000 + 1_200_000)
    assert "st-1" not in state.recorded and len(model.corrector) == 2  # zone + fleet keys
