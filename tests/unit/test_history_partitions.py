"""Inserts within the store's per-insert partition limit: the split, and real chDB taking it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest

from fleet.history.access import open_owner
from fleet.history.errors import HistoryError
from fleet.history.partitions import (
    DAY_MS,
    MAX_PARTITIONS_PER_INSERT,
    partition_of,
    split_for_insert,
)
from fleet.history.rows import alert_rows, ping_rows
from fleet.history.schema import partition_keys
from fleet.history.sink import HistoryWriter
from fleet.records import Alert, Ping
from fleet.settings import Settings

NOW = 1_900_000_000_000
DAYS = 200


def pings_over_days(days: int, per_day: int = 3) -> list[Ping]:
    return [
        Ping(f"d{i % 4}", NOW + day * DAY_MS + i, 52.5, 13.4, seq=day * per_day + i)
        for day in range(days)
        for i in range(per_day)
    ]


def test_the_partition_keys_are_read_from_the_ddl() -> None:
    assert partition_keys() == {
        "pings": ("ts_ms", "day"),
        "events": ("ts_ms", "month"),
        "alerts": ("opened_ms", "month"),
        "etas": ("computed_ms", "month"),
    }


def test_days_and_months_are_utc_calendar_units() -> None:
    times = np.array([0, DAY_MS - 1, DAY_MS, 31 * DAY_MS - 1, 31 * DAY_MS], dtype=np.int64)
    assert partition_of(times, "day").tolist() == [0, 0, 1, 30, 31]
    assert partition_of(times, "month").tolist() == [0, 0, 0, 0, 1]  # Jan 1970, then Feb


def test_pings_over_200_days_split_into_parts_within_the_limit() -> None:
    rows = ping_rows(pings_over_days(DAYS), NOW)
    parts = list(split_for_insert("pings", rows, "ab12"))
    assert len(parts) == -(-DAYS // MAX_PARTITIONS_PER_INSERT)
    for part, _token in parts:
        days = np.unique(part.column("ts_ms").to_numpy() // DAY_MS)
        assert len(days) <= MAX_PARTITIONS_PER_INSERT
    assert sum(part.num_rows for part, _ in parts) == rows.num_rows
    tokens = [token for _, token in parts]
    assert len(set(tokens)) == len(parts) and "ab12" not in tokens
    again = [token for _, token in split_for_insert("pings", rows, "ab12")]
    assert again == tokens  # a retried batch gives the same parts under the same tokens


def test_a_batch_within_the_limit_or_of_an_unpartitioned_table_is_one_insert() -> None:
    rows = ping_rows(pings_over_days(MAX_PARTITIONS_PER_INSERT), NOW)
    assert [token for _, token in split_for_insert("pings", rows, "ab12")] == ["ab12"]
    alerts = [Alert(f"al-{m}", "stale", "open", "d", NOW + m * 31 * DAY_MS, NOW) for m in range(3)]
    assert len(list(split_for_insert("alerts", alert_rows(alerts, NOW), None))) == 1
    assert len(list(split_for_insert("route_plans", rows, "cd"))) == 1  # no partitions


def test_chdb_refuses_200_days_in_one_insert_but_stores_them_split(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path / "var")
    rows = ping_rows(pings_over_days(DAYS), NOW)
    store = open_owner(settings)
    try:  # the limit the split exists for is real
        with pytest.raises(HistoryError, match=r"(?i)too many partitions"):
            store.insert("pings", rows, None)
    finally:
        store.close()

    async def scenario() -> int:
        writer = HistoryWriter(settings)
        try:
            attempts = await writer.insert("pings", rows, "feed")
            assert attempts == 1
            await writer.insert("pings", rows, "feed")  # retried batch: every part deduplicated
            out = await writer.query(
                "SELECT count() AS n, uniqExact(toDate(intDiv(ts_ms, 1000))) AS days "
                "FROM fleet.pings"
            )
        finally:
            await writer.close()
        counts = json.loads(out)
        assert int(counts["days"]) == DAYS
        return int(counts["n"])

    assert asyncio.run(scenario()) == rows.num_rows
