"""Runs one load scenario against the real stack and returns its measurements.

A run gets its own topics (prefix), consumer groups, history store (var dir) and workers;
Kafka and Redis are the shared services (or, for the broker fault, a throwaway broker of the
run's own). Steps: start workers, publish plans and shift starts, send the scenario's
traffic with its faults while sampling once a second, let the pipeline drain, check that
nothing valid was lost (history and Redis against the generator's ledger), clean up.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import redis

from fleet import services
from fleet.errors import ConfigError
from fleet.history.access import open_reader
from fleet.history.errors import HistoryError
from fleet.live import driver_key
from fleet.settings import PROJECT_ROOT, Settings
from fleet.topics import PINGS, ROUTES, topic_name
from load_tests.load.config import Fault, Scenario, Slo
from load_tests.load.outputs import OutputReader, Outputs
from load_tests.load.probe import KafkaLag, Processes, Sample, Sampler
from load_tests.load.traffic import Ledger, Traffic
from load_tests.load.verdict import step_held
from load_tests.load.workers import Worker, create_changelogs, wait_group

TICK_S = 0.02
OWN_BROKER_PORT = 19092
# Consumer groups that may commit fleet.pings offsets: Faust's (the app id) and a batch ping
# consumer's own group; the probe follows whichever commits.
PING_GROUP_SUFFIXES = ("", "-pings")


@dataclass
class Verification:
    """The no-loss check against the generator's ledger."""

    expected_pings: int = 0
    history_pings: int = 0
    history_missing_drivers: int = 0
    redis_checked: int = 0
    redis_stale: int = 0  # drivers whose live ts_ms is not their newest valid ping's
    examples: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def lost(self) -> int:
        return max(0, self.expected_pings - self.history_pings)

    @property
    def ok(self) -> bool:
        return not self.error and self.lost == 0 and self.redis_stale == 0


@dataclass
class FaultLog:
    """A fault as it happened: when it started and when the stack was whole again."""

    action: str
    started_s: float
    ended_s: float | None = None
    note: str = ""


@dataclass
class RunResult:
    """Everything a report needs."""

    scenario: Scenario
    run_id: str
    workers: int
    started_utc: str
    samples: list[Sample]
    outputs: Outputs
    ledger: Ledger
    verification: Verification
    faults: list[FaultLog]
    send_s: float
    drain_s: float
    lag_group: str
    machine: dict[str, float]
    stopped_early_at_s: float | None = None
    plans_note: str = ""
    ping_consumer: str = ""


class RunEnv:
    """The isolated environment of one run."""

    def __init__(self, scenario: Scenario, base: Settings, workers: int) -> None:
        self.run_id = uuid.uuid4().hex[:8]
        self.dir = PROJECT_ROOT / "var" / "load" / f"{scenario.name}-{self.run_id}"
        self.dir.mkdir(parents=True, exist_ok=True)
        bootstrap = base.kafka_bootstrap
        if scenario.own_broker:
            bootstrap = f"127.0.0.1:{OWN_BROKER_PORT}"
        self.settings = Settings(
            topic_prefix=f"ld{self.run_id}.",
            app_id=f"load-{self.run_id}",
            var_dir=self.dir,
            partitions=scenario.partitions,
            kafka_bootstrap=bootstrap,
            redis_url=base.redis_url,
        )
        self.env = {
            **os.environ,
            "FLEET_TOPIC_PREFIX": self.settings.topic_prefix,
            "FLEET_APP_ID": self.settings.app_id,
            "FLEET_VAR_DIR": str(self.dir),
            "FLEET_PARTITIONS": str(scenario.partitions),
            "FLEET_KAFKA_BOOTSTRAP": bootstrap,
            "FLEET_REDIS_URL": base.redis_url,
            "FLEET_HISTORY_QUERY_PORT": "0",
        }
        self.workers = [
            Worker(f"worker-{i + 1}", self.env, self.dir / f"worker-{i + 1}.log")
            for i in range(workers)
        ]
        self.broker: services.Kafka | None = None
        if scenario.own_broker:
            self.broker = services.Kafka(self.settings)
            libs = self.dir / "kafka-libs"
            if not libs.exists():
                libs.symlink_to(base.var_dir / "kafka-libs")

    def topic(self, base: str) -> str:
        return topic_name(self.settings, base)

    def groups(self) -> list[str]:
        return [f"{self.settings.app_id}{s}" for s in PING_GROUP_SUFFIXES]


