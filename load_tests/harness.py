"""Starting `fleet worker` processes, free ports and metric scraping, for tests and benchmarks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from fleet.settings import PROJECT_ROOT

READY_MARK = b"[^Worker]: Ready"
Samples = dict[str, list[tuple[dict[str, str], float]]]


_GIVEN_PORTS: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now, never one this process was given before.

    The kernel may hand the same ephemeral port to two binds in a row once the first socket is
    closed, so two calls in a row (a metrics port and a web port) could collide without the
    memory of ports already given.
    """
    for _ in range(100):
        with socket.socket() as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        if port not in _GIVEN_PORTS:
            _GIVEN_PORTS.add(port)
            return port
    raise OSError("no free TCP port that was not already handed out")


def scrape(port: int, host: str = "127.0.0.1", timeout: float = 2.0) -> Samples:
    """Every sample of a /metrics endpoint by name (raises OSError if it does not answer)."""
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=timeout) as resp:
        text = resp.read().decode()
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def metric_value(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels`` (0 if none)."""
    return sum(
        value
        for sample_labels, value in samples.get(name, [])
        if all(sample_labels.get(k) == v for k, v in labels.items())
    )


def metric_totals(port: int) -> dict[str, float]:
    """Each counter's and histogram count's samples summed ({} if the endpoint is down)."""
    try:
        samples = scrape(port, timeout=1.0)
    except OSError:
        return {}
    return {
        name: sum(v for _, v in rows)
        for name, rows in samples.items()
        if name.endswith(("_total", "_count"))
    }


class WorkerProcess:
    """A `fleet worker` subprocess in its own session (so a kill takes its children too).

    ``start`` waits until the worker is ready: the "Ready" log line at ``info`` level or
    below, else (quieter levels print no such line) ``fleet_worker_ready`` 1 on /metrics.
    """

    def __init__(
        self, env: dict[str, str], log: Path, loglevel: str = "info", ready_s: float = 120.0
    ) -> None:
        self.env, self.log, self.loglevel, self.ready_s = env, log, loglevel, ready_s
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self) -> WorkerProcess:
        offset = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "fleet.cli", "worker", "-l", self.loglevel],
                env=self.env, cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + self.ready_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited {self.proc.returncode}:\n{self.tail()}")
            if self._ready(offset):
                return self
            time.sleep(0.25)
        raise RuntimeError(f"worker not ready after {self.ready_s} s:\n{self.tail()}")

    def _ready(self, offset: int) -> bool:
        if self.loglevel.lower() in ("debug", "info"):
            with open(self.log, "rb") as f:
                f.seek(offset)
                return READY_MARK in f.read()
        try:
            samples = scrape(int(self.env["FLEET_METRICS_PORT"]), timeout=1.0)
        except OSError:
            return False
        return metric_value(samples, "fleet_worker_ready") == 1

    def tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown, no commit (a crash)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM and wait for a clean shutdown (SIGKILL after ``timeout``)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self) -> WorkerProcess:
        self.stop()
        return self.start()

    def ensure_alive(self) -> None:
        """Start the worker again (from its changelogs) if something stopped it."""
        if not self.alive():
            self.restarts += 1
            code = self.proc.returncode if self.proc is not None else None
            print(f"worker exited ({code}); restarting")
            self.start()
