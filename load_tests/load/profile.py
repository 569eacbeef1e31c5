"""Summarise a `py-spy record -f raw` profile: where a worker's samples go, by package.

    py-spy record -p PID -d 30 -r 50 -f raw -o worker.txt
    python -m load_tests.load.profile worker.txt [--top 25]

Shares are of all samples (every thread; idle threads are not sampled unless ``--idle``).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

# First matching pattern names a frame's area (by its file path).
AREAS = (
    ("faust", "/faust/"),
    ("mode", "/mode/"),
    ("aiokafka", "/aiokafka/"),
    ("confluent_kafka", "/confluent_kafka/"),
    ("redis client", "/redis/"),
    ("prometheus_client", "/prometheus_client/"),
    ("chdb/pyarrow", "/chdb/"),
    ("streams (agents)", "streams/"),
    ("fleet (core)", "fleet/"),
    ("asyncio", "/asyncio/"),
)
LINE = re.compile(r":\d+\)$")
FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^:)]*)(?::\d+)?\)$")


def parse(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


def area(frame: str) -> str:
    m = FRAME.match(frame)
    file = m.group("file") if m else frame
    for name, pattern in AREAS:
        if pattern in file:
            return name
    return "other"


def summarise(stacks: list[tuple[list[str], int]], top: int) -> str:
    total = sum(c for _, c in stacks) or 1
    leaf_area: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    for frames, count in stacks:
        threads[frames[0].split(" (")[0]] += count
        # The innermost frame of our own code or a library, not CPython internals.
        leaf_area[area(frames[-1])] += count
        own[frames[-1]] += count
        for f in {LINE.sub(")", f) for f in frames}:  # per function, whatever the line
            inclusive[f] += count
    out = [f"{total} samples", "", "by thread:"]
    out += [f"  {100 * c / total:5.1f} %  {t}" for t, c in threads.most_common(8)]
    out += ["", "by area of the innermost frame (self time):"]
    out += [f"  {100 * c / total:5.1f} %  {a}" for a, c in leaf_area.most_common()]
    out += ["", f"top {top} functions, inclusive:"]
    out += [f"  {100 * c / total:5.1f} %  {f}" for f, c in inclusive.most_common(top)]
    out += ["", f"top {top} functions, self:"]
    out += [f"  {100 * c / total:5.1f} %  {f}" for f, c in own.most_common(top)]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    print(summarise(parse(args.profile), args.top))


if __name__ == "__main__":
    main()
