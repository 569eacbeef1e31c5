"""Online correction of ETAs: a time-decayed mean of log(actual / predicted) per zone.

As stops complete, each earlier prediction for the stop becomes an observation of how far
off the model is in the stop's zone right now. The correction multiplies predicted
durations by exp(mean log ratio), so a congestion change moves predictions within minutes
without a retrain. Memory is bounded: at most ``max_keys`` zones (least recently updated
dropped) plus one fleet-wide key. Old evidence fades with ``halflife_s`` of event time,
so the correction returns to 1 once the model is right again; a mean within ``z_gate``
standard errors of zero is treated as noise, so a model that is right is left alone.
"""

from __future__ import annotations

import heapq
import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import h3
import numpy as np
import numpy.typing as npt

from models.estimators import FloatArray, Quantiles

FLEET_KEY = "*"


@dataclass(frozen=True, slots=True)
class OnlineParams:
    """Knobs of the online correction."""

    halflife_s: float = 600.0
    max_keys: int = 4096
    prior_weight: float = 4.0  # pseudo-observations pulling a zone towards the fleet mean
    min_horizon_s: float = 300.0  # shorter predictions are too noisy to learn from
    max_horizon_s: float = 3600.0  # longer ones mostly describe conditions long gone
    key_resolution: int | None = 6  # pool zones under their parent cell (more evidence each)
    recent_predictions: int = 12  # a completed stop is judged by its latest predictions
    z_gate: float = 1.5  # corrections within this many standard errors of 0 are noise
    min_std: float = 0.02  # floor of an observation's spread (few observations)
    max_abs_log: float = 1.0  # one observation moves at most by a factor e

    def __post_init__(self) -> None:
        if self.halflife_s <= 0 or self.max_keys < 1 or self.prior_weight <= 0:
            raise ValueError("halflife_s and prior_weight must be > 0, max_keys >= 1")


@dataclass(slots=True)
class _Mean:
    """Time-decayed weight, sum and sum of squares of one key's observations."""

    weight: float
    total: float
    squares: float
    last_ms: int

    def decayed(self, now_ms: int, halflife_s: float) -> tuple[float, float, float]:
        age_s = max(0.0, (now_ms - self.last_ms) / 1000.0)
        keep = 0.5 ** (age_s / halflife_s)
        return self.weight * keep, self.total * keep, self.squares * keep

    def add(self, value: float, event_ms: int, halflife_s: float) -> None:
        w, t, q = self.decayed(max(event_ms, self.last_ms), halflife_s)
        self.weight, self.total, self.squares = w + 1.0, t + value, q + value * value
        self.last_ms = max(self.last_ms, event_ms)


def _soft_threshold(value: float, band: float) -> float:
    """``value`` moved towards 0 by ``band`` (0 inside the band)."""
    if not math.isfinite(band) or abs(value) <= band:
        return 0.0
    return value - math.copysign(band, value)


