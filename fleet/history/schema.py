"""The history DDL (infra/clickhouse/*.sql) with per-table retention filled in from settings."""

from __future__ import annotations

import re
from pathlib import Path
from string import Template

from fleet.history.errors import HistoryError
from fleet.settings import PROJECT_ROOT, Settings

DDL_DIR = PROJECT_ROOT / "infra" / "clickhouse"
DATABASE = "fleet"
TABLES = ("pings", "events", "alerts", "etas", "route_plans", "dead_letters", "decisions")


def ttl_days(settings: Settings, table: str) -> int:
    """Retention of one table in days (FLEET_HISTORY_TTL_DAYS_<TABLE>)."""
    days: int = getattr(settings, f"history_ttl_days_{table}")
    return days


def ddl_files(ddl_dir: Path = DDL_DIR) -> list[Path]:
    """The DDL files in the order they apply (numbered names)."""
    return sorted(ddl_dir.glob("*.sql"))


def _table_of(path: Path) -> str | None:
    """`10_pings.sql` -> `pings`; the database file has no table."""
    name = path.stem.split("_", 1)[1]
    return name if name in TABLES else None


def ddl_statements(settings: Settings, ddl_dir: Path = DDL_DIR) -> list[str]:
    """Every CREATE statement, retention and insert-dedup window substituted."""
    statements = []
    for path in ddl_files(ddl_dir):
        table = _table_of(path)
        values = {"dedup_window": settings.history_dedup_window}
        if table is not None:
            values["ttl_days"] = ttl_days(settings, table)
        statements.append(Template(path.read_text()).substitute(values).strip())
    return statements


def ttl_statements(settings: Settings) -> list[str]:
    """Re-apply retention to existing tables, so a changed setting takes effect on start.

    Only metadata changes (materialize_ttl_after_modify = 0): old parts expire at their
    next merge rather than in one expensive rewrite.
    """
    out = []
    for path in ddl_files():
        table = _table_of(path)
        if table is None:
            continue
        text = Template(path.read_text()).substitute(
            ttl_days=ttl_days(settings, table), dedup_window=settings.history_dedup_window
        )
        ttl = next(line for line in text.splitlines() if line.startswith("TTL "))
        out.append(
            f"ALTER TABLE {DATABASE}.{table} MODIFY {ttl} SETTINGS materialize_ttl_after_modify = 0"
        )
    return out


# The partition expressions the DDL uses: a day or a month of an epoch-ms column.
_PARTITION_BY = re.compile(
    r"^PARTITION BY (?:(toYYYYMM)\()?toDate\(intDiv\((\w+), 1000\)\)\)?$", re.MULTILINE
)


def partition_keys(ddl_dir: Path = DDL_DIR) -> dict[str, tuple[str, str]]:
    """Per partitioned table, its (epoch-ms column, "day" or "month"), read from the DDL.

    A table absent from the result has no partitions; a PARTITION BY of another shape is
    an error, so the insert limits cannot silently drift from the DDL.
    """
    keys = {}
    for path in ddl_files(ddl_dir):
        table = _table_of(path)
        text = path.read_text()
        if table is None or "PARTITION BY" not in text:
            continue
        match = _PARTITION_BY.search(text)
        if match is None:
            raise HistoryError(f"{path.name}: PARTITION BY of an unknown shape")
        keys[table] = (match.group(2), "month" if match.group(1) else "day")
    return keys
