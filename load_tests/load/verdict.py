"""PASS/FAIL of a run against the SLOs, and the figures behind each verdict."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING

from load_tests.load.config import Scenario, Slo
from load_tests.load.probe import Sample, minus, quantile, share_within

if TYPE_CHECKING:
    from load_tests.load.runner import RunResult

SETTLE_S = 10.0  # a peak step's first seconds are not judged (the rate just changed)


@dataclass(frozen=True)
class Verdict:
    """One SLO's outcome."""

    name: str
    target: str
    measured: str
    passed: bool


@dataclass(frozen=True)
class Window:
    """Throughput and latency between two samples."""

    seconds: float
    offered_per_s: float
    processed_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    within_target: float  # share of pings at or under the latency target


def window(first: Sample, last: Sample, target_ms: float) -> Window:
    dt = max(last.t - first.t, 1e-9)
    buckets = minus(last.latency, first.latency)
    return Window(
        seconds=dt,
        offered_per_s=(last.offered - first.offered) / dt,
        processed_per_s=(last.processed - first.processed) / dt,
        p50_ms=quantile(buckets, 0.50) * 1000,
        p95_ms=quantile(buckets, 0.95) * 1000,
        p99_ms=quantile(buckets, 0.99) * 1000,
        within_target=share_within(buckets, target_ms / 1000),
    )


def lag_seconds(s: Sample) -> float:
    """Consumer lag as seconds of offered traffic."""
    return s.lag_msgs / s.rate if s.rate > 0 else 0.0


@dataclass(frozen=True)
class Step:
    """A peak step's figures and whether it held the SLOs."""

    index: int
    offered_target: float
    window: Window | None
    lag_end_s: float
    held: bool


def step_held(sc: Scenario, slo: Slo, samples: list[Sample], index: int) -> Step:
    """Did step ``index`` hold: latency target, lag under the bound at its end, kept up?"""
    start = index * sc.step_s + min(SETTLE_S, sc.step_s / 3)
    end = (index + 1) * sc.step_s
    inside = [s for s in samples if start <= s.t <= end]
    target = float(sc.steps_pings_per_s[index])
    if len(inside) < 2:
        return Step(index, target, None, float("nan"), False)
    w = window(inside[0], inside[-1], slo.ping_to_redis_p99_ms)
    lag_end = lag_seconds(inside[-1])
    held = (
        w.within_target >= 0.99
        and lag_end <= slo.lag_max_s
        and w.processed_per_s >= 0.95 * w.offered_per_s
    )
    return Step(index, target, w, lag_end, held)


def lag_episodes(result: RunResult, slo: Slo) -> list[tuple[float, float, bool]]:
    """Spells with lag above the bound after warm-up: (from, seconds to recover, recovered).

    A spell that starts while a fault is in progress is timed from the fault's end.
    """
    faults = [(f.started_s, f.ended_s if f.ended_s is not None else float("inf"))
              for f in result.faults]  # fmt: skip
    out: list[tuple[float, float, bool]] = []
    above_since: float | None = None
    warmup = result.scenario.warmup_s
    samples = [s for s in result.samples if s.t >= warmup]
    for s in samples:
        high = lag_seconds(s) > slo.lag_max_s
        if high and above_since is None:
            above_since = s.t
        elif not high and above_since is not None:
            out.append((above_since, s.t - _clock_start(above_since, faults), True))
            above_since = None
    if above_since is not None and samples:
        out.append((above_since, samples[-1].t - _clock_start(above_since, faults), False))
    return out


def _clock_start(t: float, faults: list[tuple[float, float]]) -> float:
    for start, end in faults:
        if start <= t <= end:
            return end
    return t


def steady_latency(result: RunResult, slo: Slo) -> list[tuple[float, float]]:
    """Latency buckets after warm-up (drain included), leaving out each fault and the
    recovery time the lag SLO allows after it."""
    excluded = [
        (f.started_s, (f.ended_s if f.ended_s is not None else float("inf")) + slo.lag_recovery_s)
        for f in result.faults
    ]
    samples = [s for s in result.samples if s.t >= result.scenario.warmup_s]
    total: dict[float, float] = {}
    for a, b in itertools.pairwise(samples):
        if any(start <= b.t and a.t <= end for start, end in excluded):
            continue
        for le, count in minus(b.latency, a.latency):
            total[le] = total.get(le, 0.0) + count
    return sorted(total.items())


def judge(result: RunResult, slo: Slo) -> list[Verdict]:
    """Every SLO verdict of a run."""
    sc = result.scenario
    verdicts: list[Verdict] = []
    buckets = steady_latency(result, slo)
    if buckets and buckets[-1][1] > 0:
        within = share_within(buckets, slo.ping_to_redis_p99_ms / 1000)
        where = " outside faults + recovery" if result.faults else ""
        verdicts.append(
            Verdict(
                f"ping -> Redis p99 (after warm-up, incl. drain{where})",
                f"<= {slo.ping_to_redis_p99_ms:.0f} ms",
                f"{quantile(buckets, 0.99) * 1000:,.0f} ms ({within:.2%} within)",
                within >= 0.99,
            )
        )
    episodes = lag_episodes(result, slo)
    worst = max((e[1] for e in episodes), default=0.0)
    unrecovered = [e for e in episodes if not e[2]]
    verdicts.append(
        Verdict(
            f"lag back under {slo.lag_max_s:.0f} s of traffic",
            f"within {slo.lag_recovery_s:.0f} s",
            f"{len(episodes)} spells above; longest {worst:.0f} s"
            + (f"; {len(unrecovered)} never recovered" if unrecovered else ""),
            worst <= slo.lag_recovery_s and not unrecovered,
        )
    )
    if slo.no_valid_ping_lost:
        v = result.verification
        measured = (
            v.error
            or f"{v.history_pings:,}/{v.expected_pings:,} in history; "
            f"{v.redis_checked - v.redis_stale:,}/{v.redis_checked:,} drivers current in Redis"
        )
        verdicts.append(Verdict("no valid ping lost", "0 lost", measured, v.ok))
    if slo.no_alert_duplicated:
        dups = result.outputs.duplicated_alerts()
        total = sum(result.outputs.alert_changes.values())
        verdicts.append(
            Verdict(
                "no alert duplicated",
                "0 repeated changes",
                f"{len(dups)} repeated of {total:,} alert changes",
                not dups,
            )
        )
    offered = result.ledger.valid_pings + result.ledger.duplicates + result.ledger.invalid
    share = result.outputs.dead_letters / max(offered, 1)
    verdicts.append(
        Verdict(
            "dead-letter share",
            f"<= {slo.max_dead_letter_share:.1%}",
            f"{share:.2%} ({result.outputs.dead_letters:,} of {offered:,})",
            share <= slo.max_dead_letter_share,
        )
    )
    if sc.steps_pings_per_s:
        steps = peak_steps(result, slo)
        held = [s.offered_target for s in steps if s.held]
        best = max(held, default=0.0)
        verdicts.append(
            Verdict("highest rate held (peak)", "reported", f"{best:,.0f} pings/s", bool(held))
        )
    return verdicts


def peak_steps(result: RunResult, slo: Slo) -> list[Step]:
    sc = result.scenario
    sent_steps = int(min(result.send_s, sc.total_s) // sc.step_s + 0.999)
    count = min(sent_steps, len(sc.steps_pings_per_s))
    return [step_held(sc, slo, result.samples, i) for i in range(count)]
