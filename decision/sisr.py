"""Ruin and recreate for VRPTW distance: slack induction by string removals (SISR).

After Christiaens and Vanden Berghe, "Slack Induction by String Removals for Vehicle Routing
Problems" (Transportation Science, 2020). Each step removes a few strings of consecutive
customers from routes near a random customer, puts them back one by one at their cheapest
feasible place (skipping a place now and then, the "blinks"), and keeps the result under a
simulated-annealing rule whose temperature falls over the budget.

Used by the distance search (``decision.distance_first``) after OR-Tools' first plans: guided
local search stays in the basin of its start on wide time windows, where removing whole
strings makes the room (slack) that a better sequence needs.

Times are exact floats (Euclidean distance, service, windows as given); an insertion must
leave ``sisr_kernel.EPSILON`` of room at every window, so a plan feasible here is feasible
for any check in exact arithmetic. The search runs in compiled chunks of iterations
(``decision._sisr``, built ahead of time from ``decision.sisr_kernel`` by ``make setup``);
this driver owns the clock and the temperature. Without the built module, ``available()`` is
false and the caller keeps OR-Tools' own search.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# Temperatures as a share of the mean edge of the start plan: the start is already good, so
# the search begins warm enough to leave its basin and ends greedy.
START_TEMPERATURE = 0.5
END_TEMPERATURE = 0.02
CHUNK_S = 0.02
SPARE_ROUTES = 3


@dataclass(frozen=True)
class Instance:
    """Node 0 is the depot; nodes 1..n the customers."""

    dist: np.ndarray  # (n+1, n+1) float64
    ready: np.ndarray
    due: np.ndarray
    service: np.ndarray
    demand: np.ndarray
    capacity: float
    max_routes: int

    @property
    def customers(self) -> int:
        """Customer count (the depot excluded)."""
        return len(self.ready) - 1


def _kernel() -> Any:
    """The compiled search module, or None when it is not built."""
    try:
        from decision import _sisr  # type: ignore[attr-defined]
    except ImportError:
        return None
    return _sisr


def available() -> bool:
    """Whether the compiled search is built (``make setup`` builds it)."""
    return _kernel() is not None


def _pack(routes: Sequence[Sequence[int]], slots: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    nodes = np.zeros((slots, width), np.int64)
    lens = np.zeros(slots, np.int64)
    for r, seq in enumerate(routes):
        nodes[r, : len(seq)] = seq
        lens[r] = len(seq)
    return nodes, lens


def feasible(inst: Instance, routes: Sequence[Sequence[int]]) -> bool:
    """Whether ``routes`` (node numbers) keep every window, the capacity and the depot's due
    date, in the same float arithmetic as the search."""
    for seq in routes:
        t, prev, load = float(inst.ready[0]), 0, 0.0
        for c in seq:
            t = max(t + inst.dist[prev, c], inst.ready[c])
            if t > inst.due[c]:
                return False
            t += inst.service[c]
            load += inst.demand[c]
            prev = c
        if t + inst.dist[prev, 0] > inst.due[0] or load > inst.capacity:
            return False
    return True


def length(inst: Instance, routes: Sequence[Sequence[int]]) -> float:
    """Total distance of ``routes``, depot to depot."""
    total = 0.0
    for seq in routes:
        path = [0, *seq, 0]
        total += float(inst.dist[path[:-1], path[1:]].sum())
    return total


def improve(
    inst: Instance, routes: Sequence[Sequence[int]], deadline: float, seed: int = 0
) -> list[list[int]]:
    """A shorter plan than ``routes`` (node numbers, every customer served, feasible) found
    by ruin and recreate before ``deadline`` (``time.perf_counter()``); ``routes`` when none."""
    # Distance alone seldom needs many more routes than a good start: a few spare slots keep
    # the arrays (copied every step) small on large instances.
    slots = max(len(routes), min(inst.max_routes, len(routes) + SPARE_ROUTES))
    width = inst.customers + 1
    cur_nodes, cur_lens = _pack(routes, slots, width)
    best_nodes, best_lens = cur_nodes.copy(), cur_lens.copy()
    start_cost = length(inst, routes)
    cur_cost = np.array([start_cost])
    best_cost = cur_cost.copy()
    adj = np.ascontiguousarray(np.argsort(inst.dist[:, 1:], axis=1).astype(np.int64) + 1)
    dist = np.ascontiguousarray(inst.dist, dtype=np.float64)
    times = [
        np.ascontiguousarray(a, dtype=np.float64)
        for a in (inst.ready, inst.due, inst.service, inst.demand)
    ]
    edges = max(1, sum(len(r) + 1 for r in routes if r))
    t0 = START_TEMPERATURE * start_cost / edges
    t1 = END_TEMPERATURE * start_cost / edges
    kernel = _kernel()
    if kernel is None:
        return [list(r) for r in routes]
    next_seed = seed % 2**32  # any size of seed works; the generator takes 32 bits
    began = time.perf_counter()
    total = max(1e-3, deadline - began)
    iterations = 50
    while (now := time.perf_counter()) < deadline:
        share_from = (now - began) / total
        chunk_began = now
        kernel.search(
            iterations, t0 * (t1 / t0) ** share_from,
            t0 * (t1 / t0) ** min(1.0, share_from + CHUNK_S / total),
            cur_nodes, cur_lens, cur_cost, best_nodes, best_lens, best_cost, adj, dist,
            *times, float(inst.capacity), next_seed,
        )  # fmt: skip
        next_seed = -1
        took = time.perf_counter() - chunk_began
        left = deadline - time.perf_counter()
        per = took / iterations
        iterations = max(1, int(min(CHUNK_S, left) / per)) if per > 0 else iterations * 2
    if best_cost[0] >= start_cost - 1e-9:
        return [list(r) for r in routes]
    out = [[int(c) for c in best_nodes[r, : best_lens[r]]] for r in range(slots)]
    out = [r for r in out if r]
    return out if feasible(inst, out) else [list(r) for r in routes]
