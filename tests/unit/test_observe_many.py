"""observe_many: the same histogram as observing each amount, in one pass."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram

from streams.metrics import LATENCY_BUCKETS, observe_many


def _samples(histogram: Histogram) -> dict[tuple[str, str], float]:
    return {
        (s.name, s.labels.get("le", "")): s.value
        for metric in histogram.collect()
        for s in metric.samples
        if not s.name.endswith("_created")
    }


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from(LATENCY_BUCKETS),  # exactly on a bound: counted in that bucket
            st.floats(0, 120, allow_nan=False),
        ),
        max_size=300,
    )
)
def test_bulk_observation_equals_one_by_one(amounts) -> None:
    registry = CollectorRegistry()
    one = Histogram("one", "", ["clock"], buckets=LATENCY_BUCKETS, registry=registry)
    bulk = Histogram("bulk", "", ["clock"], buckets=LATENCY_BUCKETS, registry=registry)
    child = one.labels("event")
    for amount in amounts:
        child.observe(amount)
    observe_many(bulk.labels("event"), amounts)
    expected = {(n.replace("one", "bulk", 1), le): v for (n, le), v in _samples(one).items()}
    got = _samples(bulk)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == (pytest.approx(value) if key[0] == "bulk_sum" else value)
