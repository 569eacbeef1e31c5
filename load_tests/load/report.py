"""The report of a run: report.md with verdicts and figures, PNG plots, raw samples as JSON."""

from __future__ import annotations

import itertools
import json
import math
import statistics
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from load_tests.load.config import Scenario, Slo
from load_tests.load.probe import MACHINE, Sample, minus, quantile
from load_tests.load.runner import RunResult
from load_tests.load.verdict import Verdict, judge, lag_seconds, peak_steps, window

SMOOTH_S = 5.0


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _rates(samples: list[Sample], attr: str) -> tuple[list[float], list[float]]:
    """Per-second rate of a cumulative field over SMOOTH_S windows."""
    ts, rates = [], []
    j = 0
    for i, s in enumerate(samples):
        while samples[j].t < s.t - SMOOTH_S:
            j += 1
        if i > j:
            first = samples[j]
            ts.append(s.t)
            rates.append((getattr(s, attr) - getattr(first, attr)) / max(s.t - first.t, 1e-9))
    return ts, rates


def _latency_series(samples: list[Sample]) -> tuple[list[float], dict[str, list[float]]]:
    ts: list[float] = []
    out: dict[str, list[float]] = {"p50": [], "p95": [], "p99": []}
    j = 0
    for i, s in enumerate(samples):
        while samples[j].t < s.t - SMOOTH_S:
            j += 1
        if i > j:
            buckets = minus(s.latency, samples[j].latency)
            if buckets and buckets[-1][1] > 0:
                ts.append(s.t)
                for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
                    out[name].append(quantile(buckets, q) * 1000)
    return ts, out


def _mark_faults(ax: Any, result: RunResult) -> None:
    for f in result.faults:
        ax.axvline(f.started_s, color="red", linestyle="--", linewidth=1)
        if f.ended_s is not None and f.ended_s > f.started_s:
            ax.axvspan(f.started_s, f.ended_s, color="red", alpha=0.1)
    ax.axvline(result.send_s, color="grey", linestyle=":", linewidth=1)


