"""Shortest total distance for a Solomon instance: a portfolio of starts, then one long search.

A lean OR-Tools model (every customer required, hard windows, capacity, the depot's due date
for the return) solved in two phases that share the wall-clock budget:

1. each first-solution strategy of a small portfolio builds a plan and improves it with a
   short guided local search (``START_SHARE`` of the budget each): the strategies are good on
   different instance shapes (savings on clustered customers, insertion on tight windows);
2. the best of them is improved for the rest of the budget: by the compiled ruin-and-recreate
   search (``decision.sisr``) when ``make setup`` built it, whose starts are then a single
   cheap one; else by a guided local search on a fleet cut to the routes it uses (empty
   vehicles only widen every neighbourhood, and a route can still be emptied).

Customers no vehicle can serve even alone (window closed before anyone gets there, return
after the depot closes, demand above capacity) are left out from the start. Returns ``None``
when the search finds no plan serving all the others (fleet too small); the caller then
falls back to the plan that drops and repairs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np
from ortools.constraint_solver import pywrapcp, routing_enums_pb2

from decision import sisr
from decision.solomon import SolomonInstance, demand_unit, sisr_instance
from decision.travel import euclidean_matrix

SCALE = 1000  # steps per distance unit: costs exact to 1e-3, windows checked exactly
START_SHARE = 0.12
# Parallel cheapest insertion grows as n^3: large instances use the cheaper strategies only.
SMALL_PORTFOLIO = ("SAVINGS", "PARALLEL_CHEAPEST_INSERTION", "LOCAL_CHEAPEST_INSERTION")
LARGE_PORTFOLIO = ("SAVINGS", "PATH_CHEAPEST_ARC")
LARGE = 300
# With the compiled ruin-and-recreate search (decision.sisr) the starts only have to be good
# enough for it to begin from: one cheap start, the rest of the budget to the search.
SISR_PORTFOLIO = ("SAVINGS",)
SISR_START_SHARE = 0.1
SISR_LARGE_PORTFOLIO = ("PATH_CHEAPEST_ARC",)


class _Model:
    """One routing model over the instance (node 0 the depot, node i customer order[i-1])."""

    def __init__(self, inst: SolomonInstance, order: Sequence[int], vehicles: int) -> None:
        customers = [inst.customers[i] for i in order]
        pts = [(inst.depot.x, inst.depot.y)] + [(c.x, c.y) for c in customers]
        dist = euclidean_matrix(pts).distances
        self.vehicles = vehicles
        self.manager = pywrapcp.RoutingIndexManager(len(pts), vehicles, 0)
        self.routing = routing = pywrapcp.RoutingModel(self.manager)
        cost = routing.RegisterTransitMatrix(np.round(dist * SCALE).astype(np.int64).tolist())
        routing.SetArcCostEvaluatorOfAllVehicles(cost)
        # Travel rounded up, service up, windows inwards: a plan feasible here is feasible in
        # exact times.
        service = np.array([0] + [math.ceil(c.service * SCALE - 1e-9) for c in customers])
        legs = np.ceil(dist * SCALE - 1e-9).astype(np.int64) + service[:, None]
        transit = routing.RegisterTransitMatrix(legs.tolist())
        horizon = math.floor(inst.depot.due * SCALE + 1e-9)
        routing.AddDimension(transit, horizon, horizon, False, "time")
        time_dim = routing.GetDimensionOrDie("time")
        for node, c in enumerate(customers, start=1):
            ready, due = math.ceil(c.ready * SCALE - 1e-9), math.floor(c.due * SCALE + 1e-9)
            time_dim.CumulVar(self.manager.NodeToIndex(node)).SetRange(
                max(0, ready), max(0, ready, due)
            )
        start = max(0, math.ceil(inst.depot.ready * SCALE - 1e-9))
        for v in range(vehicles):
            time_dim.CumulVar(routing.Start(v)).SetMin(min(start, horizon))
        unit = demand_unit(customers)
        demand = routing.RegisterUnaryTransitVector(
            [0] + [round(c.demand * unit) for c in customers]
        )
        capacity = math.floor(inst.capacity * unit + 1e-9)
        routing.AddDimensionWithVehicleCapacity(demand, 0, [capacity] * vehicles, True, "load")

    def routes(self, assignment: pywrapcp.Assignment) -> list[list[int]]:
        """Node numbers (1-based model nodes) per used route."""
        out = []
        for v in range(self.vehicles):
            index = assignment.Value(self.routing.NextVar(self.routing.Start(v)))
            seq = []
            while not self.routing.IsEnd(index):
                seq.append(self.manager.IndexToNode(index))
                index = assignment.Value(self.routing.NextVar(index))
            if seq:
                out.append(seq)
        return out


def _params(strategy: str, seconds: float) -> pywrapcp.DefaultRoutingSearchParameters:
    search = pywrapcp.DefaultRoutingSearchParameters()
    search.first_solution_strategy = getattr(routing_enums_pb2.FirstSolutionStrategy, strategy)
    search.local_search_metaheuristic = (
        routing_enums_pb2.LocalSearchMetaheuristic.GUIDED_LOCAL_SEARCH
    )
    search.time_limit.FromMilliseconds(max(10, int(seconds * 1000)))
    return search


def servable(inst: SolomonInstance) -> list[int]:
    """Indexes of the customers a vehicle can serve alone (within windows, capacity, depot due)."""
    out = []
    for i, c in enumerate(inst.customers):
        there = math.dist((inst.depot.x, inst.depot.y), (c.x, c.y))
        begin = max(inst.depot.ready + there, c.ready)
        if (
            begin <= c.due
            and begin + c.service + there <= inst.depot.due
            and (c.demand <= inst.capacity)
        ):
            out.append(i)
    return out


def solve_distance_first(
    inst: SolomonInstance, time_limit_s: float, seed: int = 0
) -> list[list[int]] | None:
    """Routes (customer numbers) of the shortest plan found serving every servable customer."""
    began = time.perf_counter()
    deadline = began + time_limit_s
    order = servable(inst)
    if not order:
        return []
    if seed:
        order = [order[int(i)] for i in np.random.default_rng(seed).permutation(len(order))]
    model = _Model(inst, order, inst.vehicles)
    build_s = time.perf_counter() - began
    small = len(order) <= LARGE
    best: tuple[int, list[list[int]]] | None = None
    portfolio: tuple[str, ...] = SMALL_PORTFOLIO if small else LARGE_PORTFOLIO
    start_share = START_SHARE
    if sisr.available():
        portfolio = SISR_PORTFOLIO if small else SISR_LARGE_PORTFOLIO
        start_share = SISR_START_SHARE
    for strategy in portfolio:
        left = deadline - time.perf_counter()
        share = min(start_share * time_limit_s, left) if small else left / 2
        if best is not None and share < 0.02:
            break
        found = model.routing.SolveWithParameters(_params(strategy, max(0.01, share)))
        if found is not None and (best is None or found.ObjectiveValue() < best[0]):
            best = (found.ObjectiveValue(), model.routes(found))
    if best is None:
        return None
    left = deadline - time.perf_counter()
    if left > 0.02 and sisr.available():
        routes = sisr.improve(sisr_instance(inst, order), best[1], deadline, seed)
        customers = [inst.customers[i] for i in order]
        return [[customers[n - 1].number for n in seq] for seq in routes]
    if left > 0.05:
        # On the fleet the best start uses, when there is time to build it and search.
        if build_s < left / 4 and len(best[1]) < inst.vehicles:
            model = _Model(inst, order, len(best[1]))
        warm = [[model.manager.NodeToIndex(n) for n in seq] for seq in best[1]]
        warm += [[]] * (model.vehicles - len(warm))
        start = model.routing.ReadAssignmentFromRoutes(warm, True)
        left = deadline - time.perf_counter()
        if start is not None and left > 0.02:
            found = model.routing.SolveFromAssignmentWithParameters(
                start, _params("AUTOMATIC", left)
            )
            if found is not None and found.ObjectiveValue() < best[0]:
                best = (found.ObjectiveValue(), model.routes(found))
    customers = [inst.customers[i] for i in order]
    return [[customers[n - 1].number for n in seq] for seq in best[1]]
