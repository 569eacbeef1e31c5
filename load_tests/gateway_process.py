"""A `fleet gateway` subprocess and a throwaway Kafka broker, for gateway tests and benchmarks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from fleet import services
from fleet.settings import PROJECT_ROOT, Settings

CAUGHT_UP_MARK = b"route feed caught up"


class GatewayProcess:
    """`fleet gateway` in its own session; ``start`` waits for /healthz and the route feed."""

    def __init__(self, env: dict[str, str], log: Path, ready_s: float = 60.0) -> None:
        self.env, self.log, self.ready_s = env, log, ready_s
        self.url = env["FLEET_GATEWAY_URL"].rstrip("/")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> GatewayProcess:
        offset = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "fleet.cli", "gateway", "-l", "info"],
                env=self.env, cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + self.ready_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited {self.proc.returncode}:\n{self.tail()}")
            if self._caught_up(offset) and self.health() is not None:
                return self
            time.sleep(0.2)
        raise RuntimeError(f"gateway not ready after {self.ready_s} s:\n{self.tail()}")

    def _caught_up(self, offset: int) -> bool:
        with open(self.log, "rb") as f:
            f.seek(offset)
            return CAUGHT_UP_MARK in f.read()

    def health(self) -> dict[str, object] | None:
        """The /healthz answer (whatever its status), or None when nothing answers."""
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as resp:
                return dict(json.loads(resp.read()))
        except urllib.error.HTTPError as exc:
            return dict(json.loads(exc.read()))
        except OSError:
            return None

    def tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM and wait (SIGKILL after ``timeout``)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


def throwaway_kafka(var_dir: Path, port: int, base: Settings) -> services.Kafka:
    """A single-node broker of its own under ``var_dir`` on ``port`` (controller ``port+1``),
    sharing the jar cache of ``base``; start and stop it with ``up``/``down``."""
    var_dir.mkdir(parents=True, exist_ok=True)
    libs = var_dir / "kafka-libs"
    if not libs.exists():
        libs.symlink_to(Path(base.var_dir) / "kafka-libs")
    settings = Settings(
        var_dir=var_dir, kafka_bootstrap=f"127.0.0.1:{port}", partitions=4, topic_prefix=""
    )
    return services.Kafka(settings)
