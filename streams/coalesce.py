"""Coalesced changelog writes: each changed key is saved once it has been dirty for a while.

Saving a driver's state on every batch would send one changelog message per ping; saving
everything on a timer sends them in bursts that stall the agents while Faust's producer
buffer drains. Here a key is due ``delay_s`` after it first changed, so writes are spread
evenly over time and each key is written at most once per ``delay_s``.
"""

from __future__ import annotations

import math
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator

Saver = Callable[[Iterable[str]], None]


class DueWrites:
    """Keys changed since they were last saved, oldest first."""

    def __init__(self, delay_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.delay_s = delay_s
        self.clock = clock
        # Insertion order = first-change order. An OrderedDict: its oldest key is found in
        # O(1) however many were taken before (a dict scans the slots its deletions left).
        self._since: OrderedDict[str, float] = OrderedDict()
        _ALL.add(self)

    def oldest(self) -> float:
        """When the longest-waiting key changed (inf when none waits)."""
        return next(iter(self._since.values()), math.inf)

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
            key = next(iter(self._since))
            if self._since[key] > cutoff:
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


_ALL: weakref.WeakSet[DueWrites] = weakref.WeakSet()
_SAVERS: list[tuple[DueWrites, Saver]] = []


def oldest_unsaved() -> float:
    """When the oldest change not yet saved happened, over every DueWrites of the process
    (inf when everything is saved): input consumed before that is fully reflected in tables.
    All DueWrites that offsets depend on must share one clock (time.monotonic by default)."""
    return min((due.oldest() for due in _ALL), default=math.inf)


def on_save_all(due: DueWrites, saver: Saver) -> None:
    """Register how ``due``'s keys are saved, for ``save_all``."""
    _SAVERS.append((due, saver))


def save_all() -> None:
    """Save every waiting key of every registered DueWrites now (before offsets are given up)."""
    for due, saver in _SAVERS:
        saver(due.take_all())
