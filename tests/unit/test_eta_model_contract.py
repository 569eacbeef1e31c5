"""Every ETA model class passes the same contract checks (as river's checks/common.py).

Pickle round-trip, inputs not mutated, same seed same output, finite and ordered
predictions on edge inputs (zero distance, unseen zone, missing speed, far stops).
"""

from __future__ import annotations

import copy
import math
import pickle
from collections.abc import Callable

import numpy as np
import pytest

from models.checks import edge_batch, finite_and_ordered
from models.estimators import EtaModel, EtaModelParams, PhysicalBaseline, Quantiles
from models.features import NUMERIC_FEATURES, FeatureBatch, column
from models.online import OnlineCorrector

ZONES = np.array(["871f1d489ffffff", "871f1d48bffffff", "871f1d4d3ffffff", "871f1d4d7ffffff"])


def synthetic(n: int = 1500, seed: int = 0) -> tuple[FeatureBatch, np.ndarray]:
    """Rows where arrival = distance / zone speed / driver factor + service + noise."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, len(NUMERIC_FEATURES)))
    x[:, column("remaining_m")] = rng.uniform(0, 20_000, n)
    x[:, column("stops_before")] = rng.integers(0, 15, n)
    x[:, column("service_before_s")] = x[:, column("stops_before")] * 150
    x[:, column("hour_of_day")] = rng.uniform(6, 18, n)
    x[:, column("day_of_week")] = rng.integers(0, 7, n)
    zone_idx = rng.integers(0, len(ZONES), n)
    speed = np.array([5.0, 7.0, 9.0, 11.0])[zone_idx]
    x[:, column("zone_speed_origin_mps")] = speed
    x[:, column("zone_speed_dest_mps")] = speed
    driver = rng.uniform(0.8, 1.2, n)
    x[:, column("recent_speed_mps")] = speed * driver
    x[:, column("path_travel_s")] = x[:, column("remaining_m")] / speed
    y = x[:, column("remaining_m")] / (speed * driver) + x[:, column("service_before_s")]
    y += rng.normal(0, 60, n)
    zones = ZONES[zone_idx]
    return FeatureBatch(x, zones, zones.copy()), np.maximum(y, 1.0)


def fit_baseline(seed: int) -> PhysicalBaseline:
    batch, y = synthetic(seed=1)
    return PhysicalBaseline().fit(batch, y)


def fit_eta(seed: int) -> EtaModel:
    batch, y = synthetic(seed=1)
    return EtaModel(EtaModelParams(seed=seed, max_iter=15)).fit(batch, y)


FACTORIES: dict[str, Callable[[int], PhysicalBaseline | EtaModel]] = {
    "PhysicalBaseline": fit_baseline,
    "EtaModel": fit_eta,
}


def _arrays(q: Quantiles) -> tuple[np.ndarray, ...]:
    return q.p10_s, q.p50_s, q.p90_s


@pytest.fixture(scope="module", params=sorted(FACTORIES))
def fitted(request: pytest.FixtureRequest) -> tuple[str, PhysicalBaseline | EtaModel]:
    return request.param, FACTORIES[request.param](0)


def test_pickle_round_trip_predicts_the_same(fitted) -> None:
    _, model = fitted
    batch, _ = synthetic(200, seed=5)
    again = pickle.loads(pickle.dumps(model))
    for a, b in zip(_arrays(model.predict(batch)), _arrays(again.predict(batch)), strict=True):
        np.testing.assert_array_equal(a, b)


def test_predict_does_not_mutate_its_input(fitted) -> None:
    _, model = fitted
    batch, _ = synthetic(200, seed=6)
    before = copy.deepcopy(batch)
    model.predict(batch)
    np.testing.assert_array_equal(batch.numeric, before.numeric)
    np.testing.assert_array_equal(batch.origin_zone, before.origin_zone)
    np.testing.assert_array_equal(batch.dest_zone, before.dest_zone)


def test_fit_does_not_mutate_its_input() -> None:
    batch, y = synthetic(400, seed=7)
    before, y_before = copy.deepcopy(batch), y.copy()
    for factory in (PhysicalBaseline, lambda: EtaModel(EtaModelParams(max_iter=5))):
        factory().fit(batch, y)
        np.testing.assert_array_equal(batch.numeric, before.numeric)
        np.testing.assert_array_equal(y, y_before)


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_same_seed_same_predictions(name: str) -> None:
    batch, _ = synthetic(300, seed=8)
    first, second = FACTORIES[name](3), FACTORIES[name](3)
    for a, b in zip(_arrays(first.predict(batch)), _arrays(second.predict(batch)), strict=True):
        np.testing.assert_array_equal(a, b)


def test_predictions_are_finite_and_ordered_on_edge_inputs(fitted) -> None:
    name, model = fitted
    q = model.predict(edge_batch())
    assert finite_and_ordered(q), name
    assert q.p50_s[0] >= 0  # zero distance, nothing before: arrival now or later


def test_edge_inputs_include_zero_distance_unseen_zone_and_missing_speed() -> None:
    batch = edge_batch()
    assert batch.col("remaining_m")[0] == 0.0
    assert "871f1d489ffffff" not in set(batch.dest_zone)
    assert any(math.isnan(v) for v in batch.col("recent_speed_mps"))


def test_learned_model_beats_the_baseline_on_structured_data() -> None:
    """The correction learns what one speed cannot: zone speeds and driver factors."""
    batch, y = synthetic(3000, seed=1)
    test, y_test = synthetic(1000, seed=2)
    model = EtaModel(EtaModelParams(max_iter=60)).fit(batch, y)
    mae = np.mean(np.abs(model.predict(test).p50_s - y_test))
    base = np.mean(np.abs(model.baseline.predict_s(test) - y_test))
    assert mae < 0.7 * base


def test_empty_batch_gives_empty_predictions(fitted) -> None:
    _, model = fitted
    q = model.predict(synthetic(1)[0].take(np.zeros(1, dtype=bool)))
    assert len(q.p50_s) == 0


# --- the online correction: same contract, its own interface ---------------------------


def _trained_corrector() -> OnlineCorrector:
    c = OnlineCorrector()
    for i in range(30):
        c.observe(str(ZONES[i % 2]), 1_000_000 + i * 60_000, [(900.0, 1300.0), (600.0, 850.0)])
    return c


def test_online_pickle_round_trip_keeps_its_state() -> None:
    c = _trained_corrector()
    again = pickle.loads(pickle.dumps(c))
    np.testing.assert_array_equal(c.factors(ZONES, 3_000_000), again.factors(ZONES, 3_000_000))


def test_online_adjust_does_not_mutate_and_is_deterministic() -> None:
    q = Quantiles(np.array([100.0, 500.0]), np.array([200.0, 900.0]), np.array([300.0, 1500.0]))
    before = [a.copy() for a in _arrays(q)]
    a = _trained_corrector().adjust(q, ZONES[:2], 3_000_000)
    b = _trained_corrector().adjust(q, ZONES[:2], 3_000_000)
    for x, y in zip(_arrays(q), before, strict=True):
        np.testing.assert_array_equal(x, y)
    for x, y in zip(_arrays(a), _arrays(b), strict=True):
        np.testing.assert_array_equal(x, y)


def test_online_is_finite_on_edge_inputs() -> None:
    c = _trained_corrector()
    c.observe("not-a-cell", 2_000_000, [(math.nan, 100.0), (500.0, math.inf), (0.0, 10.0)])
    q = Quantiles(
        np.array([0.0, 1e6, 10.0]), np.array([0.0, 1e6, 20.0]), np.array([0.0, 1e6, 30.0])
    )
    out = c.adjust(q, np.array(["", "not-a-cell", "8f2830828052d25"]), 2_500_000)
    assert finite_and_ordered(out)