class OnlineCorrector:
    """Bounded-memory multiplicative correction per zone, learnt from completed stops."""

    name = "online_zone_ewma"

    def __init__(self, params: OnlineParams | None = None) -> None:
        self.params = params or OnlineParams()
        self._means: OrderedDict[str, _Mean] = OrderedDict()

    def __len__(self) -> int:
        return len(self._means)

    def observe(self, zone: str, event_ms: int, predictions: Sequence[tuple[float, float]]) -> None:
        """A stop completed in ``zone`` at ``event_ms``: its (predicted_s, actual_s) pairs.

        The pairs of one stop (predictions made at different moments) are one observation:
        their mean log ratio, so a single late stop does not count once per prediction.
        """
        p = self.params
        logs = [
            max(-p.max_abs_log, min(p.max_abs_log, math.log(actual / predicted)))
            for predicted, actual in predictions
            if math.isfinite(predicted)
            and math.isfinite(actual)
            and p.min_horizon_s <= predicted <= p.max_horizon_s
            and actual > 0
        ]
        if not logs:
            return
        recent = logs[-p.recent_predictions :]  # the latest predictions say most about now
        value = sum(recent) / len(recent)
        for key in (self.key_of(zone), FLEET_KEY):
            mean = self._means.get(key)
            if mean is None:
                self._means[key] = _Mean(1.0, value, value * value, event_ms)
            else:
                mean.add(value, event_ms, p.halflife_s)
                self._means.move_to_end(key)
        while len(self._means) > p.max_keys + 1:
            oldest = next(k for k in self._means if k != FLEET_KEY)
            del self._means[oldest]

    def key_of(self, zone: str) -> str:
        """The key a zone's evidence is pooled under (its parent cell at key_resolution)."""
        res = self.params.key_resolution
        try:
            if res is not None and h3.is_valid_cell(zone) and h3.get_resolution(zone) > res:
                return str(h3.cell_to_parent(zone, res))
        except (ValueError, TypeError):  # not a cell: pooled under itself
            pass
        return zone

    def _estimate(self, key: str, now_ms: int, prior: float) -> tuple[float, float]:
        """(shrunk mean, its standard error) of a key; (prior, inf) without evidence."""
        p = self.params
        mean = self._means.get(key)
        if mean is None:
            return prior, math.inf
        w, t, q = mean.decayed(now_ms, p.halflife_s)
        if w <= 0:
            return prior, math.inf
        var = max(q / w - (t / w) ** 2, p.min_std**2)
        return (t + p.prior_weight * prior) / (w + p.prior_weight), math.sqrt(var / w)

    def log_factor(self, zone: str, now_ms: int) -> float:
        """The current log correction of a zone: its shrunk mean, minus its noise band.

        A mean within ``z_gate`` standard errors of nothing is treated as noise: without
        the band, a model that is right would be nudged at random by every late stop.
        """
        fleet, fleet_se = self._estimate(FLEET_KEY, now_ms, 0.0)
        fleet = _soft_threshold(fleet, self.params.z_gate * fleet_se)
        value, se = self._estimate(self.key_of(zone), now_ms, fleet)
        if not math.isfinite(se):
            return fleet
        return fleet + _soft_threshold(value - fleet, self.params.z_gate * se)

    def factors(self, zones: npt.ArrayLike, now_ms: int) -> FloatArray:
        """Multiplicative correction of each row's zone at ``now_ms``."""
        cache: dict[str, float] = {}
        out = []
        for zone in np.asarray(zones, dtype=str):
            z = str(zone)
            if z not in cache:
                cache[z] = math.exp(self.log_factor(z, now_ms))
            out.append(cache[z])
        return np.asarray(out, dtype=np.float64)

    def adjust(self, quantiles: Quantiles, zones: npt.ArrayLike, now_ms: int) -> Quantiles:
        """Predictions with the current correction of each row's zone applied."""
        return quantiles.scaled(self.factors(zones, now_ms))


def replay(
    corrector: OnlineCorrector,
    q: Quantiles,
    zones: npt.ArrayLike,
    anchor_ms: npt.ArrayLike,
    arrival_ms: npt.ArrayLike,
    stop_keys: npt.ArrayLike,
) -> Quantiles:
    """Corrected predictions of recorded examples, as a stream would have made them.

    Rows are taken in anchor order; before the rows of an anchor time are corrected, every
    stop reached by then is observed with the model's p50s made for it so far.
    """
    zone = np.asarray(zones, dtype=str)
    anchors = np.asarray(anchor_ms, dtype=np.int64)
    arrivals = np.asarray(arrival_ms, dtype=np.int64)
    keys = np.asarray(stop_keys, dtype=str)
    factor = np.ones(len(anchors), dtype=np.float64)
    order = np.argsort(anchors, kind="stable")
    pending: list[tuple[int, str]] = []
    made: dict[str, list[int]] = {}
    cuts = np.flatnonzero(np.diff(anchors[order])) + 1
    for group in np.split(order, cuts):
        if len(group) == 0:
            continue
        now = int(anchors[group[0]])
        while pending and pending[0][0] <= now:
            arrived, key = heapq.heappop(pending)
            rows = made.pop(key)
            pairs = [(float(q.p50_s[i]), (arrived - int(anchors[i])) / 1000.0) for i in rows]
            corrector.observe(str(zone[rows[0]]), arrived, pairs)
        factor[group] = corrector.factors(zone[group], now)
        for i in group:
            key = str(keys[i])
            if key not in made:
                made[key] = []
                heapq.heappush(pending, (int(arrivals[i]), key))
            made[key].append(int(i))
    return q.scaled(factor)
