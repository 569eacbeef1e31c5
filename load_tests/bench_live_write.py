"""Redis time of the live-positions write script per ping.

python -m load_tests.bench_live_write [--drivers 20000] [--batch 2000] [--batches 30] [--db 12]

Fills a scratch Redis database (FLUSHDB on ``--db``: never the pipeline's own) with
``--drivers`` drivers, then times ``--batches`` calls of ``fleet.live.WRITE_POSITIONS_LUA``
of ``--batch`` random drivers each (Redis runs one script at a time, so the call's wall time
is Redis's time plus one round trip). Prints the median per batch and per ping.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import redis

from fleet.live import FIELD_END, WRITE_POSITIONS_LUA
from fleet.settings import get_settings


def batch_args(drivers: list[int], ts_ms: int) -> list[str]:
    """The script's ARGV for one batch (12 values per ping, as ``position_args`` packs them)."""
    e, parts = FIELD_END, []
    for d in drivers:
        lat, lon = 52.5 + random.random() * 0.1, 13.4 + random.random() * 0.1
        parts.append(
            f"d{d}{e}{ts_ms}{e}{lat!r}{e}{lon!r}{e}8a1f1d4a{d % 50:06d}ff{e}"
            f"881f1d4a{d % 30:03d}ff{e}r{d}{e}{ts_ms}{e}5.0{e}8.1{e}90.0{e}{ts_ms}{e}"
        )
    return ["3600", "".join(parts)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--drivers", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=2_000)
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--db", type=int, default=12)
    args = parser.parse_args()
    url = get_settings().redis_url.rsplit("/", 1)[0]
    client = redis.Redis.from_url(f"{url}/{args.db}")
    client.flushdb()
    script = client.register_script(WRITE_POSITIONS_LUA)
    ts = 1_000_000
    everyone = list(range(args.drivers))
    for k in range(0, args.drivers, args.batch):
        script(args=batch_args(everyone[k : k + args.batch], ts))
    took = []
    for _ in range(args.batches):
        ts += 1000
        argv = batch_args(random.sample(everyone, args.batch), ts)
        began = time.perf_counter()
        script(args=argv)
        took.append(time.perf_counter() - began)
    client.flushdb()
    median = statistics.median(took)
    print(
        f"{args.batch:,}-ping batches over {args.drivers:,} drivers: "
        f"{median * 1000:.1f} ms per batch, {median / args.batch * 1e6:.1f} us per ping (median)"
    )


if __name__ == "__main__":
    main()
