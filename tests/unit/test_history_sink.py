"""Writing to history: backoff, batch tokens, and a writer that waits out an unavailable store."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from fleet.history.access import OwnerLock, history_dir
from fleet.history.rows import ping_rows
from fleet.history.sink import HistoryWriter, batch_token
from fleet.records import Ping
from fleet.retry import RetryPolicy
from fleet.settings import Settings

NOW = 1_900_000_000_000


@given(st.lists(st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 11), st.integers(0, 10**9))))
def test_the_same_messages_in_any_order_give_the_same_token(offsets: list) -> None:
    token = batch_token("pings", offsets)
    assert token == batch_token("pings", list(reversed(offsets)))
    assert len(token) == 40 and all(c in "0123456789abcdef" for c in token)


def test_different_messages_or_tables_give_different_tokens() -> None:
    base = [("t", 0, 1), ("t", 0, 2)]
    assert batch_token("pings", base) != batch_token("pings", [*base, ("t", 0, 3)])
    assert batch_token("pings", base) != batch_token("events", base)


def test_a_batch_waits_for_an_unavailable_store_and_is_then_stored_once(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path / "var")
    failures: list[str] = []
    retried_twice = asyncio.Event()

    def on_retry(table: str, exc: Exception, delay: float) -> None:
        failures.append(f"{table}: {exc}")
        if len(failures) >= 2:
            retried_twice.set()

    async def scenario() -> tuple[int, int]:
        blocker = OwnerLock(history_dir(settings))  # another process owns the store
        writer = HistoryWriter(settings, RetryPolicy(0.01, 0.05), on_retry)
        batch = ping_rows([Ping("d", NOW + i, 1.0, 2.0, seq=i) for i in range(25)], NOW)
        insert = asyncio.create_task(writer.insert("pings", batch, "c0ffee"))
        await retried_twice.wait()
        assert not insert.done()  # nothing dropped: the batch is still being written
        blocker.release()
        attempts = await insert
        rows = await writer.query("SELECT count() AS n FROM fleet.pings")
        await writer.close()
        return attempts, int(json.loads(rows)["n"])

    attempts, stored = asyncio.run(asyncio.wait_for(scenario(), timeout=120))
    assert attempts == len(failures) + 1 >= 3
    assert all("owned by another process" in f for f in failures)
    assert stored == 25
