"""Solver parameters and weights are validated on creation, with the field and value named."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from decision.errors import InvalidParams
from decision.params import (
    FIRST_SOLUTION_STRATEGIES,
    LOCAL_SEARCH_METAHEURISTICS,
    ObjectiveWeights,
    SolveParams,
)
from decision.policy import ReplanPolicy
from fleet.errors import FleetError


@given(
    st.floats(min_value=0.001, max_value=3600),
    st.integers(0, 2**31),
    st.sampled_from(FIRST_SOLUTION_STRATEGIES),
    st.sampled_from(LOCAL_SEARCH_METAHEURISTICS),
)
def test_valid_parameters_are_accepted_as_given(limit: float, seed: int, fs: str, mh: str) -> None:
    params = SolveParams(
        time_limit_s=limit, seed=seed, first_solution_strategy=fs, local_search_metaheuristic=mh
    )
    assert (params.time_limit_s, params.seed, params.first_solution_strategy) == (limit, seed, fs)


@given(
    st.one_of(
        st.floats(max_value=0.0009),
        st.floats(min_value=3600.01),
        st.just(math.nan),
        st.just(math.inf),
        st.booleans(),
    )
)
def test_time_limit_outside_range_is_rejected_naming_the_field(limit: object) -> None:
    with pytest.raises(InvalidParams, match="time_limit_s"):
        SolveParams(time_limit_s=limit)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"seed": -1}, "seed"),
        ({"seed": True}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"first_solution_strategy": "FASTEST"}, "first_solution_strategy"),
        ({"local_search_metaheuristic": "magic"}, "local_search_metaheuristic"),
        ({"solution_limit": 0}, "solution_limit"),
        ({"settle_s": 0}, "settle_s"),
        ({"settle_s": float("nan")}, "settle_s"),
        ({"settle_s": "0.2"}, "settle_s"),
    ],
)
def test_bad_parameters_are_rejected(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidParams, match=field):
        SolveParams(**kwargs)  # type: ignore[arg-type]


@given(
    st.sampled_from(["travel", "late", "unserved", "disruption", "vehicle"]),
    st.one_of(st.floats(max_value=-1e-9), st.just(math.nan), st.just(math.inf)),
)
def test_negative_or_non_finite_weights_are_rejected(name: str, value: float) -> None:
    with pytest.raises(InvalidParams, match=name):
        ObjectiveWeights(**{name: value})  # type: ignore[arg-type]


def test_errors_are_fleet_errors_and_value_errors() -> None:
    with pytest.raises(FleetError):
        SolveParams(seed=-3)
    with pytest.raises(ValueError):
        ReplanPolicy(margin=-1)


def test_parameters_load_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "solver.toml"
    path.write_text("time_limit_s = 2.5\nseed = 7\n[weights]\nlate = 3.0\n")
    params = SolveParams.from_toml(path)
    assert params.time_limit_s == 2.5 and params.seed == 7 and params.weights.late == 3.0
    path.write_text("time_limit = 2\n")
    with pytest.raises(InvalidParams, match="time_limit"):
        SolveParams.from_toml(path)
