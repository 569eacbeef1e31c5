"""`make demo`: a day of a delivery fleet through the real pipeline, told as it happens.

Starts the local services that are not running yet and a `fleet worker` on topics of its own
(prefix ``demo<run>.``, consumer group ``fleet-demo-<run>``); dispatches routes from city
hubs on fleet.routes and drives them in real time (``load_tests.day``): pings with GPS noise,
arrivals, deliveries and failed attempts, detours, silent phones, slow drivers, new orders.
The live summary shows the alerts, re-plans, order assignments and ETAs the pipeline
publishes; at the end the demo writes its report (HTML, PNG fleet map, story.json) and stops
exactly what it started, deleting its topics.

python -m load_tests.demo --drivers 200 --duration 180 --report var/demo-report
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from fleet import secure_profile, services
from fleet.clients import redis_client
from fleet.clock import now_ms
from fleet.live import driver_key
from fleet.security import READER_GROUP
from fleet.settings import PROJECT_ROOT, Settings, get_settings
from fleet.topics import EVENTS, ORDERS, PINGS, ROUTES
from load_tests import day_report
from load_tests.day import Day, DayParams, DaySimulation, demo_worker_env, make_day
from load_tests.day_story import Story, StoryReader
from load_tests.harness import WorkerProcess, free_port, metric_totals, metric_value, scrape
from models.registry import ModelRegistry, registry_root

DRAIN_S = 3.0  # after the day: time for the pipeline's last answers to arrive
DRAIN_MAX_S = 60.0  # ... and at most this long for the orders still waiting for an answer
DEFAULT_REPORT = PROJECT_ROOT / "var" / "demo-report"
ETA_DAYS = 4  # simulated days the demo's ETA model learns from (the last one held out)


@dataclass
class DemoSetup:
    """Who is who in one demo run: the worker's environment, the client identities."""

    env: dict[str, str]  # the worker's environment
    settings: Settings  # topic names, app id, state dir and metrics port of the run
    roles: dict[str, Settings]  # the producer identity of each input topic (secure profile)
    reader: Settings  # the identity reading the outputs and the live read model
    group_prefix: str  # consumer group of the story reader
    own_topics: bool  # created for this run and deleted at its end


def demo_setup(
    base: Settings, run: str, duration_s: float, profile: secure_profile.SecureProfile | None
) -> DemoSetup:
    """Topics and a consumer group of the run's own (plain), or the secure profile's topics
    with one role per part: worker as pipeline, drivers as gateway, plans as planner,
    orders as dispatch, the story and the map as reader (ACLs name the profile's topics)."""
    var = Path(base.var_dir) / "demo"
    metrics_port = base.metrics_port
    if not metrics_port or services.port_open("127.0.0.1", metrics_port):
        metrics_port = free_port()  # another worker has the usual port
    overrides = {
        "FLEET_VAR_DIR": str(var),
        "F_DATADIR": str(var / "faust" / run),  # Faust's data dir, not the checkout root
        "FLEET_METRICS_PORT": str(metrics_port),
        "FLEET_WORKER_WEB_PORT": str(free_port()),
        "FLEET_HISTORY_QUERY_PORT": "0",
        **demo_worker_env(duration_s),
    }
    own = {"var_dir": var, "metrics_port": metrics_port}
    if profile is None:
        names = {"topic_prefix": f"{base.topic_prefix}demo{run}.", "app_id": f"fleet-demo-{run}"}
        overrides |= {"FLEET_TOPIC_PREFIX": names["topic_prefix"], "FLEET_APP_ID": names["app_id"]}
        settings = base.model_copy(update={**own, **names})
        return DemoSetup({**os.environ, **overrides}, settings, {}, settings, "demo-story-", True)
    gateway = profile.settings(base, "gateway")
    roles = {PINGS: gateway, EVENTS: gateway, ROUTES: profile.settings(base, "planner"),
             ORDERS: profile.settings(base, "dispatch")}  # fmt: skip
    env = {**os.environ, **profile.env("pipeline"), **overrides}
    settings = base.model_copy(update=own)
    reader = profile.settings(base, "reader")
    return DemoSetup(env, settings, roles, reader, f"{READER_GROUP}-demo-", False)