def redis_db(url: str) -> int:
    path = urlparse(url).path.strip("/")
    return int(path) if path.isdigit() else 0


def check_faults(scenario: Scenario, settings: Settings) -> None:
    """Refuse faults that would hurt other users of the shared services."""
    for fault in scenario.faults:
        if fault.action == "flush_redis" and redis_db(settings.redis_url) == 0:
            raise ConfigError(
                "the flush_redis fault runs FLUSHDB: point FLEET_REDIS_URL at a Redis DB of "
                "your own (not 0), e.g. redis://127.0.0.1:6379/8"
            )
        if fault.action == "stop_broker" and not scenario.own_broker:
            raise ConfigError("the stop_broker fault needs own_broker = true (not the shared one)")


class Run:
    """One scenario run with a given number of workers."""

    def __init__(
        self,
        scenario: Scenario,
        base: Settings,
        workers: int,
        slo: Slo,
        on_progress: Callable[[float, Sample | None, str], None] = lambda *_: None,
    ) -> None:
        check_faults(scenario, base)
        self.slo = slo
        self.scenario = scenario
        self.base = base
        self.env = RunEnv(scenario, base, workers)
        self.on_progress = on_progress
        self.processes = Processes()
        self.faults: list[FaultLog] = []
        self.pending: list[tuple[float, str, Fault]] = sorted(
            ((f.at_s, "begin", f) for f in scenario.faults), key=lambda x: x[0]
        )
        self.killed: list[Worker] = []
        self.restoring: list[threading.Thread] = []
        self.stopped_early: float | None = None
        self.plans_note = ""

    # --- set-up and tear-down ------------------------------------------------------------
    def _start_stack(self) -> None:
        env = self.env
        if env.broker is not None:
            env.broker.up(lambda _m: None)
        services.ensure_topics(env.settings)
        create_changelogs(env.env, env.settings.kafka_bootstrap, self.scenario.partitions)
        for w in env.workers:  # one by one: each waits until it is ready
            w.start()
            self.processes.watch(w.name, w.pid)
        wait_group(env.settings.kafka_bootstrap, env.settings.app_id, len(env.workers))
        self._watch_services()

    def _watch_services(self) -> None:
        self.processes.watch("load generator", os.getpid())
        self.processes.watch("kafka", services.Kafka(self.base).pid())
        self.processes.watch("redis", services.Redis(self.base).pid())
        if self.env.broker is not None:
            self.processes.watch("kafka (run's own)", self.env.broker.pid())

    def _tear_down(self) -> None:
        env = self.env
        for w in env.workers:
            w.stop()
        services.delete_topics(
            env.settings.kafka_bootstrap, (env.settings.topic_prefix, f"{env.settings.app_id}")
        )
        if env.broker is not None:
            env.broker.down(lambda _m: None)

    # --- faults --------------------------------------------------------------------------
    def _due_faults(self, elapsed: float) -> None:
        while self.pending and self.pending[0][0] <= elapsed:
            _at, phase, fault = self.pending.pop(0)
            if phase == "begin":
                self._begin(fault, elapsed)
            else:
                self._end(fault, elapsed)

    def _schedule_end(self, fault: Fault, elapsed: float) -> None:
        if fault.restart_after_s is not None:
            self.pending.append((elapsed + fault.restart_after_s, "end", fault))
            self.pending.sort(key=lambda x: x[0])

    def _begin(self, fault: Fault, elapsed: float) -> None:
        env = self.env
        log = FaultLog(fault.action, elapsed)
        self.faults.append(log)
        if fault.action == "kill_worker":
            alive = [w for w in env.workers if w.alive()]
            if len(alive) < 2 and fault.restart_after_s is None:
                log.note = "skipped: the only worker would stay down"
                log.ended_s = elapsed
                return
            victim = alive[-1]
            victim.kill()
            self.processes.watch(victim.name, None)
            self.killed.append(victim)
            log.note = f"SIGKILL {victim.name}"
            if fault.restart_after_s is None:
                log.ended_s = elapsed  # the survivors take over: recovery counts from now
            self._schedule_end(fault, elapsed)
        elif fault.action == "flush_redis":
            redis.Redis.from_url(self.base.redis_url).flushdb()
            log.note = f"FLUSHDB on Redis DB {redis_db(self.base.redis_url)}"
            log.ended_s = elapsed
        elif fault.action == "stop_broker":
            assert env.broker is not None
            env.broker.down(lambda _m: None)
            log.note = f"broker on port {OWN_BROKER_PORT} stopped"
            self._schedule_end(fault, elapsed)

    def _end(self, fault: Fault, elapsed: float) -> None:
        """Bring back what the fault took down, on a thread (traffic keeps flowing)."""
        log = next(f for f in reversed(self.faults) if f.action == fault.action)
        started = time.monotonic() - elapsed

        def restore() -> None:
            if fault.action == "kill_worker" and self.killed:
                victim = self.killed.pop()
                victim.start()  # returns once it is ready again
                self.processes.watch(victim.name, victim.pid)
                log.note += f"; restarted after {fault.restart_after_s:.0f} s"
            elif fault.action == "stop_broker" and self.env.broker is not None:
                self.env.broker.up(lambda _m: None)
                self.processes.watch("kafka (run's own)", self.env.broker.pid())
                log.note += f"; started again after {fault.restart_after_s:.0f} s"
            log.ended_s = time.monotonic() - started

        thread = threading.Thread(target=restore, name=f"restore-{fault.action}", daemon=True)
        thread.start()
        self.restoring.append(thread)

    # --- the run -------------------------------------------------------------------------
    def execute(self) -> RunResult:
        started_utc = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        try:
            self.on_progress(0.0, None, "starting workers")
            self._start_stack()
            return self._run(started_utc)
        finally:
            self._tear_down()

    def _run(self, started_utc: str) -> RunResult:
        sc = self.scenario
        env = self.env
        traffic = Traffic(sc, env.settings.kafka_bootstrap, env.topic, env.run_id)
        self.on_progress(0.0, None, "publishing plans")
        traffic.publish_plans()
        plans_started = time.monotonic()
        plans_done = self._wait_consumed(env.topic(ROUTES), sc.plans_timeout_s)
        self.plans_note = (
            f"{traffic.ledger.plans:,} plans consumed in {time.monotonic() - plans_started:.0f} s"
            if plans_done
            else f"plans still being consumed after {sc.plans_timeout_s:.0f} s: pings started"
        )
        lag = KafkaLag(env.settings.kafka_bootstrap, env.topic(PINGS), sc.partitions)
        outputs = OutputReader(env.settings.kafka_bootstrap, env.topic, traffic.ledger.sent_wall_ms)
        outputs.start()
        ledger = traffic.ledger

        def offered() -> tuple[float, float]:
            return (ledger.valid_pings - ledger.queued + ledger.duplicates + ledger.invalid,
                    sc.rate_at(time.monotonic() - traffic.started))  # fmt: skip

        sampler = Sampler(
            lambda: [w.metrics_port for w in env.workers if w.alive()],
            lag, env.groups(), offered, self.processes,
        )  # fmt: skip
        try:
            traffic.start()
            sampler.start(traffic.started)
            send_s = self._send(traffic, sampler)
            traffic.finish()
            for thread in self.restoring:
                thread.join(180)
            drain_started = time.monotonic()
            self.on_progress(send_s, sampler.samples[-1] if sampler.samples else None, "draining")
            verification = self._drain(traffic, sampler)
            drain_s = time.monotonic() - drain_started
            time.sleep(2)  # last outputs
        finally:
            sampler.stop()
            outputs.stop()
            lag.close()
        return RunResult(
            scenario=sc, run_id=env.run_id, workers=len(env.workers), started_utc=started_utc,
            samples=sampler.samples, outputs=outputs.outputs, ledger=ledger,
            verification=verification, faults=self.faults, send_s=send_s, drain_s=drain_s,
            lag_group=sampler.lag_group, machine=_machine(), stopped_early_at_s=self.stopped_early,
            plans_note=self.plans_note, ping_consumer=self.base.ping_consumer,
        )  # fmt: skip

    def _send(self, traffic: Traffic, sampler: Sampler) -> float:
        sc = self.scenario
        next_tick = time.monotonic()
        last_progress = 0.0
        step_checked = 0
        while True:
            elapsed = traffic.tick()
            if elapsed >= sc.total_s:
                return elapsed
            self._due_faults(elapsed)
            if sc.steps_pings_per_s and sampler.samples:
                step = int(elapsed // sc.step_s)
                if step > step_checked:
                    step_checked = step
                    if not step_held(sc, self.slo, sampler.samples, step - 1).held:
                        self.stopped_early = elapsed
                        return elapsed
            if elapsed - last_progress >= 0.5:
                last_progress = elapsed
                self.on_progress(elapsed, sampler.samples[-1] if sampler.samples else None, "")
            next_tick += TICK_S
            delay = next_tick - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                next_tick = time.monotonic()

    def _wait_consumed(self, topic: str, timeout_s: float) -> bool:
        """Until the app's group has committed everything on ``topic`` (e.g. the plans)."""
        env = self.env
        probe = KafkaLag(env.settings.kafka_bootstrap, topic, self.scenario.partitions)
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                behind, group = probe.lag([env.settings.app_id], {})
                if group and behind == 0:
                    return True
                time.sleep(1)
        finally:
            probe.close()
        return False

    def _drain(self, traffic: Traffic, sampler: Sampler) -> Verification:
        """Until every ping is processed and history has caught up, then check for loss
        (again until the drain timeout while history is still landing)."""
        ledger = traffic.ledger
        deadline = time.monotonic() + self.scenario.drain_timeout_s
        while time.monotonic() < deadline:
            time.sleep(1)
            s = sampler.samples[-1] if sampler.samples else None
            self.on_progress(time.monotonic() - traffic.started, s, "draining")
            if s is not None and s.lag_msgs == 0 and s.history_lag == 0:
                break
        while True:
            verification = self._verify(ledger)
            if verification.ok or time.monotonic() >= deadline:
                return verification
            self.on_progress(time.monotonic() - traffic.started, None, "waiting for history")
            time.sleep(3)

    def _verify(self, ledger: Ledger) -> Verification:
        """History holds every valid ping once; Redis holds every driver's newest ping."""
        v = Verification(expected_pings=ledger.valid_pings)
        try:
            v.history_pings = self._history_counts(ledger, v)
        except (HistoryError, OSError) as exc:
            v.error = f"history not readable: {exc}"
        client = redis.Redis.from_url(self.base.redis_url)
        drivers = list(ledger.last_ts)
        for i in range(0, len(drivers), 2000):
            chunk = drivers[i : i + 2000]
            pipe = client.pipeline(transaction=False)
            for d in chunk:
                pipe.hget(driver_key(d), "ts_ms")
            for d, got in zip(chunk, pipe.execute(), strict=True):
                v.redis_checked += 1
                if got is None or int(got) != ledger.last_ts[d]:
                    v.redis_stale += 1
                    if len(v.examples) < 5:
                        v.examples.append(f"{d}: Redis ts_ms={got!r}, sent {ledger.last_ts[d]}")
        return v

    def _history_counts(self, ledger: Ledger, v: Verification) -> int:
        reader = open_reader(self.env.settings)
        try:
            raw = reader.query(
                "SELECT driver_id, uniqExact(ts_ms, seq) AS n FROM fleet.pings GROUP BY driver_id",
                "JSONEachRow",
            )
        finally:
            reader.close()
        stored = {}
        for line in raw.splitlines():
            row = json.loads(line)
            stored[row["driver_id"]] = int(row["n"])
        total = 0
        for driver, sent in ledger.seq.items():
            got = stored.get(driver, 0)
            total += min(got, sent)
            if got < sent:
                v.history_missing_drivers += 1
                if len(v.examples) < 5:
                    v.examples.append(f"{driver}: history has {got} of {sent} valid pings")
        return total


def _machine() -> dict[str, float]:
    import psutil

    load1, load5, _ = os.getloadavg()
    return {"cpus": float(psutil.cpu_count() or 0), "load1": load1, "load5": load5}


def report_dir(name: str) -> Path:
    """load_tests/reports/<scenario>-<UTC timestamp>/"""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return PROJECT_ROOT / "load_tests" / "reports" / f"{name}-{stamp}"
