"""Route tracking agents (issue 4). Placeholder hook until the tracking agents land."""

from __future__ import annotations

from fleet.records import Ping


async def on_pings(pings: list[Ping], now_ms: int) -> None:
    """Called by the ingest agent with the pings that moved live positions, in order."""
