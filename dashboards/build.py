"""Write every dashboard as Grafana JSON into dashboards/json/ (provisioned by docker compose)."""

from __future__ import annotations

import json
from pathlib import Path

from dashboards import pipeline_health

OUT = Path(__file__).resolve().parent / "json"
DASHBOARDS = {"pipeline-health.json": pipeline_health.dashboard}


def render() -> dict[str, str]:
    return {
        name: json.dumps(build(), indent=2, sort_keys=True) + "\n"
        for name, build in DASHBOARDS.items()
    }


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for name, text in render().items():
        (OUT / name).write_text(text)
        print(OUT / name)


if __name__ == "__main__":
    main()