def drain(story: Story, orders: list[str]) -> None:
    """Wait for the last answers: every order assigned or alerted (when a decision agent
    answers at all), else until the topics have been quiet for a few seconds."""
    began = time.monotonic()
    time.sleep(DRAIN_S)
    last, quiet_since = story.said, time.monotonic()
    while time.monotonic() - began < DRAIN_MAX_S:
        answered = story.answered_orders()
        if not set(orders) - answered:
            return
        if not answered and time.monotonic() - quiet_since > 8.0:
            return  # nothing answers orders in this pipeline
        time.sleep(0.5)
        if story.said != last:
            last, quiet_since = story.said, time.monotonic()


def ensure_eta_model(env: dict[str, str], settings: Settings, log: Callable[[str], None]) -> str:
    """The promoted ETA model of the demo's registry; trained first when there is none.

    The ETA loop of `make eta` on a few days of simulated history, in the demo's own
    embedded store (never a configured ClickHouse server): about half a minute, once.
    """
    registry = ModelRegistry(registry_root(settings))
    promoted = registry.promoted()
    if promoted is not None:
        return promoted
    log(f"no ETA model promoted in {registry_root(settings)}: training one on {ETA_DAYS} "
        "simulated days of the demo's world (once, about a minute)")  # fmt: skip
    own = {k: v for k, v in env.items() if k != "FLEET_CLICKHOUSE_URL"}
    day0 = datetime(2026, 10, 5, tzinfo=UTC)
    start, train_until, until = (
        (day0 + timedelta(days=n)).date().isoformat() for n in (0, ETA_DAYS - 1, ETA_DAYS)
    )

    def step(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", *args], env=own, cwd=PROJECT_ROOT,
                              text=True, capture_output=True, check=False)  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed:\n{done.stdout}{done.stderr}")
        return done.stdout.strip()

    step("load_tests.day_history", "--days", str(ETA_DAYS), "--start", start)
    version = step("fleet.cli", "eta", "train", "--since", start, "--until", train_until)
    version = version.splitlines()[-1].strip()
    step("fleet.cli", "eta", "evaluate", version, "--since", train_until, "--until", until)
    step("fleet.cli", "eta", "promote", version)
    log(f"ETA model {version} trained and promoted")
    return version


def live_view(
    day: Day, sim: DaySimulation, story: Story, metrics: dict[str, float], elapsed: float
) -> Group:
    """The summary table and the latest alerts and decisions."""
    with sim.lock:
        drivers = list(sim.drivers.values())
        stops = sum(len(d.plan.stops) for d in drivers)
        delivered = sum(v == "delivered" for d in drivers for v in d.done.values())
        failed = sum(v == "failed" for d in drivers for v in d.done.values())
    table = Table(
        title=f"fleet demo: {elapsed:.0f} s of {day.params.duration_s:.0f} s", show_header=False
    )
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("drivers / pings sent", f"{len(drivers)} / {sim.counts.pings}")
    table.add_row(
        "pings accepted / dead letters",
        f"{metrics.get('fleet_pings_accepted_total', 0):.0f} / {sum(story.dead_letters.values())}",
    )
    table.add_row("stops delivered / failed / planned", f"{delivered} / {failed} / {stops}")
    table.add_row("completion", f"{100 * delivered / max(stops, 1):.0f} %")
    opened = story.opened_by_kind()
    table.add_row("alerts opened (open now)", f"{sum(opened.values())} ({story.open_now()})")
    for kind, n in sorted(opened.items()):
        table.add_row(f"  {kind}", str(n))
    causes = story.decisions_by_cause()
    table.add_row("decisions published", str(sum(causes.values())))
    for cause, n in sorted(causes.items()):
        table.add_row(f"  {cause}", str(n))
    assigned = sum(len(d.orders) for d in story.decisions if d.update.cause == "assign")
    table.add_row(
        "orders sent / assigned / unassigned",
        f"{len(sim.counts.orders)} / {assigned} / {opened.get('unassigned_order', 0)}",
    )
    eta = story.eta_summary()
    eta_text = (
        f"{story.eta_updates} updates, {eta['n']:.0f} arrivals: MAE {eta['mae_s']:.1f} s, "
        f"{100 * eta['coverage']:.0f} % in p10-p90"
        if eta["n"]
        else f"{story.eta_updates} updates"
    )
    table.add_row("ETAs", eta_text)
    log = Table(show_header=False, box=None)
    for ms, text in story.recent(16):
        log.add_row(time.strftime("%H:%M:%S", time.gmtime(ms / 1000)), text)
    return Group(table, Panel(log, title="alerts and decisions as they happen"))


