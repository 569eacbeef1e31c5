"""Split an insert so it touches at most MAX_PARTITIONS_PER_INSERT partitions of its table.

ClickHouse refuses an insert block that spans more than ``max_partitions_per_insert_block``
partitions (100 by default): pings spread over 200 days would be refused on every retry.
The split is a pure function of the rows, so a retried batch gives the same parts under
the same derived insert tokens (a part stored before a failure is not written twice).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from functools import cache

import numpy as np
import pyarrow as pa

from fleet.history.schema import partition_keys

# Under the server's 100, with room for a partition boundary in the server's time zone
# (days and months are computed in UTC here, toDate() uses the server's zone).
MAX_PARTITIONS_PER_INSERT = 90
DAY_MS = 86_400_000


@cache
def _keys_of_tables() -> dict[str, tuple[str, str]]:
    return partition_keys()


def partition_of(times_ms: np.ndarray, unit: str) -> np.ndarray:
    """The UTC day or month number of each epoch-ms time."""
    if unit == "day":
        return times_ms // DAY_MS
    return times_ms.astype("datetime64[ms]").astype("datetime64[M]").astype(np.int64)


def part_token(token: str | None, index: int, parts: int) -> str | None:
    """The insert token of one part: the batch's own when it is not split."""
    if token is None or parts == 1:
        return token
    return hashlib.sha256(f"{token}:{index}".encode()).hexdigest()[:40]


def split_for_insert(
    table: str, rows: pa.Table, token: str | None, limit: int = MAX_PARTITIONS_PER_INSERT
) -> Iterator[tuple[pa.Table, str | None]]:
    """(rows, token) parts of a batch, each within ``limit`` partitions of ``table``."""
    key = _keys_of_tables().get(table)
    if key is None or rows.num_rows == 0:
        yield rows, token
        return
    column, unit = key
    partitions = partition_of(rows.column(column).to_numpy(), unit)
    distinct = np.unique(partitions)
    if len(distinct) <= limit:
        yield rows, token
        return
    groups = [distinct[i : i + limit] for i in range(0, len(distinct), limit)]
    for index, group in enumerate(groups):
        mask = (partitions >= group[0]) & (partitions <= group[-1])
        yield rows.filter(pa.array(mask)), part_token(token, index, len(groups))
