"""What a model must pass before it may be promoted: accuracy on held-out data, sane outputs."""

from __future__ import annotations

import math
import pickle
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.estimators import Quantiles
from models.features import NUMERIC_FEATURES, FeatureBatch, column
from models.registry import EtaArtifact

UNSEEN_ZONE = "8f2830828052d25"  # a valid cell no training set of this project contains


def edge_batch(zone: str = UNSEEN_ZONE) -> FeatureBatch:
    """Rows a live worker can meet: zero distance, unseen zones, missing speeds, far stops."""
    rows = np.zeros((5, len(NUMERIC_FEATURES)))
    rows[:, column("hour_of_day")] = [0.0, 8.5, 23.99, 12.0, 17.0]
    rows[:, column("day_of_week")] = [0, 2, 6, 3, 4]
    rows[:, column("zone_speed_origin_mps")] = 8.0
    rows[:, column("zone_speed_dest_mps")] = 8.0
    rows[1, column("remaining_m")] = 5_000.0  # speeds missing (NaN) below
    rows[1, column("recent_speed_mps")] = math.nan
    rows[1, column("zone_speed_origin_mps")] = math.nan
    rows[2, column("remaining_m")] = 200_000.0  # far beyond anything seen
    rows[2, column("stops_before")] = 80
    rows[2, column("service_before_s")] = 20_000.0
    rows[3, column("recent_speed_mps")] = 0.0  # a driver standing still
    rows[4, column("recent_speed_mps")] = 60.0  # a GPS glitch
    rows[:, column("path_travel_s")] = rows[:, column("remaining_m")] / 8.0
    zones = np.array([zone, zone, "", zone, "not-a-cell"])
    return FeatureBatch(rows, zones, zones.copy())


def finite_and_ordered(q: Quantiles) -> bool:
    """Every prediction finite, non-negative and p10 <= p50 <= p90."""
    arrays = (q.p10_s, q.p50_s, q.p90_s)
    return bool(
        all(np.all(np.isfinite(a)) for a in arrays)
        and np.all(q.p10_s >= 0)
        and np.all(q.p10_s <= q.p50_s)
        and np.all(q.p50_s <= q.p90_s)
    )


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One named check, whether it passed, and why."""

    name: str
    passed: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class PromotionPolicy:
    """Bounds a model's latest held-out evaluation must meet."""

    min_gain: float = 0.10  # MAE at least this share below the baseline's
    coverage: float = 0.80
    coverage_tolerance: float = 0.05
    min_examples: int = 500


def promotion_checks(
    artifact: EtaArtifact, evaluation: dict[str, Any] | None, policy: PromotionPolicy
) -> list[CheckResult]:
    """Every check of a model (all are run, so a refusal lists every reason)."""
    results = []
    if evaluation is None:
        results.append(CheckResult("evaluated", False, "no held-out evaluation: run evaluate"))
        ev: dict[str, Any] = {}
    else:
        ev = evaluation
        n = int(ev.get("n", 0))
        results.append(
            CheckResult(
                "evaluated", n >= policy.min_examples, f"n={n} (need >= {policy.min_examples})"
            )
        )
    if ev:
        mae, base = float(ev.get("mae_s", math.inf)), float(ev.get("baseline_mae_s", 0.0))
        limit = base * (1.0 - policy.min_gain)
        results.append(
            CheckResult(
                "beats_baseline",
                mae <= limit,
                f"mae_s={mae} vs baseline_mae_s={base} (need <= {limit:.1f})",
            )
        )
        cov = float(ev.get("coverage_p10_p90", -1.0))
        lo, hi = (
            policy.coverage - policy.coverage_tolerance,
            policy.coverage + policy.coverage_tolerance,
        )
        results.append(
            CheckResult(
                "coverage", lo <= cov <= hi, f"coverage_p10_p90={cov} (need [{lo:.2f}, {hi:.2f}])"
            )
        )
    edge = edge_batch()
    q = artifact.model.predict(edge)
    results.append(
        CheckResult(
            "finite_on_edge_inputs",
            finite_and_ordered(q),
            "zero distance, unseen zone, missing speeds, far stops",
        )
    )
    again = pickle.loads(pickle.dumps(artifact)).model.predict(edge)
    same = all(
        np.array_equal(a, b)
        for a, b in zip(
            (q.p10_s, q.p50_s, q.p90_s), (again.p10_s, again.p50_s, again.p90_s), strict=True
        )
    )
    results.append(CheckResult("pickle_round_trip", same, "same predictions after pickling"))
    return results
