"""``fleet replay``: run the ingest core over a file of recorded pings, without Kafka or Redis."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from fleet.decode import decode_ping_batch
from fleet.ingest import IngestConfig, Ingestor, LivePosition
from fleet.records import DeadLetter
from fleet.topics import PINGS

REPLAY_BATCH = 5000


@dataclass
class ReplayOutcome:
    """The live state and dead letters a stream of pings would produce."""

    live: dict[str, LivePosition] = field(default_factory=dict)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    messages: int = 0
    accepted: int = 0
    duplicates: int = 0
    late: int = 0
    jumps: int = 0

    def summary(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "late": self.late,
            "jumps": self.jumps,
            "dead_letters": len(self.dead_letters),
            "dead_letters_by_reason": dict(Counter(d.reason for d in self.dead_letters)),
            "drivers": len(self.live),
        }

    def live_rows(self) -> list[dict[str, Any]]:
        rows = []
        for driver in sorted(self.live):
            pos = self.live[driver]
            p = pos.ping
            rows.append(
                {
                    "driver_id": driver,
                    "lat": p.lat,
                    "lon": p.lon,
                    "ts_ms": p.ts_ms,
                    "seq": p.seq,
                    "h3": pos.h3,
                    "zone": pos.zone,
                    "route_id": p.route_id,
                }
            )
        return rows


def read_messages(path: Path) -> Iterator[bytes]:
    """Raw messages of a JSON-lines file (one message a line) or of a Parquet file of pings."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        encoder = msgspec.json.Encoder()
        for batch in pq.ParquetFile(path).iter_batches(batch_size=REPLAY_BATCH):
            for row in batch.to_pylist():
                yield encoder.encode({k: v for k, v in row.items() if v is not None})
        return
    with path.open("rb") as f:
        for line in f:
            line = line.rstrip(b"\r\n")
            if line:
                yield line


def replay(
    messages: Iterator[bytes] | list[bytes],
    *,
    now_ms: int,
    config: IngestConfig,
    max_future_ms: int,
    max_bytes: int,
    batch_size: int = REPLAY_BATCH,
) -> ReplayOutcome:
    """Feed messages through decode + ingest exactly as the worker does, batch by batch."""
    outcome = ReplayOutcome()
    ingestor = Ingestor(config)
    batch: list[tuple[bytes | None, bytes | None]] = []

    def flush() -> None:
        decoded = decode_ping_batch(
            batch,
            source_topic=PINGS,
            now_ms=now_ms,
            max_future_ms=max_future_ms,
            max_bytes=max_bytes,
        )
        result = ingestor.ingest(decoded.pings)
        outcome.messages += len(batch)
        outcome.accepted += len(result.accepted)
        outcome.duplicates += result.duplicates
        outcome.late += result.late
        outcome.jumps += result.jumps
        outcome.live.update(result.live)
        outcome.dead_letters.extend(d for _, d in decoded.dead_letters)
        batch.clear()

    for raw in messages:
        batch.append((None, raw))
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    return outcome