def decision_outcomes(port: int) -> dict[str, float]:
    """fleet_decisions_total by "cause/outcome" from the worker's metrics ({} if none)."""
    try:
        samples = scrape(port, timeout=2.0)
    except OSError:
        return {}
    out: dict[str, float] = {}
    for labels, _ in samples.get("fleet_decisions_total", []):
        key = f"{labels.get('cause', '')}/{labels.get('outcome', '')}"
        out[key] = metric_value(samples, "fleet_decisions_total", **labels)
    return out


def fleet_state(sim: DaySimulation, r: redis.Redis) -> day_report.FleetState:
    """Latest plans and outcomes from the simulation, positions from the live read model."""
    with sim.lock:
        drivers = list(sim.drivers.values())
        plans = {d.plan.route_id: d.plan for d in drivers}
        outcomes = {d.plan.route_id: dict(d.done) for d in drivers}
        fallback = {d.driver_id: d.pos for d in drivers}
    pipe = r.pipeline(transaction=False)  # reads only (the reader role may not MULTI)
    for d in drivers:
        pipe.hmget(driver_key(d.driver_id), "lat", "lon", "status")
    positions = {}
    for d, (lat, lon, status) in zip(drivers, pipe.execute(), strict=True):
        if lat is not None and lon is not None:
            positions[d.driver_id] = (float(lat), float(lon), status or "idle")
        else:
            positions[d.driver_id] = (*fallback[d.driver_id], "idle")
    return day_report.FleetState(plans, outcomes, positions)


def write_report(
    report: Path,
    sim: DaySimulation,
    story: Story,
    setup: DemoSetup,
    base: Settings,
    duration_s: float,
    log: Callable[[str], None],
) -> None:
    """The report of the day: the pipeline's answers, the fleet as it ended, the settings."""
    metrics = decision_outcomes(setup.settings.metrics_port)
    state = fleet_state(sim, redis_client(setup.reader, decode_responses=True))
    path = day_report.write(report, sim.day, story, state, sim.counts.orders,
                            sim.counts.unservable, metrics, demo_worker_env(duration_s),
                            base.zone_resolution)  # fmt: skip
    log(f"report: {path}")