def plot(result: RunResult, slo: Slo, out: Path) -> list[str]:
    """Write the PNGs; return their file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = result.samples
    names = []
    t = [x.t for x in s]
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.plot(t, [x.rate for x in s], color="black", linewidth=1, label="asked (scenario)")
    for attr, label in (("offered", "offered (sent)"), ("processed", "processed by workers")):
        ts, rates = _rates(s, attr)
        ax.plot(ts, rates, label=label)
    _mark_faults(ax, result)
    ax.set(xlabel="seconds", ylabel="pings/s", title="Offered vs processed (5 s windows)")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "throughput.png", dpi=90)
    plt.close(fig)
    names.append("throughput.png")

    fig, ax = plt.subplots(figsize=(9, 4))
    ax.plot(t, [lag_seconds(x) for x in s], label="consumer lag (s of traffic)")
    ax.axhline(slo.lag_max_s, color="orange", linestyle="--", label="SLO bound")
    _mark_faults(ax, result)
    ax.set(xlabel="seconds", ylabel="seconds of traffic", title="Consumer lag on fleet.pings")
    ax2 = ax.twinx()
    ax2.plot(t, [x.lag_msgs for x in s], color="grey", alpha=0.4, label="lag (messages)")
    ax2.plot(t, [x.history_lag for x in s], color="green", alpha=0.6, label="history lag (msgs)")
    ax2.set_ylabel("messages")
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "lag.png", dpi=90)
    plt.close(fig)
    names.append("lag.png")

    ts, lat = _latency_series(s)
    fig, ax = plt.subplots(figsize=(9, 4))
    for name, values in lat.items():
        ax.plot(ts, values, label=name)
    ax.axhline(slo.ping_to_redis_p99_ms, color="orange", linestyle="--", label="p99 SLO")
    _mark_faults(ax, result)
    ax.set_yscale("log")
    ax.set(xlabel="seconds", ylabel="ms", title="Ping -> Redis latency (Kafka clock, 5 s windows)")
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(out / "latency.png", dpi=90)
    plt.close(fig)
    names.append("latency.png")

    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    procs = sorted({p for x in s for p in x.cpu})
    for p in procs:
        ax.plot(t, [x.cpu.get(p, math.nan) for x in s], label=p)
    ax.set(ylabel="% of one core", title="CPU per process")
    ax.legend(loc="upper left", fontsize=7)
    ax.grid(alpha=0.3)
    for p in sorted({p for x in s for p in x.rss_mb}):
        ax2.plot(t, [x.rss_mb.get(p, math.nan) for x in s], label=p)
    ax2.set(xlabel="seconds", ylabel="MiB", title="RSS per process")
    ax2.legend(loc="upper left", fontsize=7)
    ax2.grid(alpha=0.3)
    _mark_faults(ax, result)
    fig.tight_layout()
    fig.savefig(out / "resources.png", dpi=90)
    plt.close(fig)
    names.append("resources.png")
    return names


def _cpu_table(samples: list[Sample]) -> list[str]:
    procs = sorted({p for x in samples for p in x.cpu}, key=lambda p: (p == MACHINE, p))
    lines = [
        "| process | CPU mean (% of one core) | CPU max | RSS max (MiB) |",
        "|---|---|---|---|",
    ]
    watched_mean = 0.0
    machine_mean = 0.0
    for p in procs:
        values = [x.cpu[p] for x in samples if p in x.cpu]
        rss = [x.rss_mb[p] for x in samples if p in x.rss_mb]
        mean = statistics.fmean(values) if values else math.nan
        if p == MACHINE:
            machine_mean = mean
        else:
            watched_mean += mean
        lines.append(
            f"| {p} | {mean:.0f} | {max(values, default=math.nan):.0f} | "
            f"{f'{max(rss):.0f}' if rss else ''} |"
        )
    lines.append(
        f"| everything else on the machine (other users' processes) | "
        f"{max(0.0, machine_mean - watched_mean):.0f} | | |"
    )
    return lines


def _timer_lines(samples: list[Sample]) -> list[str]:
    """Mean stale-timer run per third of the run (does a sweep get slower as state grows?)."""
    if len(samples) < 6 or samples[-1].timer_runs < 3:
        return []
    n = len(samples)
    cuts = [samples[0], samples[n // 3], samples[2 * n // 3], samples[-1]]
    means = []
    for a, b in itertools.pairwise(cuts):
        runs = b.timer_runs - a.timer_runs
        means.append(f"{1000 * (b.timer_sum_s - a.timer_sum_s) / runs:,.0f} ms" if runs else "-")
    return ["", "Stale timer, mean duration per run in each third of the run: " + " / ".join(means)]


def overall(verdicts: list[Verdict]) -> str:
    return "PASS" if all(v.passed for v in verdicts) else "FAIL"


def markdown(result: RunResult, slo: Slo, plots: list[str], command: str) -> str:
    sc = result.scenario
    verdicts = judge(result, slo)
    led = result.ledger
    out = result.outputs
    after = [x for x in result.samples if sc.warmup_s <= x.t <= result.send_s]
    lines = [
        f"# Load test `{sc.name}`: **{overall(verdicts)}**",
        "",
        f"{sc.description}. Run `{result.run_id}` started {result.started_utc}, "
        f"{result.workers} worker(s) (ping consumer: {result.ping_consumer}), "
        f"sent for {result.send_s:.0f} s, drained in "
        f"{result.drain_s:.0f} s. Machine: {result.machine['cpus']:.0f} CPUs, load average "
        f"{result.machine['load1']:.1f} (1 min) at the end. Start of day: {result.plans_note}.",
        "",
        f"Command: `{command}`",
        "",
        "## Verdicts",
        "| SLO | target | measured | verdict |",
        "|---|---|---|---|",
    ]
    lines += [f"| {v.name} | {v.target} | {v.measured} | {'PASS' if v.passed else 'FAIL'} |"
              for v in verdicts]  # fmt: skip
    lines += ["", "## Figures", "| measure | value |", "|---|---|"]
    if len(after) >= 2:
        w = window(after[0], after[-1], slo.ping_to_redis_p99_ms)
        lines += [
            f"| pings/s asked / offered / processed (after warm-up, while sending) | "
            f"{sc.rate_at(after[-1].t):,.0f} / {w.offered_per_s:,.0f} / {w.processed_per_s:,.0f} |",
            f"| ping -> Redis p50 / p95 / p99 while sending | {w.p50_ms:,.0f} / {w.p95_ms:,.0f} / "
            f"{w.p99_ms:,.0f} ms |",
        ]
    lag_max = max((lag_seconds(x) for x in result.samples if x.t >= sc.warmup_s), default=0.0)
    msgs_max = max((x.lag_msgs for x in result.samples), default=0)
    lines += [
        f"| consumer lag max (after warm-up) | {lag_max:.1f} s of traffic ({msgs_max:,} messages; "
        f"group `{result.lag_group}`) |",
        f"| valid pings sent (incl. {led.burst_pings:,} replayed in {len(led.bursts)} offline "
        f"bursts) / duplicates / invalid | {led.valid_pings:,} / {led.duplicates:,} / "
        f"{led.invalid:,} |",
        f"| plans / events / orders / commands sent | {led.plans:,} / {led.events:,} / "
        f"{led.orders:,} / {led.commands:,} |",
        f"| dead letters | {out.dead_letters:,} |",
        f"| alerts opened by kind | {_counts(out.alerts_by_kind)} |",
        f"| alert latency p50 / p99 (fix -> fleet.alerts) | {_pct(out.alert_latency_ms, 0.5):,.0f}"
        f" / {_pct(out.alert_latency_ms, 0.99):,.0f} ms ({len(out.alert_latency_ms)} changes) |",
        f"| route updates by cause | {_counts(out.route_updates_by_cause)} |",
        f"| RouteUpdate latency p50 / p99 (order or command sent -> fleet.route-updates) | "
        f"{_pct(out.route_update_latency_ms, 0.5):,.0f} / "
        f"{_pct(out.route_update_latency_ms, 0.99):,.0f} ms "
        f"({len(out.route_update_latency_ms)} matched) |",
        f"| EtaUpdates / publish delay p50 / p99 (computed_ms -> Kafka) | {out.etas:,} / "
        f"{_pct(out.eta_latency_ms, 0.5):,.0f} / {_pct(out.eta_latency_ms, 0.99):,.0f} ms |",
        f"| pings in history (distinct) / rows inserted (metric) / history lag at the end | "
        f"{result.verification.history_pings:,} / "
        f"{result.samples[-1].history_rows if result.samples else 0:,.0f} / "
        f"{result.samples[-1].history_lag if result.samples else 0:,.0f} messages |",
    ]
    for kind, examples in sorted(out.alert_examples.items()):
        lines += ["", f"First `{kind}` alerts: " + "; ".join(f"`{e}`" for e in examples)]
    if result.verification.examples:
        lines += ["", "Examples of what did not match: "
                  + "; ".join(result.verification.examples)]  # fmt: skip
    if sc.steps_pings_per_s:
        lines += [
            "",
            "## Peak steps",
            "| asked pings/s | offered | processed | p99 ms | within 500 ms | lag at end | held |",
            "|---|---|---|---|---|---|---|",
        ]
        for st in peak_steps(result, slo):
            sw = st.window
            if sw is None:
                continue
            lines.append(
                f"| {st.offered_target:,.0f} | {sw.offered_per_s:,.0f} | {sw.processed_per_s:,.0f}"
                f" | {sw.p99_ms:,.0f} | {sw.within_target:.2%} | {st.lag_end_s:.1f} | "
                f"{'yes' if st.held else 'NO'} |"
            )
        if result.stopped_early_at_s is not None:
            lines.append(f"\nStopped at {result.stopped_early_at_s:.0f} s: the last step broke.")
    if result.faults:
        lines += ["", "## Faults", "| at (s) | action | back at (s) | note |", "|---|---|---|---|"]
        for f in result.faults:
            back = f"{f.ended_s:.0f}" if f.ended_s is not None else "-"
            lines.append(f"| {f.started_s:.0f} | {f.action} | {back} | {f.note} |")
    lines += ["", "## CPU and memory", *_cpu_table(result.samples)]
    lines += _timer_lines(result.samples)
    lines += ["", "## Plots", *(f"![{p}]({p})" for p in plots)]
    lines += ["", "## Scenario", "| parameter | value |", "|---|---|"]
    lines += [f"| {f.name} | {getattr(sc, f.name)} |" for f in fields(Scenario)
              if f.name not in ("name", "description")]  # fmt: skip
    lines += [
        "",
        "Red dashed lines: faults (shaded while the stack was down); grey dotted: sending stopped."
        " Lag in seconds = messages behind / the asked rate. Latency from the ping's Kafka"
        " timestamp to its Redis write, from the workers' histogram (bucket bounds 250, 500,"
        " 1000 ms: the share within 500 ms is exact, p99 is interpolated within its bucket).",
        "",
    ]
    return "\n".join(lines)


def _counts(counter: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in sorted(counter.items())) or "none"


def write(result: RunResult, slo: Slo, out: Path, command: str) -> tuple[Path, str]:
    """Write report.md, the plots and samples.json into ``out``; return the path and verdict."""
    out.mkdir(parents=True, exist_ok=True)
    plots = plot(result, slo, out)
    text = markdown(result, slo, plots, command)
    (out / "report.md").write_text(text)
    (out / "samples.json").write_text(
        json.dumps([{k: v for k, v in asdict(x).items() if k != "latency"} for x in result.samples])
    )
    return out / "report.md", overall(judge(result, slo))
