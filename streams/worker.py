"""The worker's entry module: the app with every agent registered (``fleet worker``).

Run it with ``fleet worker`` (or ``faust -A streams.worker worker``). A new agent plugs in
by being imported here; it talks to the others only through topics, tables, the hooks of
``streams.hooks`` and read interfaces such as ``streams.tracking.reads``.
"""

from __future__ import annotations

from streams import history  # noqa: F401  (history sink service)
from streams.app import app
from streams.decision import agents as decision_agents  # noqa: F401
from streams.eta import agents as eta_agents  # noqa: F401
from streams.ingest import agents as ingest_agents  # noqa: F401
from streams.ingest import batches as ingest_batches  # noqa: F401  (FLEET_PING_CONSUMER=batch)
from streams.tracking import agents as tracking_agents  # noqa: F401

__all__ = ["app", "main"]


def main() -> None:
    """Entry point of a Faust worker of this app."""
    app.main()
