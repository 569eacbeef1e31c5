"""The embedded store (real chDB): identity de-duplication, insert tokens, read-only reads."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet.history.access import OwnerLock, history_dir, open_owner, open_reader
from fleet.history.errors import HistoryError, StoreBusy
from fleet.history.rows import event_rows, ping_rows
from fleet.history.store import HistoryStore
from fleet.records import DeliveryEvent, Ping
from fleet.settings import Settings

NOW = 1_900_000_000_000  # far from any retention cut-off


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(var_dir=tmp_path / "var")


@pytest.fixture
def store(settings: Settings) -> Iterator[HistoryStore]:
    store = open_owner(settings)
    # Merges would fold duplicates early and hide what actually landed in the parts.
    for table in ("pings", "events"):
        store.execute(f"SYSTEM STOP MERGES fleet.{table}")
    yield store
    store.close()


def one(store: HistoryStore, sql: str) -> int:
    return int(json.loads(store.query(sql).splitlines()[0])["n"])


def stored_rows(store: HistoryStore, table: str) -> int:
    """Rows physically in the table's parts, before any de-duplicating merge."""
    return one(
        store,
        "SELECT sum(rows) AS n FROM system.parts "
        f"WHERE database = 'fleet' AND table = '{table}' AND active",
    )


def pings(n: int, start: int = 0) -> list[Ping]:
    return [
        Ping(f"d{i % 3}", NOW + i, 52.5, 13.4, seq=None if i % 4 == 0 else i)
        for i in range(start, n)
    ]


def test_redelivered_pings_in_other_batches_count_once(store: HistoryStore) -> None:
    store.insert("pings", ping_rows(pings(100), NOW), "a1")
    store.insert("pings", ping_rows(pings(150, start=50), NOW + 1), "a2")  # overlap 50..99
    store.insert("pings", ping_rows(pings(100), NOW + 2), None)  # all again, no token
    assert stored_rows(store, "pings") == 300  # what landed
    assert one(store, "SELECT count() AS n FROM fleet.pings") == 150  # what readers see
    assert one(store, "SELECT uniqExact(driver_id, ts_ms, seq) AS n FROM fleet.pings") == 150


def test_a_retried_insert_with_the_same_token_is_not_written_twice(store: HistoryStore) -> None:
    batch = ping_rows(pings(40), NOW)
    store.insert("pings", batch, "b7")
    store.insert("pings", batch, "b7")
    assert stored_rows(store, "pings") == 40


def test_a_repeated_event_id_is_held_once(store: HistoryStore) -> None:
    event = DeliveryEvent("ev-1", "d1", "delivered", NOW, route_id="r", stop_id="s")
    store.insert("events", event_rows([event, event], NOW), None)
    store.insert("events", event_rows([event], NOW + 5), None)
    assert one(store, "SELECT count() AS n FROM fleet.events") == 1


def test_reads_cannot_write_or_reach_files(store: HistoryStore) -> None:
    with pytest.raises(HistoryError, match="not INSERT"):
        store.query("INSERT INTO fleet.pings SELECT * FROM fleet.pings")
    with pytest.raises(HistoryError, match="readonly"):
        store.query("SELECT * FROM file('/etc/hostname', 'LineAsString')")
    with pytest.raises(HistoryError):
        store.query("SELECT 1 SETTINGS readonly = 0")


def test_the_embedded_store_has_one_owner_and_data_outlives_it(settings: Settings) -> None:
    owner = open_owner(settings)
    try:
        owner.insert("pings", ping_rows(pings(10), NOW), None)
        with pytest.raises(StoreBusy):
            open_owner(settings)
        with pytest.raises(StoreBusy, match="serves no queries"):
            open_reader(settings)  # owner publishes no endpoint
    finally:
        owner.close()
    reader = open_reader(settings)
    try:
        assert one(reader, "SELECT count() AS n FROM fleet.pings") == 10
    finally:
        reader.close()


def test_the_owner_lock_is_free_again_after_release(settings: Settings) -> None:
    lock = OwnerLock(history_dir(settings))
    with pytest.raises(StoreBusy):
        OwnerLock(history_dir(settings))
    lock.release()
    OwnerLock(history_dir(settings)).release()
