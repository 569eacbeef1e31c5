"""Ingest's driver states: a cache over a changelog-backed table, saved coalesced."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from fleet.ingest import IngestConfig, Ingestor, decode_state, encode_state
from streams.app import app, settings, source_partitioned_table, table_get
from streams.coalesce import DueWrites, on_save_all

log = logging.getLogger(__name__)

driver_states = source_partitioned_table("ingest-driver-state")
INGESTOR = Ingestor(  # cache over the table: states of the drivers this worker owns
    IngestConfig(
        max_speed_mps=settings.max_speed_mps,
        confirm_fixes=settings.jump_confirm_fixes,
        zone_resolution=settings.zone_resolution,
    )
)
unsaved = DueWrites(settings.state_flush_s)  # drivers whose state the table lacks


def load_states(partition_of: dict[str, int]) -> None:
    """Make the states of these drivers current in the cache; record their partitions."""
    states = INGESTOR.states
    recorded = driver_states.source_partition
    for driver, partition in partition_of.items():
        if driver not in states:
            states[driver] = decode_state(table_get(driver_states, driver.encode()))  # type: ignore[arg-type]
        recorded[driver.encode()] = partition


def save_states(drivers: Iterable[str]) -> None:
    """Write drivers' states to the changelog-backed table (source partitions recorded).

    Saving is coalesced (streams/coalesce.py): a crash loses at most FLEET_STATE_FLUSH_S of
    state, which the Redis write (last-writer-wins) and history de-duplication absorb.
    """
    states = INGESTOR.states
    for driver in drivers:
        state = states.get(driver)
        if state is not None:
            driver_states[driver.encode()] = encode_state(state)


on_save_all(unsaved, save_states)


def forget() -> None:
    """Drop unsaved changes and cached states: they are read from the table again."""
    unsaved.clear()
    INGESTOR.forget()


@app.on_partitions_revoked.connect  # type: ignore[arg-type]
async def forget_states(app: object, *args: object, **kwargs: object) -> None:
    """Partitions may move to another worker: save what changed, then reload states from the
    table from now on."""
    try:
        save_states(unsaved.take_all())
    except Exception:  # the partitions may already be gone: the next owner replays from offsets
        log.exception("could not save driver states before a rebalance")
    forget()


@app.on_before_shutdown.connect  # type: ignore[arg-type]
async def save_states_on_shutdown(app: object, *args: object, **kwargs: object) -> None:
    """A clean stop saves every change (the producer is flushed right after)."""
    save_states(unsaved.take_all())
