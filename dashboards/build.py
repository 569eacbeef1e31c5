"""Render every dashboard to Grafana JSON (`fleet dashboards build DIR`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders.dashboard import Dashboard
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as models

from dashboards import (
    completion,
    decisions_eta,
    driver_detail,
    exceptions,
    fleet_overview,
    pipeline_health,
)
from dashboards.sources import register_query_types

OUT = Path(__file__).resolve().parent / "json"
MODULES = (fleet_overview, exceptions, completion, driver_detail, decisions_eta, pipeline_health)
DASHBOARDS: dict[str, Callable[[], Dashboard]] = {m.UID: m.dashboard for m in MODULES}


def as_dict(board: Dashboard) -> dict[str, Any]:
    """The dashboard model as plain JSON data."""
    data: dict[str, Any] = json.loads(json.dumps(board.build(), cls=JSONEncoder))
    return data


def to_text(data: dict[str, Any]) -> str:
    """Stable JSON text: sorted keys, so a change in the code is a readable diff."""
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def render() -> dict[str, str]:
    """File name -> JSON text of every dashboard, in the SDK models' canonical form."""
    return {
        f"{uid}.json": to_text(round_trip(as_dict(build()))) for uid, build in DASHBOARDS.items()
    }


def round_trip(data: dict[str, Any]) -> dict[str, Any]:
    """The dashboard JSON decoded into the SDK's typed models and encoded again.

    Anything the models do not know is lost on the way and their defaults are filled in, so
    a dashboard that survives it (all it said is still there) is made only of what the SDK's
    types (Grafana's schema) define.
    """
    register_query_types()
    model = models.Dashboard.from_json(data)
    again: dict[str, Any] = json.loads(json.dumps(model, cls=JSONEncoder))
    return again


def write(directory: Path) -> list[Path]:
    """Write every dashboard into `directory` (created if missing); the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render().items():
        path = directory / name
        path.write_text(text)
        written.append(path)
    return written


def main() -> None:
    for path in write(OUT):
        print(path)


if __name__ == "__main__":
    main()
