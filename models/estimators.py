"""The ETA models: a physical baseline and a learned correction of it with calibrated quantiles.

Both predict seconds from the anchor (the driver's latest fix) to the arrival at each stop,
as p10/p50/p90. ``EtaModel`` learns the baseline's residual with gradient boosting (one model
for the median, quantile models for p10 and p90) and widens or narrows the interval by
conformalised quantile regression on held-apart calibration rows, so p10-p90 covers the
target share of arrivals on data like the training data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from sklearn.ensemble import HistGradientBoostingRegressor
from threadpoolctl import threadpool_limits

from models.features import NUMERIC_FEATURES, FeatureBatch

FloatArray = npt.NDArray[np.float64]
DEFAULT_SPEED_MPS = 8.0
MIN_WIDTH_S = 30.0  # a p10-p90 interval counts as at least this wide when calibrating
# Columns the model adds to the features: the baseline itself, travel time at the zones'
# historical speeds, and how fast this driver drives compared with its zone's usual speed.
DERIVED_FEATURES = ("baseline_s", "zone_travel_s", "speed_ratio", "personal_travel_s")


@dataclass(frozen=True, slots=True)
class Quantiles:
    """Predicted seconds from the anchor to arrival: p10 <= p50 <= p90, all >= 0."""

    p10_s: FloatArray
    p50_s: FloatArray
    p90_s: FloatArray

    @staticmethod
    def ordered(p10: FloatArray, p50: FloatArray, p90: FloatArray) -> Quantiles:
        """Clip to >= 0 and order, so no interval is inverted."""
        p50 = np.maximum(np.nan_to_num(p50, nan=0.0), 0.0)
        p10 = np.clip(np.nan_to_num(p10, nan=0.0), 0.0, p50)
        p90 = np.maximum(np.nan_to_num(p90, nan=0.0), p50)
        return Quantiles(p10, p50, p90)

    def scaled(self, factor: FloatArray) -> Quantiles:
        """Every quantile multiplied by a per-row factor (an online correction)."""
        return Quantiles.ordered(self.p10_s * factor, self.p50_s * factor, self.p90_s * factor)


class PhysicalBaseline:
    """Remaining distance along the plan at one typical speed, plus the planned service times."""

    name = "baseline"

    def __init__(self, speed_mps: float = DEFAULT_SPEED_MPS) -> None:
        if not (math.isfinite(speed_mps) and speed_mps > 0):
            raise ValueError(f"speed_mps={speed_mps} must be a positive number")
        self.speed_mps = speed_mps

    def fit(self, batch: FeatureBatch, actual_s: FloatArray) -> PhysicalBaseline:
        """The one speed that makes total predicted driving time match the actual total."""
        driving = np.asarray(actual_s, dtype=np.float64) - batch.col("service_before_s")
        metres = batch.col("remaining_m")
        ok = np.isfinite(driving) & (driving > 0) & np.isfinite(metres)
        if np.count_nonzero(ok) and metres[ok].sum() > 0:
            self.speed_mps = float(metres[ok].sum() / driving[ok].sum())
        return self

    def predict_s(self, batch: FeatureBatch) -> FloatArray:
        """Point prediction (seconds from the anchor)."""
        metres = np.nan_to_num(batch.col("remaining_m"), nan=0.0)
        service = np.nan_to_num(batch.col("service_before_s"), nan=0.0)
        return np.maximum(metres, 0.0) / self.speed_mps + np.maximum(service, 0.0)

    def predict(self, batch: FeatureBatch) -> Quantiles:
        """The baseline has no spread of its own: p10 = p50 = p90."""
        p = self.predict_s(batch)
        return Quantiles.ordered(p, p, p)


@dataclass(frozen=True, slots=True)
class EtaModelParams:
    """Knobs of the learned model; a fixed seed makes a fit repeatable."""

    seed: int = 0
    max_iter: int = 150
    learning_rate: float = 0.1
    max_leaf_nodes: int = 31
    min_samples_leaf: int = 40
    coverage: float = 0.8
    calibration_share: float = 0.2  # used when fit() gets no calibration rows
    max_zones: int = 250  # most frequent zones get their own category; others are unknown
    max_train_rows: int = 100_000  # larger training sets are subsampled (seeded)
    # One thread: on a shared, busy machine OpenMP threads spin-waiting on each other made
    # a fit ten times slower than one thread.
    threads: int = 1

    def __post_init__(self) -> None:
        if not 0.0 < self.coverage < 1.0:
            raise ValueError(f"coverage={self.coverage} must lie in (0, 1)")
        if not 0.0 < self.calibration_share < 1.0:
            raise ValueError(f"calibration_share={self.calibration_share} must lie in (0, 1)")
        if not 2 <= self.max_zones <= 250:
            raise ValueError(f"max_zones={self.max_zones} must lie in [2, 250]")


class EtaModel:
    """Baseline + learned residual (p50), quantile residuals (p10, p90), conformal widening."""

    name = "hgb_residual_cqr"

    def __init__(self, params: EtaModelParams | None = None) -> None:
        self.params = params or EtaModelParams()
        self.baseline = PhysicalBaseline()
        self.zone_codes: dict[str, int] = {}
        self.conformal = 0.0  # interval widths added on each side (negative: narrowed)
        self._models: dict[str, HistGradientBoostingRegressor] = {}

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Columns of the design matrix, in order."""
        return (*NUMERIC_FEATURES, *DERIVED_FEATURES, "origin_zone_code", "dest_zone_code")

    def _design(self, batch: FeatureBatch) -> FloatArray:
        numeric = batch.numeric
        baseline = self.baseline.predict_s(batch)
        zone_speed = 0.5 * (batch.col("zone_speed_origin_mps") + batch.col("zone_speed_dest_mps"))
        with np.errstate(divide="ignore", invalid="ignore"):
            zone_travel = batch.col("remaining_m") / zone_speed
            ratio = batch.col("recent_speed_mps") / batch.col("zone_speed_origin_mps")
        zone_travel[~np.isfinite(zone_travel)] = np.nan
        ratio[~np.isfinite(ratio)] = np.nan
        personal = batch.col("path_travel_s") / np.clip(np.nan_to_num(ratio, nan=1.0), 0.5, 2.0)
        codes = [
            np.array([self.zone_codes.get(z, np.nan) for z in zones], dtype=np.float64)
            for zones in (batch.origin_zone, batch.dest_zone)
        ]
        return np.column_stack([numeric, baseline, zone_travel, ratio, personal, *codes])

    def _regressor(self, **loss: object) -> HistGradientBoostingRegressor:
        n = len(self.feature_names)
        categorical = np.zeros(n, dtype=bool)
        categorical[-2:] = True
        p = self.params
        return HistGradientBoostingRegressor(
            max_iter=p.max_iter,
            learning_rate=p.learning_rate,
            max_leaf_nodes=p.max_leaf_nodes,
            min_samples_leaf=p.min_samples_leaf,
            categorical_features=categorical,
            early_stopping=False,
            random_state=p.seed,
            **loss,  # type: ignore[arg-type]
        )

    def fit(
        self,
        batch: FeatureBatch,
        actual_s: FloatArray,
        calibration: npt.NDArray[np.bool_] | None = None,
    ) -> EtaModel:
        """Fit on the rows outside ``calibration``; calibrate the interval on the rows inside."""
        with threadpool_limits(limits=self.params.threads):
            return self._fit(batch, actual_s, calibration)

    def _fit(
        self,
        batch: FeatureBatch,
        actual_s: FloatArray,
        calibration: npt.NDArray[np.bool_] | None = None,
    ) -> EtaModel:
        y = np.asarray(actual_s, dtype=np.float64)
        if len(y) != len(batch) or len(y) < 10:
            raise ValueError(f"need at least 10 examples with labels, got {len(y)}")
        rng = np.random.default_rng(self.params.seed)
        if calibration is None:
            calibration = rng.random(len(y)) < self.params.calibration_share
        calibration = np.asarray(calibration, dtype=bool)
        train = np.flatnonzero(~calibration)
        if len(train) > self.params.max_train_rows:
            train = np.sort(rng.choice(train, self.params.max_train_rows, replace=False))
        cal = np.flatnonzero(calibration)
        if len(train) < 10 or len(cal) < 10:
            raise ValueError("need at least 10 training and 10 calibration examples")
        fit_batch = batch.take(train)
        self.baseline = PhysicalBaseline().fit(fit_batch, y[train])
        zones, counts = np.unique(
            np.concatenate([fit_batch.origin_zone, fit_batch.dest_zone]), return_counts=True
        )
        top = zones[np.argsort(-counts, kind="stable")][: self.params.max_zones]
        self.zone_codes = {str(z): i for i, z in enumerate(sorted(top))}
        x = self._design(fit_batch)
        residual = y[train] - x[:, len(NUMERIC_FEATURES)]
        alpha = (1.0 - self.params.coverage) / 2
        self._models = {
            "p50": self._regressor(loss="absolute_error").fit(x, residual),
            "p10": self._regressor(loss="quantile", quantile=alpha).fit(x, residual),
            "p90": self._regressor(loss="quantile", quantile=1 - alpha).fit(x, residual),
        }
        # Normalised conformal scores: how many interval widths the arrival fell outside,
        # so the correction scales with the uncertainty of each prediction.
        raw = self._raw(batch.take(cal))
        width = np.maximum(raw[2] - raw[0], MIN_WIDTH_S)
        scores = np.maximum(raw[0] - y[cal], y[cal] - raw[2]) / width
        level = min(1.0, math.ceil((len(cal) + 1) * self.params.coverage) / len(cal))
        self.conformal = float(np.quantile(scores, level))
        return self

    def _raw(self, batch: FeatureBatch) -> tuple[FloatArray, FloatArray, FloatArray]:
        if not self._models:
            raise ValueError("EtaModel is not fitted")
        x = self._design(batch)
        base = x[:, len(NUMERIC_FEATURES)]
        return (
            base + self._models["p10"].predict(x),
            base + self._models["p50"].predict(x),
            base + self._models["p90"].predict(x),
        )

    def predict(self, batch: FeatureBatch) -> Quantiles:
        """Calibrated p10/p50/p90 seconds from the anchor."""
        if len(batch) == 0:
            empty = np.zeros(0)
            return Quantiles(empty, empty, empty)
        with threadpool_limits(limits=self.params.threads):
            p10, p50, p90 = self._raw(batch)
        widen = self.conformal * np.maximum(p90 - p10, MIN_WIDTH_S)
        return Quantiles.ordered(p10 - widen, p50, p90 + widen)
