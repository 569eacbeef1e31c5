"""Measurements of a running pipeline, sampled once a second: metrics, Kafka lag, CPU, RSS.

Worker counters restart at zero when a worker restarts; ``Counters`` keeps them continuous
per (port, series), so totals over a run with faults stay right.
"""

from __future__ import annotations

import contextlib
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import psutil
from confluent_kafka import Consumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from fleet.history.process import PROCESS_NAME

Series = tuple[str, tuple[tuple[str, str], ...]]  # sample name, sorted labels
PROCESSED = ("fleet_pings_accepted_total", "fleet_pings_duplicate_total",
             "fleet_pings_rejected_total")  # fmt: skip
LATENCY = "fleet_ping_to_redis_seconds_bucket"
MACHINE = "machine (all processes)"
HISTORY_PROCESS = PROCESS_NAME.decode()  # a worker's child that runs history
POSITION = "fleet_ping_position"
START_TIME: Series = ("process_start_time_seconds", ())


def scrape(port: int, timeout_s: float = 2.0) -> dict[Series, float]:
    """Every sample of one /metrics endpoint."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout_s) as resp:
        text = resp.read().decode()
    out: dict[Series, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


class Counters:
    """Monotonic totals across worker restarts.

    A restart is a new ``process_start_time_seconds`` of the endpoint (every prometheus-client
    process exports it); without it, a drop in a counter. The drop alone misses a restart
    whose new count has already passed the old one by the next sample.
    """

    def __init__(self) -> None:
        self._last: dict[tuple[int, Series], float] = {}
        self._base: dict[tuple[int, Series], float] = {}
        self._started: dict[int, float] = {}

    def update(self, port: int, samples: dict[Series, float]) -> None:
        started = samples.get(START_TIME)
        if started is not None:
            if self._started.get(port, started) != started:
                for key, last in self._last.items():
                    if key[0] == port and key[1] != START_TIME:
                        self._base[key] = self._base.get(key, 0.0) + last
                        self._last[key] = 0.0
            self._started[port] = started
        for series, value in samples.items():
            key = (port, series)
            last = self._last.get(key, 0.0)
            if value < last:
                self._base[key] = self._base.get(key, 0.0) + last
            self._last[key] = value

    def total(self, name: str, where: Callable[[dict[str, str]], bool] | None = None) -> float:
        result = 0.0
        for (port, (sname, labels)), value in self._last.items():
            if sname == name and (where is None or where(dict(labels))):
                result += value + self._base.get((port, (sname, labels)), 0.0)
        return result

    def gauge(self, name: str) -> float:
        """Sum of a gauge's current values (no continuity: gauges are levels)."""
        return sum(v for (_p, (s, _l)), v in self._last.items() if s == name)

    def buckets(self, name: str, **match: str) -> list[tuple[float, float]]:
        """Cumulative histogram buckets (upper bound, count) summed over workers."""
        sums: dict[float, float] = {}
        for (port, (sname, labels)), value in self._last.items():
            d = dict(labels)
            if sname != name or any(d.get(k) != v for k, v in match.items()):
                continue
            le = float(d["le"])
            sums[le] = sums.get(le, 0.0) + value + self._base.get((port, (sname, labels)), 0.0)
        return sorted(sums.items())


def quantile(buckets: list[tuple[float, float]], q: float) -> float:
    """Quantile of cumulative buckets, linear within a bucket (nan when empty)."""
    if not buckets or buckets[-1][1] <= 0:
        return float("nan")
    target = q * buckets[-1][1]
    prev_bound, prev_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= target:
            if bound == float("inf"):
                return prev_bound
            share = (target - prev_count) / max(count - prev_count, 1e-9)
            return prev_bound + (bound - prev_bound) * share
        prev_bound, prev_count = bound, count
    return prev_bound


def share_within(buckets: list[tuple[float, float]], bound_s: float) -> float:
    """Share of observations <= bound_s (exact when bound_s is a bucket bound)."""
    if not buckets or buckets[-1][1] <= 0:
        return float("nan")
    below = max((c for b, c in buckets if b <= bound_s + 1e-12), default=0.0)
    return below / buckets[-1][1]


