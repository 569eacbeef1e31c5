"""History benchmark: sink throughput into the embedded engine and on-disk bytes per ping.

python -m load_tests.bench_history --pings 2000000 --drivers 500
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import msgspec

from fleet.clock import now_ms
from fleet.decode import decode_ping_batch
from fleet.history.access import open_owner
from fleet.history.rows import ping_rows
from fleet.history.sink import batch_token
from fleet.history.store import HistoryStore
from fleet.records import Ping
from fleet.settings import Settings
from load_tests.simulator import make_fleet

CORE_COLUMNS = ("driver_id", "ts_ms", "seq", "lat", "lon")


def simulated_pings(n: int, drivers: int, interval_s: float, seed: int = 11) -> list[bytes]:
    """n encoded pings: each driver at ~interval_s with its own phase and up to 80 ms jitter."""
    rng = random.Random(seed)
    fleet = make_fleet(drivers, seed)
    phase = [rng.randrange(int(interval_s * 1000)) for _ in fleet]
    enc = msgspec.json.Encoder()
    start = now_ms() - 6 * 3_600_000
    out: list[bytes] = []
    tick = 0
    while len(out) < n:
        for d, offset in zip(fleet, phase, strict=True):
            d.advance(interval_s)
            ts = start + int(tick * interval_s * 1000) + offset + rng.randrange(80)
            out.append(enc.encode(d.ping(ts, rng)))
        tick += 1
    return out[:n]


def column_bytes(store: HistoryStore, table: str) -> dict[str, int]:
    query = store.query
    sql = (
        "SELECT name, data_compressed_bytes AS b FROM system.columns "
        f"WHERE database = 'fleet' AND table = '{table}'"
    )
    return {r["name"]: int(r["b"]) for r in map(json.loads, query(sql).splitlines())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pings", type=int, default=2_000_000)
    parser.add_argument("--drivers", type=int, default=500)
    parser.add_argument("--interval-s", type=float, default=2.0)
    parser.add_argument("--batch", type=int, default=20_000)
    args = parser.parse_args()

    raw = simulated_pings(args.pings, args.drivers, args.interval_s)
    with tempfile.TemporaryDirectory() as tmp:
        store = open_owner(Settings(var_dir=Path(tmp)))
        decode_s = convert_s = insert_s = 0.0
        for i in range(0, len(raw), args.batch):
            chunk = raw[i : i + args.batch]
            t0 = time.perf_counter()
            pings: list[Ping] = decode_ping_batch(
                ((None, r) for r in chunk),
                source_topic="fleet.pings",
                now_ms=now_ms(),
                max_future_ms=300_000,
                max_bytes=65_536,
            ).pings
            t1 = time.perf_counter()
            rows = ping_rows(pings, now_ms())
            t2 = time.perf_counter()
            store.insert("pings", rows, batch_token("pings", [("bench", 0, i)]))
            t3 = time.perf_counter()
            decode_s, convert_s, insert_s = (
                decode_s + t1 - t0,
                convert_s + t2 - t1,
                insert_s + t3 - t2,
            )
        n = len(raw)
        t0 = time.perf_counter()
        store.execute("OPTIMIZE TABLE fleet.pings FINAL")
        merge_s = time.perf_counter() - t0
        sizes = column_bytes(store, "pings")
        stored = int(json.loads(store.query("SELECT count() AS n FROM fleet.pings"))["n"])
        store.close()

    core = sum(sizes[c] for c in CORE_COLUMNS)
    print(f"pings: {n:,} from {args.drivers} drivers every ~{args.interval_s} s; stored {stored:,}")
    print(f"sink (convert + insert) : {n / (convert_s + insert_s):>12,.0f} rows/s")
    print(f"  of which insert only   : {n / insert_s:>12,.0f} rows/s")
    print(f"sink incl. JSON decode   : {n / (decode_s + convert_s + insert_s):>12,.0f} rows/s")
    print(f"OPTIMIZE FINAL           : {merge_s:>12.2f} s")
    print(f"core columns {'+'.join(CORE_COLUMNS)}: {core / n:.2f} B/ping")
    for name in CORE_COLUMNS:
        print(f"  {name:<12} {sizes[name] / n:6.2f} B/ping")
    print(f"all columns              : {sum(sizes.values()) / n:.2f} B/ping")


if __name__ == "__main__":
    main()
