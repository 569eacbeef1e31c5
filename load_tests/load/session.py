"""One `fleet load run`: the scenario (once, or per worker count), progress bar, report."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from fleet.settings import Settings
from load_tests.load import report
from load_tests.load.config import Scenario, Slo
from load_tests.load.probe import Sample
from load_tests.load.runner import Run, RunResult, report_dir
from load_tests.load.verdict import judge, lag_seconds, window


class _Bar:
    """Rich progress: elapsed of the traffic, offered/processed rates, lag, p99."""

    def __init__(self, scenario: Scenario, enabled: bool) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            disable=not enabled,
        )
        self.task = self.progress.add_task(scenario.name, total=scenario.total_s, stats="")
        self.previous: Sample | None = None
        self.name = scenario.name

    def update(self, elapsed: float, sample: Sample | None, phase: str) -> None:
        stats = phase
        if sample is not None and self.previous is not None and sample.t > self.previous.t:
            w = window(self.previous, sample, 500.0)
            stats = (
                f"offered {w.offered_per_s:,.0f}/s processed {w.processed_per_s:,.0f}/s "
                f"lag {lag_seconds(sample):.1f}s p99 {w.p99_ms:,.0f}ms {phase}"
            )
        if sample is not None and (self.previous is None or sample.t - self.previous.t >= 3):
            self.previous = sample
        self.progress.update(self.task, completed=elapsed, stats=stats,
                             description=f"{self.name} {phase}".strip())  # fmt: skip


def _one(
    scenario: Scenario, slo: Slo, settings: Settings, workers: int, progress: bool
) -> RunResult:
    bar = _Bar(scenario, progress)
    with bar.progress:
        return Run(scenario, settings, workers, slo, on_progress=bar.update).execute()


def run_scenario(
    scenario: Scenario,
    slo: Slo,
    settings: Settings,
    out: Path | None = None,
    command: str = "",
    progress: bool = True,
) -> tuple[Path, str]:
    """Run the scenario and write its report; return the report path and PASS/FAIL."""
    out = out or report_dir(scenario.name)
    if not scenario.worker_counts:
        result = _one(scenario, slo, settings, scenario.workers, progress)
        return report.write(result, slo, out, command)
    results = []
    for n in scenario.worker_counts:
        sub = replace(scenario, workers=n)
        result = _one(sub, slo, settings, n, progress)
        report.write(result, slo, out / f"workers-{n}", command)
        results.append(result)
    return _scale_out_summary(results, slo, out, command)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _scale_out_summary(
    results: list[RunResult], slo: Slo, out: Path, command: str
) -> tuple[Path, str]:
    sc = results[0].scenario
    lines = [
        f"# Load test `{sc.name}`",
        "",
        f"{sc.description}. The same offered load ({sc.rate:,.0f} pings/s asked, "
        f"{sc.drivers:,} drivers) with 1..{max(sc.worker_counts)} workers in one consumer group.",
        "",
        f"Command: `{command}`",
        "",
        "| workers | verdict | offered/s | processed/s | p99 ms | max lag (s) | worker CPU (% of "
        "one core, each) | Kafka / Redis / generator CPU | machine CPU (of 200) | lost | "
        "repeated alerts | report |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    verdicts = []
    for r in results:
        v = judge(r, slo)
        verdicts.append(report.overall(v))
        after = [x for x in r.samples if sc.warmup_s <= x.t <= r.send_s]
        w = window(after[0], after[-1], slo.ping_to_redis_p99_ms) if len(after) > 1 else None
        cpus = []
        for i in range(1, r.workers + 1):
            values = [x.cpu[f"worker-{i}"] for x in after if f"worker-{i}" in x.cpu]
            if values:
                cpus.append(f"{sum(values) / len(values):.0f}")
        machine = [x.cpu.get(report.MACHINE, 0.0) for x in after]
        services = " / ".join(
            f"{_mean([x.cpu.get(p, 0.0) for x in after]):.0f}"
            for p in ("kafka", "redis", "load generator")
        )
        lag_max = max((lag_seconds(x) for x in after), default=0.0)
        lines.append(
            f"| {r.workers} | {report.overall(v)} | "
            f"{w.offered_per_s if w else 0:,.0f} | {w.processed_per_s if w else 0:,.0f} | "
            f"{w.p99_ms if w else 0:,.0f} | {lag_max:.1f} | {' / '.join(cpus)} | {services} | "
            f"{sum(machine) / max(len(machine), 1):.0f} | {r.verification.lost:,} | "
            f"{len(r.outputs.duplicated_alerts())} | [workers-{r.workers}](workers-{r.workers}/"
            "report.md) |"
        )
    overall = "PASS" if all(v == "PASS" for v in verdicts) else "FAIL"
    lines[0] += f": **{overall}**"
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text("\n".join(lines) + "\n")
    return out / "report.md", overall
