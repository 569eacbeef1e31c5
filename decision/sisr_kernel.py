"""The compiled core of the SISR search (``decision.sisr``): numba functions, built ahead of
time into the extension module ``decision._sisr`` by ``python -m decision.sisr_build`` (part
of ``make setup``), so a solve neither imports numba nor compiles anything.

Constants are read at build time; change one, build again.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

EPSILON = 1e-7
AVERAGE_REMOVED = 10.0  # c-bar: customers removed per step, on average
MAX_STRING = 10  # L-max
SPLIT_RATE = 0.5  # share of strings removed as split strings
SPLIT_DEPTH = 0.01  # chance of keeping one more customer inside a split string
BLINK_RATE = 0.01


@njit
def _times(
    r: int,
    nodes: np.ndarray,
    lens: np.ndarray,
    start: np.ndarray,
    latest: np.ndarray,
    dist: np.ndarray,
    ready: np.ndarray,
    due: np.ndarray,
    service: np.ndarray,
) -> bool:
    """Start and latest-start times of route ``r``; whether every window holds."""
    ok = True
    t = ready[0]
    prev = 0
    n = lens[r]
    for p in range(n):
        c = nodes[r, p]
        s = max(t + dist[prev, c], ready[c])
        if s > due[c]:
            ok = False
        start[r, p] = s
        t = s + service[c]
        prev = c
    if t + dist[prev, 0] > due[0]:
        ok = False
    lat = due[0]
    nxt = 0
    for p in range(n - 1, -1, -1):
        c = nodes[r, p]
        lat = min(due[c], lat - dist[c, nxt] - service[c])
        latest[r, p] = lat
        nxt = c
    return ok


@njit
def _route_length(r: int, nodes: np.ndarray, lens: np.ndarray, dist: np.ndarray) -> float:
    total = 0.0
    prev = 0
    for p in range(lens[r]):
        total += dist[prev, nodes[r, p]]
        prev = nodes[r, p]
    return total + dist[prev, 0]


@njit
def _remove_string(
    r: int, first: int, count: int, keep_from: int, keep: int, nodes: np.ndarray,
    lens: np.ndarray, route_of: np.ndarray, removed: np.ndarray, n_removed: int,
) -> int:  # fmt: skip
    """Remove ``count`` positions from ``first`` of route ``r`` except ``keep`` of them from
    ``keep_from``; returns the new number of removed customers."""
    n = lens[r]
    w = first
    for p in range(first, n):
        inside = p < first + count
        kept = keep_from <= p < keep_from + keep
        if inside and not kept:
            c = nodes[r, p]
            route_of[c] = -1
            removed[n_removed] = c
            n_removed += 1
        else:
            nodes[r, w] = nodes[r, p]
            w += 1
    lens[r] = w
    return n_removed


@njit
def _ruin(
    nodes: np.ndarray, lens: np.ndarray, route_of: np.ndarray, adj: np.ndarray,
    removed: np.ndarray, touched: np.ndarray,
) -> int:  # fmt: skip
    """Remove strings near a random customer; returns how many customers were removed."""
    routes = 0
    served = 0
    for r in range(lens.shape[0]):
        if lens[r] > 0:
            routes += 1
            served += lens[r]
    if routes == 0:
        return 0
    mean_len = served / routes
    ls_max = min(float(MAX_STRING), mean_len)
    ks_max = 4.0 * AVERAGE_REMOVED / (1.0 + ls_max) - 1.0
    ks = int(np.random.random() * ks_max) + 1
    seed = adj.shape[0] - 1
    while True:  # a served customer
        seed = np.random.randint(1, adj.shape[0])
        if route_of[seed] >= 0:
            break
    n_removed = 0
    touched[:] = False
    done = 0
    for k in range(adj.shape[1]):
        if done >= ks:
            break
        c = adj[seed, k]
        r = route_of[c]
        if r < 0 or touched[r]:
            continue
        n = lens[r]
        pos = 0
        while nodes[r, pos] != c:
            pos += 1
        lt_max = min(float(n), ls_max)
        length = int(np.random.random() * lt_max) + 1
        if length > n:
            length = n
        if length >= 2 and length < n and np.random.random() < SPLIT_RATE:
            keep = 1
            while length + keep < n and np.random.random() < SPLIT_DEPTH:
                keep += 1
            span = length + keep
            lo = max(0, pos - span + 1)
            hi = min(pos, n - span)
            first = lo + int(np.random.random() * (hi - lo + 1))
            keep_from = first + int(np.random.random() * (length + 1))
            n_removed = _remove_string(
                r, first, span, keep_from, keep, nodes, lens, route_of, removed, n_removed
            )
        else:
            lo = max(0, pos - length + 1)
            hi = min(pos, n - length)
            first = lo + int(np.random.random() * (hi - lo + 1))
            n_removed = _remove_string(
                r, first, length, 0, 0, nodes, lens, route_of, removed, n_removed
            )
        touched[r] = True
        done += 1
    return n_removed


@njit
def _recreate(
    nodes: np.ndarray, lens: np.ndarray, loads: np.ndarray, start: np.ndarray,
    latest: np.ndarray, route_of: np.ndarray, removed: np.ndarray, n_removed: int,
    dist: np.ndarray, ready: np.ndarray, due: np.ndarray, service: np.ndarray,
    demand: np.ndarray, capacity: float, touched: np.ndarray,
) -> int:  # fmt: skip
    """Put the removed customers back, cheapest feasible place first (marking the routes it
    changes in ``touched``); returns how many found no place (0 when the plan is complete)."""
    keys = np.empty(n_removed)
    pick = np.random.random() * 11.0
    for i in range(n_removed):
        c = removed[i]
        if pick < 4.0:
            keys[i] = np.random.random()
        elif pick < 8.0:
            keys[i] = -demand[c]
        elif pick < 10.0:
            keys[i] = -dist[0, c]
        else:
            keys[i] = dist[0, c]
    order = np.argsort(keys)
    absent = 0
    for i in range(n_removed):
        c = removed[order[i]]
        best_r = -1
        best_p = -1
        best_cost = np.inf
        empty = -1
        for r in range(lens.shape[0]):
            n = lens[r]
            if n == 0:
                if empty < 0:
                    empty = r
                continue
            if loads[r] + demand[c] > capacity:
                continue
            prev = 0
            depart = ready[0]
            for p in range(n + 1):
                nxt = nodes[r, p] if p < n else 0
                cost = dist[prev, c] + dist[c, nxt] - dist[prev, nxt]
                if cost < best_cost and np.random.random() >= BLINK_RATE:
                    s = max(depart + dist[prev, c], ready[c])
                    if s <= due[c] - EPSILON:
                        arrive = s + service[c] + dist[c, nxt]
                        limit = latest[r, p] if p < n else due[0]
                        if arrive <= limit - EPSILON:
                            best_cost = cost
                            best_r = r
                            best_p = p
                if p < n:
                    prev = nxt
                    depart = start[r, p] + service[prev]
                    if depart + dist[prev, c] > due[c]:
                        break  # every later place reaches the customer after its window
        if best_r < 0 and empty >= 0:
            s = max(ready[0] + dist[0, c], ready[c])
            if (
                s <= due[c] - EPSILON
                and s + service[c] + dist[c, 0] <= due[0] - EPSILON
                and demand[c] <= capacity
            ):
                best_r = empty
                best_p = 0
        if best_r < 0:
            absent += 1
            continue
        r = best_r
        for p in range(lens[r], best_p, -1):
            nodes[r, p] = nodes[r, p - 1]
        nodes[r, best_p] = c
        lens[r] += 1
        loads[r] += demand[c]
        route_of[c] = r
        touched[r] = True
        _times(r, nodes, lens, start, latest, dist, ready, due, service)
    return absent


@njit
def _copy_route(
    r: int, nodes: np.ndarray, lens: np.ndarray, loads: np.ndarray, start: np.ndarray,
    latest: np.ndarray, length: np.ndarray, to_nodes: np.ndarray, to_lens: np.ndarray,
    to_loads: np.ndarray, to_start: np.ndarray, to_latest: np.ndarray, to_length: np.ndarray,
) -> None:  # fmt: skip
    """Route ``r`` of one plan's arrays into the other's."""
    n = lens[r]
    to_nodes[r, :n] = nodes[r, :n]
    to_start[r, :n] = start[r, :n]
    to_latest[r, :n] = latest[r, :n]
    to_lens[r] = n
    to_loads[r] = loads[r]
    to_length[r] = length[r]


@njit
def search(
    iterations: int, t_from: float, t_to: float,
    cur_nodes: np.ndarray, cur_lens: np.ndarray, cur_cost: np.ndarray,
    best_nodes: np.ndarray, best_lens: np.ndarray, best_cost: np.ndarray,
    adj: np.ndarray, dist: np.ndarray, ready: np.ndarray, due: np.ndarray,
    service: np.ndarray, demand: np.ndarray, capacity: float, seed: int,
) -> None:  # fmt: skip
    """``iterations`` ruin-and-recreate steps from the current plan (both plans in place);
    ``seed`` >= 0 seeds the generator first.

    A step works on a copy of the current plan and copies back (accepted) or restores
    (rejected) only the routes it changed, so a step costs the same on a fleet of 250
    routes as on one of 10.
    """
    if seed >= 0:
        np.random.seed(seed)
    routes, width = cur_nodes.shape
    removed = np.empty(dist.shape[0], np.int64)
    touched = np.zeros(routes, np.bool_)
    cur_loads = np.zeros(routes)
    cur_start = np.zeros((routes, width))
    cur_latest = np.zeros((routes, width))
    cur_length = np.zeros(routes)
    cur_route_of = np.full(dist.shape[0], -1, np.int64)
    for r in range(routes):
        for p in range(cur_lens[r]):
            cur_loads[r] += demand[cur_nodes[r, p]]
            cur_route_of[cur_nodes[r, p]] = r
        _times(r, cur_nodes, cur_lens, cur_start, cur_latest, dist, ready, due, service)
        if cur_lens[r] > 0:
            cur_length[r] = _route_length(r, cur_nodes, cur_lens, dist)
    nodes = cur_nodes.copy()
    lens = cur_lens.copy()
    loads = cur_loads.copy()
    start = cur_start.copy()
    latest = cur_latest.copy()
    length = cur_length.copy()
    route_of = cur_route_of.copy()
    ratio = t_to / t_from
    for it in range(iterations):
        temperature = t_from * ratio ** (it / iterations)
        n_removed = _ruin(nodes, lens, route_of, adj, removed, touched)
        for r in range(routes):
            if touched[r]:
                loads[r] = 0.0
                for p in range(lens[r]):
                    loads[r] += demand[nodes[r, p]]
                _times(r, nodes, lens, start, latest, dist, ready, due, service)
        absent = _recreate(
            nodes, lens, loads, start, latest, route_of, removed, n_removed, dist, ready,
            due, service, demand, capacity, touched,
        )  # fmt: skip
        cost = cur_cost[0]
        for r in range(routes):
            if touched[r]:
                length[r] = _route_length(r, nodes, lens, dist) if lens[r] > 0 else 0.0
                cost += length[r] - cur_length[r]
        accept = absent == 0 and cost < cur_cost[0] - temperature * math.log(np.random.random())
        for r in range(routes):
            if not touched[r]:
                continue
            touched[r] = False
            if accept:
                _copy_route(
                    r, nodes, lens, loads, start, latest, length, cur_nodes, cur_lens,
                    cur_loads, cur_start, cur_latest, cur_length,
                )  # fmt: skip
            else:
                _copy_route(
                    r, cur_nodes, cur_lens, cur_loads, cur_start, cur_latest, cur_length,
                    nodes, lens, loads, start, latest, length,
                )  # fmt: skip
        if not accept:
            route_of[:] = cur_route_of
            continue
        cur_route_of[:] = route_of
        cur_cost[0] = cost
        if cost < best_cost[0] - 1e-9:
            best_nodes[:] = cur_nodes
            best_lens[:] = cur_lens
            best_cost[0] = cost
