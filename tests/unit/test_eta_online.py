"""The online correction moves with the evidence, forgets it, ignores noise, stays bounded."""

from __future__ import annotations

import numpy as np

from models.estimators import Quantiles
from models.online import FLEET_KEY, OnlineCorrector, OnlineParams, replay

ZONE = "871f1d489ffffff"
MIN = 60_000


def _slow_stops(c: OnlineCorrector, zone: str, start_ms: int, n: int, ratio: float) -> None:
    for i in range(n):
        c.observe(zone, start_ms + i * MIN, [(1000.0, 1000.0 * ratio)])


def test_without_evidence_the_correction_is_one() -> None:
    assert OnlineCorrector().factors(np.array([ZONE]), 0)[0] == 1.0


def test_consistently_late_stops_raise_the_zone_factor_towards_their_ratio() -> None:
    c = OnlineCorrector()
    _slow_stops(c, ZONE, 0, 20, 1.5)
    factor = c.factors(np.array([ZONE]), 20 * MIN)[0]
    assert 1.2 < factor <= 1.5


def test_the_correction_fades_once_evidence_is_old() -> None:
    c = OnlineCorrector(OnlineParams(halflife_s=600))
    _slow_stops(c, ZONE, 0, 20, 1.5)
    fresh = c.factors(np.array([ZONE]), 20 * MIN)[0]
    old = c.factors(np.array([ZONE]), 20 * MIN + 6 * 3_600_000)[0]
    assert fresh > 1.2 and abs(old - 1.0) < abs(fresh - 1.0) / 2


def test_unbiased_noise_leaves_predictions_alone() -> None:
    """A right model, noisy stops: the noise band keeps the factor at (or very near) 1."""
    rng = np.random.default_rng(0)
    c = OnlineCorrector()
    for i in range(200):
        c.observe(ZONE, i * MIN, [(1000.0, 1000.0 * float(np.exp(rng.normal(0, 0.1))))])
    assert abs(c.factors(np.array([ZONE]), 200 * MIN)[0] - 1.0) < 0.02


def test_memory_is_bounded_by_max_keys() -> None:
    c = OnlineCorrector(OnlineParams(max_keys=5, key_resolution=None))
    for i in range(50):
        c.observe(f"zone-{i}", i * MIN, [(1000.0, 1200.0)])
    assert len(c) == 6  # five zones and the fleet key
    assert c.log_factor("zone-49", 50 * MIN) != 0.0


def test_predictions_outside_the_horizon_band_are_not_learnt_from() -> None:
    c = OnlineCorrector(OnlineParams(min_horizon_s=300, max_horizon_s=3600))
    c.observe(ZONE, 0, [(60.0, 600.0), (10_000.0, 20_000.0)])
    assert len(c) == 0


def test_zones_pool_under_their_parent_cell() -> None:
    c = OnlineCorrector(OnlineParams(key_resolution=6))
    assert c.key_of(ZONE) != ZONE
    assert c.key_of("not-a-cell") == "not-a-cell"
    assert c.key_of(FLEET_KEY) == FLEET_KEY


def test_replay_learns_only_from_stops_reached_before_each_prediction() -> None:
    """Stop A (reached at t=40 min, 50% late) corrects B's prediction made at 45, not at 0."""
    q = Quantiles(*(np.array([1200.0, 1200.0, 3000.0, 3000.0]),) * 3)
    anchors = np.array([0, 20 * MIN, 0, 45 * MIN])
    arrivals = np.array([40 * MIN, 40 * MIN, 100 * MIN, 100 * MIN])
    stops = np.array(["r/A", "r/A", "r/B", "r/B"])
    zones = np.array([ZONE] * 4)
    params = OnlineParams(z_gate=0.0, min_horizon_s=300)
    out = replay(OnlineCorrector(params), q, zones, anchors, arrivals, stops)
    assert out.p50_s[2] == 3000.0  # made at 0: nothing reached yet
    assert out.p50_s[3] > 3000.0  # made at 45 min: A was late
