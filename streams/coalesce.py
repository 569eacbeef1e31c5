"""Coalesced changelog writes: each changed key is saved once it has been dirty for a while.

Saving a driver's state on every batch would send one changelog message per ping; saving
everything on a timer sends them in bursts that stall the agents while Faust's producer
buffer drains. Here a key is due ``delay_s`` after it first changed, so writes are spread
evenly over time and each key is written at most once per ``delay_s``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator


class DueWrites:
    """Keys changed since they were last saved, oldest first."""

    def __init__(self, delay_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.delay_s = delay_s
        self.clock = clock
        self._since: dict[str, float] = {}  # insertion order = first-change order

    def __len__(self) -> int:
        return len(self._since)

    def mark(self, key: str) -> None:
        """Note a change; a key already waiting keeps its place (and its due time)."""
        if key not in self._since:
            self._since[key] = self.clock()

    def take_due(self) -> Iterator[str]:
        """Remove and yield the keys whose delay has passed, oldest first."""
        cutoff = self.clock() - self.delay_s
        while self._since:
            key, since = next(iter(self._since.items()))
            if since > cutoff:
                return
            del self._since[key]
            yield key

    def take_all(self) -> Iterator[str]:
        """Remove and yield every waiting key (shutdown, rebalance)."""
        keys = list(self._since)
        self._since.clear()
        yield from keys

    def clear(self) -> None:
        self._since.clear()
