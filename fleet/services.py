"""Starts, stops and reports the real local services: Kafka (KRaft), Redis, Mosquitto,
Prometheus.

Each service runs natively from this checkout: its data, logs and PID file live under
``<var_dir>/<service>/``. ``up`` is idempotent, ``down`` stops exactly what ``up`` started
(by PID file), and a service already listening on its port that we did not start is
reported as ``external`` and left alone.
"""

from __future__ import annotations

import base64
import contextlib
import os
import pwd
import resource
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from fleet.clients import confluent_config
from fleet.errors import ServiceUnavailable
from fleet.settings import PROJECT_ROOT, Settings
from fleet.topics import topic_specs

KAFKA_POM = PROJECT_ROOT / "infra" / "kafka" / "pom.xml"
PROMETHEUS_CONFIG = PROJECT_ROOT / "infra" / "prometheus" / "prometheus.yml"
PROMETHEUS_PORT = 9090


@dataclass(frozen=True)
class ServiceStatus:
    """What one service is doing now."""

    name: str
    state: str  # running (ours), external (not ours), stopped
    address: str
    pid: int | None = None
    rss_mb: float | None = None

    def line(self) -> str:
        extra = f" pid={self.pid}" if self.pid else ""
        rss = f" rss={self.rss_mb:.0f}MiB" if self.rss_mb else ""
        return f"{self.name:<11}{self.state:<9}{self.address}{extra}{rss}"


def _host_port(address: str, default_port: int) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return (host or "127.0.0.1", int(port or default_port))


def kafka_address(settings: Settings) -> tuple[str, int]:
    return _host_port(settings.kafka_bootstrap.split(",")[0], 9092)


def redis_address(settings: Settings) -> tuple[str, int]:
    url = urlparse(settings.redis_url)
    return (url.hostname or "127.0.0.1", url.port or 6379)


def port_open(host: str, port: int, timeout: float = 0.3) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped) counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return True


def _rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class _Service:
    """A native process with a PID file under var/<name>/."""

    name = ""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.home = Path(settings.var_dir) / self.name
        self.pidfile = self.home / f"{self.name}.pid"
        self.logfile = self.home / f"{self.name}.log"

    # --- overridden -------------------------------------------------------------------------
    def address(self) -> tuple[str, int]:
        raise NotImplementedError

    def command(self) -> list[str]:
        raise NotImplementedError

    def prepare(self) -> None:
        """Write configs, fetch binaries; runs before the first start."""

    def ready(self) -> bool:
        host, port = self.address()
        return port_open(host, port)

    def after_ready(self) -> None:
        """Provisioning once the service answers (e.g. topics)."""

    startup_timeout_s = 60.0

    # --- common -----------------------------------------------------------------------------
    def pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _pid_alive(pid) else None

    def status(self) -> ServiceStatus:
        host, port = self.address()
        addr = f"{host}:{port}"
        pid = self.pid()
        if pid is not None:
            return ServiceStatus(self.name, "running", addr, pid, _rss_mb(pid))
        if port_open(host, port):
            return ServiceStatus(self.name, "external", addr)
        return ServiceStatus(self.name, "stopped", addr)

    def up(self, log: Callable[[str], None]) -> float:
        """Start unless running; return seconds to readiness (0 when it already ran)."""
        host, port = self.address()
        if self.pid() is None and port_open(host, port):
            log(f"{self.name}: something already listens on {host}:{port}; using it as is")
            self._wait_ready(time.monotonic())
            self.after_ready()
            return 0.0
        if self.pid() is not None:
            self._wait_ready(time.monotonic())
            self.after_ready()
            return 0.0
        self.home.mkdir(parents=True, exist_ok=True)
        self.prepare()
        t0 = time.monotonic()
        with open(self.logfile, "ab") as out:
            proc = subprocess.Popen(
                self.command(),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.home,
                start_new_session=True,  # survives the CLI; stopped by PID file
                preexec_fn=_raise_open_files_limit,
            )
        self.pidfile.write_text(str(proc.pid))
        self._wait_ready(t0, proc)
        elapsed = time.monotonic() - t0
        log(f"{self.name}: up on {host}:{port} in {elapsed:.1f} s (pid {proc.pid})")
        self.after_ready()
        return elapsed

    def _wait_ready(self, t0: float, proc: subprocess.Popen[bytes] | None = None) -> None:
        while time.monotonic() - t0 < self.startup_timeout_s:
            if proc is not None and proc.poll() is not None:
                tail = self.logfile.read_text(errors="replace")[-2000:]
                raise ServiceUnavailable(f"{self.name} exited with {proc.returncode}:\n{tail}")
            if self.ready():
                return
            time.sleep(0.2)
        raise ServiceUnavailable(
            f"{self.name} not ready after {self.startup_timeout_s:.0f} s; see {self.logfile}"
        )

    def down(self, log: Callable[[str], None]) -> None:
        pid = self.pid()
        if pid is None:
            self.pidfile.unlink(missing_ok=True)
            return
        os.killpg(pid, signal.SIGTERM) if _is_group_leader(pid) else os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
        self.pidfile.unlink(missing_ok=True)
        log(f"{self.name}: stopped (pid {pid})")


