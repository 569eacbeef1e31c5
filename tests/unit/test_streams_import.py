"""Importing the worker's modules declares topics, tables and agents, and connects nothing."""

from __future__ import annotations

import json
import subprocess
import sys

from fleet.settings import PROJECT_ROOT

AGENT_MODULES = [
    "streams.app",
    "streams.topics",
    "streams.resources",
    "streams.hooks",
    "streams.dead_letters",
    "streams.ingest.state",
    "streams.ingest.agents",
    "streams.tracking.state",
    "streams.tracking.effects",
    "streams.tracking.publish",
    "streams.tracking.reads",
    "streams.tracking.agents",
    "streams.history",
    "streams.worker",
]

# Runs in a fresh interpreter: every socket connect, DNS lookup and thread start is recorded
# (and connects refused) while the modules are imported; then pools are looked for.
PROBE = """
import json, socket, sys, threading
attempts = []
def refuse(kind):
    def call(*args, **kwargs):
        attempts.append(kind + " " + repr(args[:2]))
        raise ConnectionRefusedError(kind)
    return call
socket.create_connection = refuse("create_connection")
socket.socket.connect = refuse("connect")
socket.socket.connect_ex = refuse("connect_ex")
socket.getaddrinfo = refuse("getaddrinfo")
threads_before = {t.ident for t in threading.enumerate()}
import importlib
for name in sys.argv[1:]:
    importlib.import_module(name)
from streams.app import app
threads = [t.name for t in threading.enumerate() if t.ident not in threads_before]
import concurrent.futures, gc, redis.asyncio
owned = (redis.asyncio.ConnectionPool, concurrent.futures.ThreadPoolExecutor)
pools = [type(o).__name__ for o in gc.get_objects() if isinstance(o, owned)]
print(json.dumps({"attempts": attempts, "threads": threads, "pools": pools,
                  "agents": sorted(app.agents),
                  "resources": [type(r).__name__ for r in app.resources]}))
"""


def test_agent_modules_import_without_connecting_or_starting_threads() -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        # Closed ports: had anything connected, it would have failed loudly.
        "FLEET_KAFKA_BOOTSTRAP": "127.0.0.1:1",
        "FLEET_REDIS_URL": "redis://127.0.0.1:1/0",
        "FLEET_METRICS_PORT": "1",
    }
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *AGENT_MODULES],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["attempts"] == []
    assert report["threads"] == []
    assert report["pools"] == []  # Redis pools and thread pools are made by services at start
    # Pings come through the PingBatches service by default (FLEET_PING_CONSUMER=batch); the
    # per-event `ingest` agent is registered only with FLEET_PING_CONSUMER=agent.
    assert {a.rsplit(".", 1)[-1] for a in report["agents"]} >= {
        "track_route_plans",
        "track_delivery_events",
        "apply_dispatch_commands",
    }
    assert {"RedisClient", "MetricsServer", "WarmUpClock", "PingBatches"} <= set(
        report["resources"]
    )
