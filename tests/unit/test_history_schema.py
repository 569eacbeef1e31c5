"""The DDL files with retention and the insert-dedup window filled in from settings."""

from __future__ import annotations

from pathlib import Path

from fleet.history.schema import TABLES, ddl_statements, ttl_statements
from fleet.settings import Settings


def test_every_contract_table_has_a_statement_with_its_own_retention(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path, history_ttl_days_pings=3, history_ttl_days_etas=11)
    statements = ddl_statements(settings)
    assert statements[0].endswith("CREATE DATABASE IF NOT EXISTS fleet")
    by_table = {t: next(s for s in statements if f"fleet.{t}\n" in s) for t in TABLES}
    assert "INTERVAL 3 DAY" in by_table["pings"]
    assert "INTERVAL 11 DAY" in by_table["etas"]
    assert all("${" not in s for s in statements)


def test_retention_is_reapplied_to_existing_tables_without_a_rewrite(tmp_path: Path) -> None:
    statements = ttl_statements(Settings(var_dir=tmp_path, history_ttl_days_alerts=9))
    assert len(statements) == len(TABLES)
    alerts = next(s for s in statements if "fleet.alerts" in s)
    assert "MODIFY TTL" in alerts and "INTERVAL 9 DAY" in alerts
    assert all("materialize_ttl_after_modify = 0" in s for s in statements)
