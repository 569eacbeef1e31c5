"""Solver parameters and objective weights: frozen, validated on creation, loadable from TOML."""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from decision.errors import InvalidParams

# Names of OR-Tools' routing_enums_pb2 values (kept here so validation needs no solver import).
FIRST_SOLUTION_STRATEGIES = (
    "AUTOMATIC",
    "PATH_CHEAPEST_ARC",
    "PATH_MOST_CONSTRAINED_ARC",
    "SAVINGS",
    "SWEEP",
    "CHRISTOFIDES",
    "ALL_UNPERFORMED",
    "BEST_INSERTION",
    "PARALLEL_CHEAPEST_INSERTION",
    "SEQUENTIAL_CHEAPEST_INSERTION",
    "LOCAL_CHEAPEST_INSERTION",
    "LOCAL_CHEAPEST_COST_INSERTION",
    "GLOBAL_CHEAPEST_ARC",
    "LOCAL_CHEAPEST_ARC",
    "FIRST_UNBOUND_MIN_VALUE",
)
LOCAL_SEARCH_METAHEURISTICS = (
    "AUTOMATIC",
    "GREEDY_DESCENT",
    "GUIDED_LOCAL_SEARCH",
    "SIMULATED_ANNEALING",
    "TABU_SEARCH",
    "GENERIC_TABU_SEARCH",
)
MAX_TIME_LIMIT_S = 3600.0


def _check_number(owner: str, name: str, value: object, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidParams(f"{owner}.{name}={value!r} is not a number")
    number = float(value)
    if not math.isfinite(number) or not low <= number <= high:
        raise InvalidParams(f"{owner}.{name}={value!r} outside [{low:g}, {high:g}]")
    return number


@dataclass(frozen=True)
class ObjectiveWeights:
    """What one unit of each objective term costs, in the solver's cost units (seconds of driving).

    travel: per second of driving; late: per second a visit starts after its window end
    (soft windows); unserved: per dropped stop, multiplied by (1 + priority); disruption:
    per stop the driver already saw that moves to another route; vehicle: fixed cost per
    route used.
    """

    travel: float = 1.0
    late: float = 10.0
    unserved: float = 20_000.0
    disruption: float = 300.0
    vehicle: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            _check_number("ObjectiveWeights", f.name, getattr(self, f.name), 0.0, 1e9)

    def as_dict(self) -> dict[str, float]:
        """The weights by term name."""
        return {f.name: float(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True)
class SolveParams:
    """How long and how the solver searches.

    ``solution_limit`` bounds the search by a number of solutions in addition to the time
    limit: with it, a run that finishes before the time limit is fully repeatable (same
    problem, same seed, same plan). ``seed`` fixes the order in which stops enter the model.
    ``neighbour_operators`` adds OR-Tools' relocate-neighbours and cross-exchange moves to the
    local search (off by default; the Solomon path turns them on, where they shorten routes).
    ``settle_s`` ends the search early once its best plan has stood for ``settle_s``, or for
    as long as it took to find it, whichever is longer (live decisions: a one-route re-plan
    settles in tens of milliseconds); None searches for the whole time limit.
    """

    time_limit_s: float = 1.0
    seed: int = 0
    first_solution_strategy: str = "PARALLEL_CHEAPEST_INSERTION"
    local_search_metaheuristic: str = "GUIDED_LOCAL_SEARCH"
    weights: ObjectiveWeights = field(default_factory=ObjectiveWeights)
    solution_limit: int | None = None
    neighbour_operators: bool = False
    settle_s: float | None = None

    def __post_init__(self) -> None:
        _check_number("SolveParams", "time_limit_s", self.time_limit_s, 0.001, MAX_TIME_LIMIT_S)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise InvalidParams(f"SolveParams.seed={self.seed!r} is not an integer >= 0")
        if self.first_solution_strategy not in FIRST_SOLUTION_STRATEGIES:
            raise InvalidParams(
                f"SolveParams.first_solution_strategy={self.first_solution_strategy!r} is not one"
                f" of {', '.join(FIRST_SOLUTION_STRATEGIES)}"
            )
        if self.local_search_metaheuristic not in LOCAL_SEARCH_METAHEURISTICS:
            raise InvalidParams(
                f"SolveParams.local_search_metaheuristic={self.local_search_metaheuristic!r} is"
                f" not one of {', '.join(LOCAL_SEARCH_METAHEURISTICS)}"
            )
        if not isinstance(self.weights, ObjectiveWeights):
            raise InvalidParams(f"SolveParams.weights={self.weights!r} is not ObjectiveWeights")
        limit = self.solution_limit
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 1
        ):
            raise InvalidParams(f"SolveParams.solution_limit={limit!r} is not an integer >= 1")
        if self.settle_s is not None:
            _check_number("SolveParams", "settle_s", self.settle_s, 1e-6, MAX_TIME_LIMIT_S)
        if not isinstance(self.neighbour_operators, bool):
            raise InvalidParams(
                f"SolveParams.neighbour_operators={self.neighbour_operators!r} is not a boolean"
            )

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> SolveParams:
        """Parameters from a mapping (a TOML table); ``weights`` is a sub-table."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidParams(f"unknown solver parameters: {', '.join(unknown)}")
        values = dict(data)
        weights = values.pop("weights", None)
        if weights is not None:
            if not isinstance(weights, Mapping):
                raise InvalidParams(f"weights={weights!r} is not a table")
            wknown = {f.name for f in fields(ObjectiveWeights)}
            wunknown = sorted(set(weights) - wknown)
            if wunknown:
                raise InvalidParams(f"unknown objective weights: {', '.join(wunknown)}")
            values["weights"] = ObjectiveWeights(**weights)
        return cls(**values)

    @classmethod
    def from_toml(cls, path: Path) -> SolveParams:
        """Parameters from a TOML file (top-level keys, and a ``[weights]`` table)."""
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise InvalidParams(f"cannot read solver parameters from {path}: {exc}") from None
        return cls.from_mapping(data)