def minus(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Buckets observed between two snapshots."""
    before = dict(b)
    return [(le, count - before.get(le, 0.0)) for le, count in a]


class KafkaLag:
    """Messages of a topic not yet committed by a consumer group."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.tps = [TopicPartition(topic, p) for p in range(partitions)]
        self._consumers: dict[str, Consumer] = {}
        self._meta = Consumer({"bootstrap.servers": bootstrap, "group.id": "load-probe-meta",
                               "enable.auto.commit": False, "log_level": 0})  # fmt: skip

    def _consumer(self, group: str) -> Consumer:
        if group not in self._consumers:
            self._consumers[group] = Consumer(
                {"bootstrap.servers": self.bootstrap, "group.id": group,
                 "enable.auto.commit": False, "log_level": 0}
            )  # fmt: skip
        return self._consumers[group]

    def ends(self) -> dict[int, int]:
        out = {}
        for tp in self.tps:
            _low, high = self._meta.get_watermark_offsets(tp, timeout=3, cached=False)
            out[tp.partition] = high
        return out

    def committed(self, group: str) -> dict[int, int]:
        return {
            tp.partition: max(tp.offset, 0)
            for tp in self._consumer(group).committed(self.tps, timeout=5)
        }

    def lag(self, groups: Iterable[str], positions: dict[int, int]) -> tuple[int, str]:
        """Messages not yet processed: behind the position a worker reports for a partition
        (``fleet_ping_position``), else behind the group that has committed most."""
        ends = self.ends()
        best: tuple[int, dict[int, int], str] | None = None  # (committed, offsets, group)
        for group in groups:
            done = self.committed(group)
            total = sum(done.values())
            if total and (best is None or total > best[0]):
                best = (total, done, group)
        committed, group = (best[1], best[2]) if best is not None else ({}, "")
        behind = 0
        for p, end in ends.items():
            at = positions.get(p, committed.get(p, 0))
            behind += max(0, end - at)
        return behind, ("positions + " if positions else "") + group

    def close(self) -> None:
        for c in [*self._consumers.values(), self._meta]:
            with contextlib.suppress(Exception):
                c.close()


@dataclass
class Sample:
    """One second of a run."""

    t: float
    offered: float  # ping messages produced so far (valid, duplicate, invalid)
    processed: float  # ping messages the workers finished (accepted, duplicate, rejected)
    accepted: float
    rejected: float
    lag_msgs: int
    latency: list[tuple[float, float]]  # cumulative ping->Redis buckets (Kafka clock)
    history_rows: float
    history_lag: float
    cpu: dict[str, float] = field(default_factory=dict)  # process -> % of one core
    rss_mb: dict[str, float] = field(default_factory=dict)
    rate: float = 0.0  # offered pings/s the scenario asks for at this moment
    timer_sum_s: float = 0.0  # stale timer: total seconds spent so far (all workers)
    timer_runs: float = 0.0


class Processes:
    """CPU and RSS of named processes (workers come and go)."""

    def __init__(self) -> None:
        self._procs: dict[str, psutil.Process] = {}
        self._children: dict[int, psutil.Process] = {}  # by pid, kept for cpu_percent

    def watch(self, name: str, pid: int | None) -> None:
        if pid is None:
            self._procs.pop(name, None)
            return
        try:
            proc = psutil.Process(pid)
            proc.cpu_percent(None)
            self._procs[name] = proc
        except psutil.Error:
            self._procs.pop(name, None)

    def measure(self) -> tuple[dict[str, float], dict[str, float]]:
        cpu = {MACHINE: psutil.cpu_percent(None) * (psutil.cpu_count() or 1)}
        rss: dict[str, float] = {}
        for name, proc in list(self._procs.items()):
            try:
                cpu[name] = proc.cpu_percent(None)
                rss[name] = proc.memory_info().rss / 2**20
                if name.startswith("worker"):
                    history, others = self._children_cpu(proc)
                    cpu[f"{name} children (decision solver)"] = others
                    cpu[f"{name} history process"] = history
            except psutil.Error:
                self._procs.pop(name, None)
        return cpu, rss

    def _children_cpu(self, proc: psutil.Process) -> tuple[float, float]:
        """CPU of a worker's child processes: (history's process, the others: the decision
        solver and multiprocessing's resource tracker)."""
        history = others = 0.0
        for child in proc.children(recursive=True):
            known = self._children.setdefault(child.pid, child)
            try:
                percent = known.cpu_percent(None)  # 0 on the first look at a child
                if known.name() == HISTORY_PROCESS:
                    history += percent
                else:
                    others += percent
            except psutil.Error:
                self._children.pop(child.pid, None)
        return history, others


def _pings_table(labels: dict[str, str]) -> bool:
    return labels.get("table") == "pings"


class Sampler:
    """Samples the run every ``interval_s`` on a thread."""

    def __init__(
        self,
        ports: Callable[[], list[int]],
        lag: KafkaLag,
        groups: list[str],
        offered: Callable[[], tuple[float, float]],
        processes: Processes,
        interval_s: float = 1.0,
    ) -> None:
        self.ports = ports
        self.lag = lag
        self.groups = groups
        self.offered = offered
        self.processes = processes
        self.interval_s = interval_s
        self.counters = Counters()
        self.samples: list[Sample] = []
        self.lag_group = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load-sampler", daemon=True)
        self.t0 = time.monotonic()

    def start(self, t0: float) -> None:
        self.t0 = t0
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            with contextlib.suppress(Exception):
                self.samples.append(self.take())
            self._stop.wait(max(0.0, self.interval_s - (time.monotonic() - started)))

    def refresh(self) -> dict[int, int]:
        """Scrape every live worker; return the ping positions they report now."""
        positions: dict[int, int] = {}
        for port in self.ports():
            try:
                samples = scrape(port)
            except OSError:
                continue
            self.counters.update(port, samples)
            for (name, labels), value in samples.items():
                if name == POSITION:
                    p = int(dict(labels)["partition"])
                    positions[p] = max(positions.get(p, 0), int(value))
        return positions

    def take(self) -> Sample:
        positions = self.refresh()
        c = self.counters
        offered, rate = self.offered()
        lag_msgs, self.lag_group = self.lag.lag(self.groups, positions)
        cpu, rss = self.processes.measure()
        return Sample(
            t=time.monotonic() - self.t0,
            offered=offered,
            processed=sum(c.total(n) for n in PROCESSED),
            accepted=c.total("fleet_pings_accepted_total"),
            rejected=c.total("fleet_pings_rejected_total"),
            lag_msgs=lag_msgs,
            latency=c.buckets(LATENCY, clock="kafka"),
            history_rows=c.total("fleet_history_rows_total", _pings_table),
            history_lag=c.gauge("fleet_history_consumer_lag"),
            cpu=cpu,
            rss_mb=rss,
            rate=rate,
            timer_sum_s=c.total("fleet_stale_timer_seconds_sum"),
            timer_runs=c.total("fleet_stale_timer_seconds_count"),
        )
