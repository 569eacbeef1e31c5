"""Accuracy of an ETA model on labelled examples: headline metrics, breakdowns, a report."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from models.dataset import Examples
from models.estimators import Quantiles
from models.registry import EtaArtifact

# Horizon buckets (minutes from the anchor to the actual arrival), left-closed.
HORIZON_EDGES_MIN = (0, 10, 20, 30, 45, 60, 90, 120, 180)
TOP_ZONES = 15


def headline(actual_s: npt.ArrayLike, q: Quantiles, baseline_s: npt.ArrayLike) -> dict[str, Any]:
    """n, MAE of p50 and of the baseline, p90 of the absolute error, p10-p90 coverage, bias."""
    y = np.asarray(actual_s, dtype=np.float64)
    base = np.asarray(baseline_s, dtype=np.float64)
    if len(y) == 0:
        return {"n": 0}
    err = q.p50_s - y
    mae, base_mae = float(np.mean(np.abs(err))), float(np.mean(np.abs(base - y)))
    return {
        "n": len(y),
        "mae_s": round(mae, 1),
        "baseline_mae_s": round(base_mae, 1),
        "gain_vs_baseline": round(1.0 - mae / base_mae, 4) if base_mae > 0 else 0.0,
        "p90_abs_error_s": round(float(np.quantile(np.abs(err), 0.9)), 1),
        "coverage_p10_p90": round(float(np.mean((y >= q.p10_s) & (y <= q.p90_s))), 4),
        "below_p10": round(float(np.mean(y < q.p10_s)), 4),
        "above_p90": round(float(np.mean(y > q.p90_s)), 4),
        "bias_s": round(float(np.mean(err)), 1),
        "mean_interval_s": round(float(np.mean(q.p90_s - q.p10_s)), 1),
    }


@dataclass(frozen=True, slots=True)
class Evaluation:
    """Headline metrics and per-group rows of one model on one set of examples."""

    metrics: dict[str, Any]
    by_hour: list[dict[str, Any]]
    by_zone: list[dict[str, Any]]
    by_horizon: list[dict[str, Any]]


def _groups(
    keys: npt.NDArray[Any], y: npt.NDArray[np.float64], q: Quantiles, base: npt.NDArray[np.float64]
) -> list[dict[str, Any]]:
    rows = []
    for key in np.unique(keys):
        m = keys == key
        sub = Quantiles(q.p10_s[m], q.p50_s[m], q.p90_s[m])
        rows.append(
            {"group": key.item() if hasattr(key, "item") else key, **headline(y[m], sub, base[m])}
        )
    return rows


def evaluate(artifact: EtaArtifact, examples: Examples) -> Evaluation:
    """The model's p10/p50/p90 and the baseline against the actual arrivals."""
    q = artifact.model.predict(examples.batch)
    base = artifact.model.baseline.predict_s(examples.batch)
    y = examples.actual_s
    hours = (examples.anchor_ms // 3_600_000) % 24
    zones = examples.batch.dest_zone
    counts = {z: int(c) for z, c in zip(*np.unique(zones, return_counts=True), strict=True)}
    top = sorted(counts, key=lambda z: -counts[z])[:TOP_ZONES]
    zone_keys = np.where(np.isin(zones, top), zones, "other")
    edges = np.asarray(HORIZON_EDGES_MIN, dtype=np.float64)
    bucket = np.searchsorted(edges, y / 60.0, side="right") - 1
    labels = [f"{a}-{b}" for a, b in itertools.pairwise(HORIZON_EDGES_MIN)]
    labels.append(f"{HORIZON_EDGES_MIN[-1]}+")
    horizon_keys = np.array([labels[max(0, b)] for b in bucket])
    by_horizon = _groups(horizon_keys, y, q, base)
    order = {label: i for i, label in enumerate(labels)}
    by_horizon.sort(key=lambda r: order[r["group"]])
    return Evaluation(
        headline(y, q, base),
        _groups(hours, y, q, base),
        _groups(zone_keys, y, q, base),
        by_horizon,
    )


def _bar_plot(path: Path, rows: list[dict[str, Any]], title: str, xlabel: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [str(r["group"]) for r in rows]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(rows) + 2), 3.6))
    ax.bar(x - 0.2, [r["baseline_mae_s"] for r in rows], 0.4, label="baseline MAE (s)")
    ax.bar(x + 0.2, [r["mae_s"] for r in rows], 0.4, label="model p50 MAE (s)")
    ax.set_xticks(x, labels, rotation=45 if len(rows) > 8 else 0, ha="right", fontsize=7)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("seconds")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _calibration_plot(path: Path, rows: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [str(r["group"]) for r in rows]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(7.0, 3.6))
    ax.plot(x, [r["below_p10"] for r in rows], "o-", label="share below p10 (target 0.10)")
    ax.plot(x, [r["above_p90"] for r in rows], "s-", label="share above p90 (target 0.10)")
    ax.plot(x, [r["coverage_p10_p90"] for r in rows], "^-", label="p10-p90 coverage (0.80)")
    for level in (0.1, 0.8):
        ax.axhline(level, color="grey", lw=0.8, ls="--")
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_xlabel("horizon (minutes to the actual arrival)")
    ax.set_ylim(0, 1)
    ax.set_title("calibration of p10/p90 by horizon")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _table(rows: list[dict[str, Any]], name: str) -> str:
    cols = ["n", "mae_s", "baseline_mae_s", "p90_abs_error_s", "coverage_p10_p90", "bias_s"]
    lines = [f"| {name} | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for r in rows:
        lines.append(f"| {r['group']} | " + " | ".join(str(r.get(c, "")) for c in cols) + " |")
    return "\n".join(lines)


def write_report(directory: Path, version: str, ev: Evaluation, title: str) -> Path:
    """A markdown report with PNG plots in ``directory``; returns the markdown file."""
    directory.mkdir(parents=True, exist_ok=True)
    _bar_plot(directory / "error_by_hour.png", ev.by_hour, "error by hour (UTC)", "hour")
    _bar_plot(directory / "error_by_zone.png", ev.by_zone, "error by zone", "zone of the stop")
    _bar_plot(directory / "error_by_horizon.png", ev.by_horizon, "error by horizon", "minutes")
    _calibration_plot(directory / "calibration.png", ev.by_horizon)
    m = ev.metrics
    text = (
        f"""# ETA evaluation of {version}

{title}

| metric | value |
|---|---|
"""
        + "\n".join(f"| {k} | {v} |" for k, v in m.items())
        + f"""

Baseline vs model: MAE {m.get("baseline_mae_s")} s -> {m.get("mae_s")} s
(gain {m.get("gain_vs_baseline")}); p10-p90 coverage {m.get("coverage_p10_p90")}.

![error by hour](error_by_hour.png)
![error by zone](error_by_zone.png)
![error by horizon](error_by_horizon.png)
![calibration](calibration.png)

## By horizon (minutes)
{_table(ev.by_horizon, "horizon")}

## By hour of the anchor (UTC)
{_table(ev.by_hour, "hour")}

## By zone of the stop
{_table(ev.by_zone, "zone")}
"""
    )
    path = directory / "report.md"
    path.write_text(text)
    return path