def _raise_open_files_limit() -> None:
    """A broker keeps a few files open per partition segment: lift the soft limit to the hard."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _is_group_leader(pid: int) -> bool:
    try:
        return os.getpgid(pid) == pid
    except ProcessLookupError:
        return False


class Kafka(_Service):
    """Single-node Kafka in KRaft mode (broker + controller), jars from Maven Central."""

    name = "kafka"
    startup_timeout_s = 90.0

    @property
    def libs(self) -> Path:
        return Path(self.settings.var_dir) / "kafka-libs"

    def address(self) -> tuple[str, int]:
        return kafka_address(self.settings)

    def ensure_jars(self, log: Callable[[str], None]) -> None:
        if any(self.libs.glob("kafka_2.13-*.jar")):
            return
        if shutil.which("mvn") is None:
            raise ServiceUnavailable("Maven (mvn) is needed once to fetch the Kafka jars")
        log(f"kafka: fetching jars from Maven Central into {self.libs}")
        subprocess.run(
            ["mvn", "-q", "-B", "-f", str(KAFKA_POM), "dependency:copy-dependencies",
             f"-DoutputDirectory={self.libs}", "-DincludeScope=runtime"],
            check=True,
        )  # fmt: skip

    def prepare(self) -> None:
        self.ensure_jars(print)
        host, port = self.address()
        data = self.home / "data"
        props = self.home / "server.properties"
        props.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@{host}:{port + 1}",
                    "controller.listener.names=CONTROLLER",
                    *self.listener_properties(host, port),
                    f"log.dirs={data}",
                    f"num.partitions={self.settings.partitions}",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=12",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "share.coordinator.state.topic.replication.factor=1",
                    "group.initial.rebalance.delay.ms=0",
                    "auto.create.topics.enable=true",
                    "log.retention.hours=48",
                    "",
                ]
            )
        )
        (self.home / "log4j2.properties").write_text(
            "status = warn\n"
            "appender.file.type = File\nappender.file.name = file\n"
            f"appender.file.fileName = {self.home / 'server.log'}\n"
            "appender.file.layout.type = PatternLayout\n"
            "appender.file.layout.pattern = [%d] %p %m (%c)%n\n"
            "rootLogger.level = info\nrootLogger.appenderRef.file.ref = file\n"
        )
        if not (data / "meta.properties").exists():
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            subprocess.run(
                # --cluster-id=...: an id that starts with '-' (1 in 64) is not read as an option
                [*self._java(), "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}",
                 "-c", str(props), "--standalone", *self.format_options()],
                check=True, stdout=subprocess.DEVNULL,
            )  # fmt: skip

    def listener_properties(self, host: str, port: int) -> list[str]:
        """The listeners: PLAINTEXT for clients, the controller on the next port."""
        return [
            f"listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{port + 1}",
            f"advertised.listeners=PLAINTEXT://{host}:{port}",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name=PLAINTEXT",
        ]

    def format_options(self) -> list[str]:
        """Extra options of the storage format (the secure broker's SCRAM users)."""
        return []

    def _java(self) -> list[str]:
        classpath = ":".join(str(p) for p in sorted(self.libs.glob("*.jar")))
        return [
            "java",
            "-Xms256m",
            "-Xmx1g",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.home / 'log4j2.properties'}",
            "-cp",
            classpath,
        ]

    def command(self) -> list[str]:
        return [*self._java(), "kafka.Kafka", str(self.home / "server.properties")]

    def ready(self) -> bool:
        host, port = self.address()
        if not port_open(host, port):
            return False
        from confluent_kafka.admin import AdminClient

        admin = AdminClient(confluent_config(self.settings, {"log_level": 0}))
        try:
            return bool(admin.list_topics(timeout=2).brokers)
        except Exception:
            return False

    def after_ready(self) -> None:
        ensure_topics(self.settings)


class Redis(_Service):
    """Debian's redis-server, without persistence (Redis is a read model, rebuilt)."""

    name = "redis"

    def address(self) -> tuple[str, int]:
        return redis_address(self.settings)

    def command(self) -> list[str]:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServiceUnavailable("redis-server missing: run `make setup` (apt-get install)")
        host, port = self.address()
        return [binary, "--bind", host, "--port", str(port), "--save", "", "--appendonly", "no",
                "--dir", str(self.home), "--daemonize", "no"]  # fmt: skip


