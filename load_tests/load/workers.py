"""The workers of one load run (``load_tests.harness`` processes with their own ports) and a
wait for their consumer group to settle."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from confluent_kafka.admin import AdminClient

from fleet.settings import PROJECT_ROOT
from load_tests.harness import WorkerProcess, free_port

READY_S = 180.0


class Worker(WorkerProcess):
    """A named worker with its own metrics and web ports, at log level warn."""

    def __init__(self, name: str, env: dict[str, str], log: Path) -> None:
        self.name = name
        self.metrics_port = free_port()
        env = {**env, "FLEET_METRICS_PORT": str(self.metrics_port),
               "FLEET_WORKER_WEB_PORT": str(free_port())}  # fmt: skip
        super().__init__(env, log, loglevel="warn", ready_s=READY_S)


def group_members(bootstrap: str, group: str) -> tuple[str, int]:
    """State and member count of a consumer group."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    try:
        desc = admin.describe_consumer_groups([group], request_timeout=5)[group].result()
    except Exception:
        return ("unknown", 0)
    return (str(desc.state).rsplit(".", 1)[-1], len(desc.members))


def wait_group(bootstrap: str, group: str, members: int, timeout_s: float = READY_S) -> None:
    """Until the group is stable with ``members`` members (partitions assigned)."""
    deadline = time.monotonic() + timeout_s
    state = ("unknown", 0)
    while time.monotonic() < deadline:
        state = group_members(bootstrap, group)
        if state == ("STABLE", members):
            return
        time.sleep(0.5)
    raise RuntimeError(f"group {group} not stable with {members} members: {state}")


LIST_CHANGELOGS = (
    "from streams.worker import app\n"
    "for table in app.tables.values():\n"
    "    print(table.changelog_topic.get_topic_name())\n"
)


def create_changelogs(env: dict[str, str], bootstrap: str, partitions: int) -> list[str]:
    """Create the app's table changelog topics before its first worker starts.

    A worker started against an app id whose changelogs do not exist yet is assigned no
    changelog partitions in its first generation, and its first writes to global tables
    fail while the producer has no metadata for them (seen as dead-lettered plans), so a
    run provisions them first, as a deployment would.
    """
    from confluent_kafka.admin import NewTopic

    out = subprocess.run(
        [sys.executable, "-c", LIST_CHANGELOGS], env=env, cwd=PROJECT_ROOT,
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    names = [line.strip() for line in out.stdout.splitlines() if line.strip()]
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    new = [NewTopic(n, num_partitions=partitions, replication_factor=1,
                    config={"cleanup.policy": "compact"}) for n in names]  # fmt: skip
    for future in admin.create_topics(new, operation_timeout=30).values():
        try:
            future.result()
        except Exception as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
    return names