def run(
    drivers: int,
    duration_s: float,
    report: Path,
    seed: int = 12,
    eta: bool = True,
    secure: bool = False,
) -> int:
    base = get_settings()
    console = Console()
    log: Callable[[str], None] = console.print
    kind = secure_profile.secure_services(base) if secure else services.services(base)
    started = [s for s in kind if s.status().state == "stopped"]
    profile = secure_profile.up(base, log) if secure else None
    if profile is None:
        services.up(base, log)
    run_id = uuid.uuid4().hex[:6]
    setup = demo_setup(base, run_id, duration_s, profile)
    settings = setup.settings
    if setup.own_topics:
        services.ensure_topics(settings)
    datadir = Path(setup.env["F_DATADIR"])
    datadir.parent.mkdir(parents=True, exist_ok=True)
    worker_log = Path(base.var_dir) / "demo-worker.log"
    worker = WorkerProcess(setup.env, worker_log)
    story = Story()
    reader: StoryReader | None = None
    sim: DaySimulation | None = None
    interrupted = False
    code = 0
    try:
        if eta:
            ensure_eta_model(setup.env, settings, log)
        log(f"starting a worker (log: {worker_log}, metrics on :{settings.metrics_port})")
        worker.start()
        params = DayParams(drivers=drivers, duration_s=duration_s, seed=seed,
                           speed_mps=base.decision_speed_mps)  # fmt: skip
        day = make_day(params, now_ms(), run_id[:4])
        sim = DaySimulation(settings, day, story.arrival, setup.roles)
        reader = StoryReader(setup.reader, story, sim.updates.put, setup.group_prefix,
                             since_ms=day.start_ms - 1_000).start()  # fmt: skip
        sim.publish_plans()
        log(
            f"worker pid {worker.pid}; {drivers} routes dispatched from {len(day.hubs)} hubs; "
            f"the day lasts {duration_s:.0f} s, Ctrl-C ends it early"
        )
        sim.start()
        code = _watch(console, day, sim, story, worker, settings, duration_s)
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted: writing the report of the day so far")
    finally:
        if sim is not None:
            drain(story, [o.order_id for o in sim.counts.orders])  # the drivers drive on
            sim.stop_event.set()
            sim.join(15)
        if reader is not None:
            reader.stop()
        if sim is not None:
            try:
                write_report(report, sim, story, setup, base, duration_s, log)
            except Exception as exc:  # still stop what was started
                log(f"[red]the report could not be written: {exc!r}")
                code = 1
        worker.stop()
        shutil.rmtree(datadir, ignore_errors=True)
        if setup.own_topics:
            prefixes = (settings.topic_prefix, f"{settings.app_id}-")
            services.delete_topics(settings.kafka_bootstrap, prefixes, settings)
        for service in reversed(started):
            service.down(log)
    return 130 if interrupted else code


def _watch(
    console: Console,
    day: Day,
    sim: DaySimulation,
    story: Story,
    worker: WorkerProcess,
    settings: Settings,
    duration_s: float,
) -> int:
    """Refresh the live view until the day and the drain are over; 1 if the worker died."""
    start = time.monotonic()
    interactive = console.is_terminal
    printed = 0
    with (
        Live(console=console, refresh_per_second=2, auto_refresh=False, transient=False)
        if interactive
        else _NoLive() as live
    ):
        while True:
            time.sleep(1.0)
            elapsed = time.monotonic() - start
            if sim.error is not None:
                raise RuntimeError(f"the simulation failed: {sim.error!r}") from sim.error
            if not worker.alive():
                console.print(f"[red]worker exited; see {worker.log}")
                return 1
            metrics = metric_totals(settings.metrics_port)
            view = live_view(day, sim, story, metrics, min(elapsed, duration_s))
            if interactive:
                live.update(view, refresh=True)
            else:  # a log, not a screen: new story lines as they come, a table now and then
                printed, lines = story.since(printed)
                for ms, text in lines:
                    console.print(f"{time.strftime('%H:%M:%S', time.gmtime(ms / 1000))} {text}")
                if int(elapsed) % 30 == 0:
                    console.print(view)
            if elapsed >= duration_s:
                break
    if not interactive:
        console.print(live_view(day, sim, story, metric_totals(settings.metrics_port), duration_s))
    return 0


class _NoLive:
    """Stands in for rich's Live when the output is not a terminal."""

    def __enter__(self) -> _NoLive:
        return self

    def __exit__(self, *_: object) -> None:
        return None

    def update(self, *_: object, **__: object) -> None:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--drivers", type=int, default=200)
    parser.add_argument("--duration", type=float, default=180.0, help="seconds of the day")
    parser.add_argument(
        "--report",
        type=Path,
        default=DEFAULT_REPORT,
        help="directory of the report (default var/demo-report)",
    )
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument(
        "--secure",
        action="store_true",
        help="SASL_SSL, ACLs, TLS Redis, one role per part (docs/security.md)",
    )
    parser.add_argument(
        "--no-eta-training",
        action="store_true",
        help="do not train an ETA model when none is promoted (no ETAs then)",
    )
    args = parser.parse_args()
    if args.drivers < 1 or args.duration < 20:
        parser.error("--drivers must be >= 1 and --duration >= 20")
    sys.exit(
        run(
            args.drivers,
            args.duration,
            args.report,
            args.seed,
            not args.no_eta_training,
            args.secure,
        )
    )


if __name__ == "__main__":
    main()
