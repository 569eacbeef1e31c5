"""Fit an ETA model on a period of history and describe it for the registry."""

from __future__ import annotations

import math
import time
from dataclasses import asdict
from typing import Any

import numpy as np
import numpy.typing as npt

from fleet.errors import FleetError
from fleet.history.store import HistoryStore
from models.dataset import Examples, load_examples, load_zone_speeds
from models.estimators import EtaModel, EtaModelParams
from models.evaluation import headline
from models.registry import EtaArtifact

DAY_MS = 86_400_000
MIN_EXAMPLES = 200


class NotEnoughHistory(FleetError, ValueError):
    """The period holds too few labelled examples to fit a model."""


def calibration_rows(examples: Examples, share: float) -> npt.NDArray[np.bool_]:
    """The last days of the period (about ``share`` of them, at least one) calibrate.

    Calibrating on later days than the model was fit on mimics how it will be used.
    """
    days = examples.anchor_ms // DAY_MS
    unique = np.unique(days)
    if len(unique) < 3:  # too few days to hold some apart: a seeded random share
        return np.random.default_rng(0).random(len(days)) < share
    n_cal = max(1, math.ceil(share * len(unique)))
    return days >= unique[-n_cal]


def train(
    store: HistoryStore,
    since_ms: int,
    until_ms: int,
    zone_resolution: int,
    params: EtaModelParams | None = None,
) -> tuple[EtaArtifact, dict[str, Any]]:
    """A fitted artifact and its metadata (features, window, metrics on calibration days)."""
    params = params or EtaModelParams()
    started = time.monotonic()
    speeds = load_zone_speeds(store, since_ms, until_ms, zone_resolution)
    examples = load_examples(store, since_ms, until_ms, speeds, zone_resolution)
    if len(examples) < MIN_EXAMPLES:
        raise NotEnoughHistory(
            f"{len(examples)} labelled examples in [{since_ms}, {until_ms}) "
            f"(need >= {MIN_EXAMPLES}): is there history (plans, pings, arrivals) in the period?"
        )
    loaded = time.monotonic()
    cal = calibration_rows(examples, params.calibration_share)
    model = EtaModel(params).fit(examples.batch, examples.actual_s, cal)
    held = examples.take(cal)
    q = model.predict(held.batch)
    metrics = headline(held.actual_s, q, model.baseline.predict_s(held.batch))
    meta = {
        "model_class": type(model).__name__,
        "features": list(model.feature_names),
        "params": asdict(params),
        "training_window": {"since_ms": since_ms, "until_ms": until_ms},
        "n_examples": len(examples),
        "n_calibration": int(cal.sum()),
        "baseline_speed_mps": round(model.baseline.speed_mps, 3),
        "conformal_widths": round(model.conformal, 4),
        "zone_resolution": zone_resolution,
        "zones": len(model.zone_codes),
        "metrics": {"calibration_days": metrics},
        "train_seconds": {
            "load": round(loaded - started, 1),
            "fit": round(time.monotonic() - loaded, 1),
        },
    }
    return EtaArtifact(model, speeds, zone_resolution), meta