class Prometheus(_Service):
    """Debian's prometheus, scraping the worker's metrics endpoint."""

    name = "prometheus"

    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", PROMETHEUS_PORT)

    def command(self) -> list[str]:
        binary = shutil.which("prometheus")
        if binary is None:
            raise ServiceUnavailable("prometheus missing: run `make setup` (apt-get install)")
        return [binary, f"--config.file={PROMETHEUS_CONFIG}",
                f"--storage.tsdb.path={self.home / 'data'}",
                f"--web.listen-address=127.0.0.1:{PROMETHEUS_PORT}"]  # fmt: skip


def mqtt_address(settings: Settings) -> tuple[str, int]:
    url = urlparse(settings.mqtt_url)
    return (url.hostname or "127.0.0.1", url.port or 1883)


class Mosquitto(_Service):
    """Debian's mosquitto: the driver gateway's MQTT broker, loopback only, sessions and
    retained route updates persisted under var/mosquitto/."""

    name = "mosquitto"

    def address(self) -> tuple[str, int]:
        return mqtt_address(self.settings)

    def prepare(self) -> None:
        host, port = self.address()
        data = self.home / "data"
        data.mkdir(parents=True, exist_ok=True)
        access = ["allow_anonymous true"]
        auth = self.settings.mqtt_auth_dir  # per-device passwords and ACLs (fleet devices)
        if auth is not None:
            from fleet.devices_cli import sync_mosquitto

            sync_mosquitto(self.settings)
            access = ["allow_anonymous false", f"password_file {auth / 'passwords'}",
                      f"acl_file {auth / 'acl'}"]  # fmt: skip
        (self.home / "mosquitto.conf").write_text(
            "\n".join(
                [
                    f"listener {port} {host}",
                    *access,
                    "persistence true",
                    f"persistence_location {data}/",
                    "autosave_interval 30",
                    # The gateway acknowledges after Kafka: let enough QoS 1 messages be in flight.
                    "max_inflight_messages 200",
                    "max_queued_messages 100000",
                    f"user {pwd.getpwuid(os.getuid()).pw_name}",  # root keeps access to var/
                    "log_dest stdout",
                    "log_type error",
                    "log_type warning",
                    "log_type notice",
                    "",
                ]
            )
        )

    def command(self) -> list[str]:
        binary = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/sbin")
        if binary is None:
            raise ServiceUnavailable("mosquitto missing: run `make setup` (apt-get install)")
        return [binary, "-c", str(self.home / "mosquitto.conf")]


def services(settings: Settings, with_prometheus: bool | None = None) -> list[_Service]:
    """The services `fleet infra` manages; Prometheus only where its binary is installed."""
    found: list[_Service] = [Kafka(settings), Redis(settings), Mosquitto(settings)]
    if with_prometheus or (with_prometheus is None and shutil.which("prometheus")):
        found.append(Prometheus(settings))
    return found


def up(settings: Settings, log: Callable[[str], None] = print, **kw: bool | None) -> None:
    """Start every service that is not running yet and wait until each is ready."""
    for service in services(settings, **kw):
        service.up(log)


def down(settings: Settings, log: Callable[[str], None] = print) -> None:
    """Stop exactly the services `up` started (by PID file)."""
    for service in reversed(services(settings, with_prometheus=True)):
        service.down(log)


def status(settings: Settings) -> list[ServiceStatus]:
    return [s.status() for s in services(settings, with_prometheus=True)]


def ensure_topics(settings: Settings) -> None:
    """Create the contract topics (idempotent)."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(confluent_config(settings, {"log_level": 0}))
    existing = set(admin.list_topics(timeout=10).topics)
    new = [
        NewTopic(
            spec.name,
            num_partitions=spec.partitions,
            replication_factor=1,
            config={"cleanup.policy": "compact"} if spec.compacted else {},
        )
        for spec in topic_specs(settings)
        if spec.name not in existing
    ]
    if not new:
        return
    for name, future in admin.create_topics(new, operation_timeout=30).items():
        try:
            future.result()
        except Exception as exc:  # a concurrent creator is fine
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise ServiceUnavailable(f"cannot create topic {name}: {exc}") from exc


def delete_topics(
    bootstrap: str, prefixes: tuple[str, ...], settings: Settings | None = None
) -> list[str]:
    """Delete every topic whose name starts with one of the prefixes (a test or benchmark
    run's topics and its consumer group's changelogs); return the names. ``settings``, when
    given, supplies the credentials (with ``bootstrap`` as the address)."""
    from confluent_kafka.admin import AdminClient

    base = settings or Settings(kafka_bootstrap=bootstrap)
    config = confluent_config(base, {"bootstrap.servers": bootstrap, "log_level": 0})
    admin = AdminClient(config)
    names = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefixes)]
    if names:
        for future in admin.delete_topics(names, operation_timeout=30).values():
            with contextlib.suppress(Exception):  # already gone, or a concurrent run's
                future.result()
    return names
