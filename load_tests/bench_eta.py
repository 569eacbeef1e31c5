"""ETA acceptance figures on simulated history: held-out accuracy and online recovery.

Simulates training days, held-out days and days with a congestion shift (speeds x0.6
within 6 km of the centre from 12:00 UTC) into a temporary embedded store, trains a model,
evaluates it on the held-out days, then replays the shift days with and without the online
correction. Prints the figures and writes a plot of error over time.

python -m load_tests.bench_eta [--days 14] [--plot docs/eta/online_recovery.png]
"""

from __future__ import annotations

import argparse
import json
import pickle
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from fleet.history.access import open_owner
from fleet.settings import PROJECT_ROOT, Settings
from load_tests.history_sim import DAY_MS, HOUR_MS, CongestionShift, WorldParams, write_days
from models.dataset import Examples, load_examples
from models.evaluation import headline
from models.online import OnlineCorrector, replay
from models.registry import EtaArtifact
from models.training import train

START_MS = 1_791_158_400_000  # 2026-10-05 00:00 UTC, a Monday
BUCKET_MS = 5 * 60_000
SHIFT_FACTOR = 0.6
SHIFT_RADIUS_M = 6_000.0


SHIFT_HOUR = 12


def _since_shift_ms(ex: Examples) -> np.ndarray:
    """Prediction time relative to that day's shift (12:00 UTC)."""
    return ex.anchor_ms % DAY_MS - SHIFT_HOUR * HOUR_MS


def _mae(ex: Examples, p50: np.ndarray, lo_min: float, hi_min: float) -> float:
    t = _since_shift_ms(ex)
    m = (t >= lo_min * 60_000) & (t < hi_min * 60_000)
    return float(np.mean(np.abs(p50[m] - ex.actual_s[m]))) if m.any() else float("nan")


def recovery(ex: Examples, model_p50: np.ndarray, online_p50: np.ndarray) -> dict[str, float]:
    """Excess error over the pre-shift level, 30-60 min after the shift, with/without online."""
    pre_model, pre_online = _mae(ex, model_p50, -120, 0), _mae(ex, online_p50, -120, 0)
    after_model, after_online = _mae(ex, model_p50, 30, 60), _mae(ex, online_p50, 30, 60)
    first_model, first_online = _mae(ex, model_p50, 0, 30), _mae(ex, online_p50, 0, 30)
    excess_model, excess_online = after_model - pre_model, after_online - pre_online
    return {
        "pre_shift_mae_model_s": round(pre_model, 1),
        "pre_shift_mae_online_s": round(pre_online, 1),
        "mae_0_30min_after_model_s": round(first_model, 1),
        "mae_0_30min_after_online_s": round(first_online, 1),
        "mae_30_60min_after_model_s": round(after_model, 1),
        "mae_30_60min_after_online_s": round(after_online, 1),
        "excess_30_60min_model_s": round(excess_model, 1),
        "excess_30_60min_online_s": round(excess_online, 1),
        "recovered_share": round(1.0 - excess_online / excess_model, 3)
        if excess_model > 0
        else 0.0,
    }


