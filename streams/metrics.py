"""Prometheus metrics of the ingest path (served by streams.resources.MetricsServer)."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence

import numpy as np
from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

PINGS_ACCEPTED = Counter("fleet_pings_accepted_total", "Valid pings seen for the first time")
PINGS_REJECTED = Counter(
    "fleet_pings_rejected_total",
    "Pings sent to the dead-letter topic (also in fleet_dead_letters_total)",
    ["reason"],
)
PINGS_DUPLICATE = Counter("fleet_pings_duplicate_total", "Pings dropped as duplicates")
PINGS_LATE = Counter("fleet_pings_late_total", "Pings older than the live position (history only)")
PINGS_JUMP = Counter("fleet_pings_jump_total", "Fixes flagged as implausible jumps")
BATCH_SIZE = Histogram(
    "fleet_ingest_batch_size",
    "Messages per ingest batch",
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000),
)
PING_TO_REDIS = Histogram(
    "fleet_ping_to_redis_seconds",
    "Time from a ping to its live position in Redis",
    ["clock"],  # event: from ts_ms; kafka: from the Kafka record timestamp
    buckets=LATENCY_BUCKETS,
)
CONSUMER_LAG = Gauge("fleet_consumer_lag", "Messages behind the high watermark", ["partition"])
PING_POSITION = Gauge(
    "fleet_ping_position",
    "Next fleet.pings offset the batch ping consumer reads, per partition it owns",
    ["partition"],
)

GC_SECONDS = Counter(
    "fleet_gc_seconds_total",
    "Time the worker spent in Python's cyclic garbage collector (the event loop stands still)",
    ["generation"],
)


def _time_gc() -> Callable[[str, dict[str, int]], None]:
    began = [0.0]

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            began[0] = time.perf_counter()
        else:
            GC_SECONDS.labels(str(info.get("generation", -1))).inc(time.perf_counter() - began[0])

    return callback


gc.callbacks.append(_time_gc())


def observe_many(histogram: Histogram, amounts: Sequence[float]) -> None:
    """``histogram.observe(a)`` for every ``a`` (a labelled child or an unlabelled
    histogram), with one numpy pass and one increment per bucket instead of a Python call
    per amount: a batch of pings observes thousands of latencies."""
    if not amounts:
        return
    values = np.asarray(amounts, dtype=np.float64)
    bounds = np.asarray(histogram._upper_bounds, dtype=np.float64)
    # observe() counts an amount in the first bucket whose bound is >= it.
    counts = np.bincount(np.searchsorted(bounds, values, side="left"), minlength=len(bounds))
    for bucket, count in zip(histogram._buckets, counts.tolist(), strict=False):
        if count:
            bucket.inc(count)
    histogram._sum.inc(float(values.sum()))