def plot(path: Path, ex: Examples, curves: dict[str, np.ndarray]) -> None:
    """MAE per 5 minutes of prediction time around the shift (all shift days together)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    starts = np.arange(-120, 180, BUCKET_MS // 60_000)
    fig, ax = plt.subplots(figsize=(8, 4))
    for label, p50 in curves.items():
        ax.plot(starts + 2.5, [_mae(ex, p50, float(a), float(a) + 5) for a in starts], label=label)
    ax.axvline(0, color="grey", ls="--", lw=0.8)
    ax.axvspan(30, 60, color="grey", alpha=0.12, label="30-60 min after")
    ax.set_xlabel("minutes since the congestion shift (prediction time)")
    ax.set_ylabel("MAE of p50 (s)")
    ax.set_title("online correction after a mid-day congestion shift")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _stop_keys(ex: Examples) -> np.ndarray:
    return np.char.add(np.char.add(ex.route_id, "/"), ex.stop_id)


def prepare(
    days: int, held_out_days: int, shift_days: int, seed: int
) -> tuple[EtaArtifact, Examples, Examples, dict[str, Any]]:
    """Simulate, write, train: the artifact, held-out and shift-day examples, figures."""
    shift_day_ms = START_MS + (days + held_out_days) * DAY_MS
    shift = CongestionShift(
        shift_day_ms + SHIFT_HOUR * HOUR_MS,
        factor=SHIFT_FACTOR,
        radius_m=SHIFT_RADIUS_M,
        every_day=True,
    )
    params = WorldParams(seed=seed, shift=shift)
    figures: dict[str, Any] = {
        "train_days": days,
        "held_out_days": held_out_days,
        "shift_days": shift_days,
    }
    with tempfile.TemporaryDirectory(prefix="bench-eta-") as tmp:
        settings = Settings(var_dir=Path(tmp))
        t0 = time.monotonic()
        figures["simulated"] = write_days(
            settings, params, START_MS, days + held_out_days + shift_days
        )
        t1 = time.monotonic()
        store = open_owner(settings)
        try:
            train_until = START_MS + days * DAY_MS
            artifact, meta = train(store, START_MS, train_until, settings.zone_resolution)
            t2 = time.monotonic()
            res = settings.zone_resolution
            held = load_examples(store, train_until, shift_day_ms, artifact.speeds, res)
            shifted = load_examples(
                store, shift_day_ms, shift_day_ms + shift_days * DAY_MS, artifact.speeds, res
            )
        finally:
            store.close()
    figures["seconds"] = {"simulate_and_write": round(t1 - t0, 1), "train": round(t2 - t1, 1)}
    figures["n_train_examples"] = meta["n_examples"]
    return artifact, held, shifted, figures


def score(
    artifact: EtaArtifact, held: Examples, shifted: Examples, plot_path: Path | None
) -> dict[str, Any]:
    """Held-out accuracy (with and without online correction) and recovery after the shift."""
    q = artifact.model.predict(held.batch)
    base = artifact.model.baseline.predict_s(held.batch)
    online = replay(
        OnlineCorrector(),
        q,
        held.batch.dest_zone,
        held.anchor_ms,
        held.arrival_ms,
        _stop_keys(held),
    )
    figures: dict[str, Any] = {"held_out": headline(held.actual_s, q, base)}
    with_online = headline(held.actual_s, online, base)
    figures["held_out"]["online_mae_s"] = with_online["mae_s"]
    figures["held_out"]["online_coverage_p10_p90"] = with_online["coverage_p10_p90"]
    model_q = artifact.model.predict(shifted.batch)
    online_q = replay(
        OnlineCorrector(),
        model_q,
        shifted.batch.dest_zone,
        shifted.anchor_ms,
        shifted.arrival_ms,
        _stop_keys(shifted),
    )
    figures["shift"] = {
        "factor": SHIFT_FACTOR,
        "radius_m": SHIFT_RADIUS_M,
        "hour_utc": SHIFT_HOUR,
        "n": len(shifted),
        **recovery(shifted, model_q.p50_s, online_q.p50_s),
    }
    if plot_path is not None:
        baseline = artifact.model.baseline.predict_s(shifted.batch)
        plot(
            plot_path,
            shifted,
            {
                "baseline": baseline,
                "model": model_q.p50_s,
                "model + online correction": online_q.p50_s,
            },
        )
        figures["plot"] = str(plot_path)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=14, help="training days")
    parser.add_argument("--held-out-days", type=int, default=2)
    parser.add_argument("--shift-days", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--plot", default=str(PROJECT_ROOT / "docs/eta/online_recovery.png"))
    parser.add_argument("--cache", default=None, help="reuse (or write) prepared data here")
    args = parser.parse_args()
    cache = Path(args.cache) if args.cache else None
    if cache is not None and cache.exists():
        artifact, held, shifted, figures = pickle.loads(cache.read_bytes())
    else:
        prepared = prepare(args.days, args.held_out_days, args.shift_days, args.seed)
        if cache is not None:
            cache.write_bytes(pickle.dumps(prepared))
        artifact, held, shifted, figures = prepared
    figures.update(score(artifact, held, shifted, Path(args.plot) if args.plot else None))
    print(json.dumps(figures, indent=2))
    h, s = figures["held_out"], figures["shift"]
    print(
        f"\nheld-out ({args.held_out_days} days, n={h['n']}): MAE {h['mae_s']} s vs baseline "
        f"{h['baseline_mae_s']} s ({100 * h['gain_vs_baseline']:.1f}% lower); p10-p90 coverage "
        f"{100 * h['coverage_p10_p90']:.1f}%\nshift: excess error 30-60 min after "
        f"{s['excess_30_60min_model_s']} s without, {s['excess_30_60min_online_s']} s with "
        "online correction "
        f"({100 * s['recovered_share']:.0f}% recovered)"
    )


if __name__ == "__main__":
    main()
