"""Versioned ETA models on disk: artifact + metadata per version, one promoted pointer.

Layout under the registry root (``$FLEET_VAR_DIR/models/eta`` by default)::

    eta-7/model.pkl        the pickled EtaArtifact
    eta-7/meta.json        features, training window, metrics, evaluations, created, code
    eta-7/reports/         evaluation reports (markdown + PNG)
    PROMOTED               {"version": "eta-7", "promoted_ms": ...}, replaced atomically
    promotions.jsonl       every promotion, in order (a rollback is a promotion)

Workers poll ``PROMOTED`` (its content, not only its mtime) and load the new artifact.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleet.clock import now_ms
from fleet.errors import FleetError
from fleet.settings import PROJECT_ROOT, Settings
from models.estimators import EtaModel
from models.features import ZoneSpeeds

VERSION_RE = re.compile(r"\Aeta-([1-9][0-9]{0,8})\Z")
PROMOTED = "PROMOTED"


class RegistryError(FleetError, LookupError):
    """A model version is unknown, unreadable or cannot be promoted."""


@dataclass(frozen=True, slots=True)
class EtaArtifact:
    """Everything a worker needs to predict: the model and the speed table it was fit with."""

    model: EtaModel
    speeds: ZoneSpeeds
    zone_resolution: int


def registry_root(settings: Settings) -> Path:
    """Where versions live."""
    return settings.var_dir / "models" / "eta"


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=5, check=True
    ).stdout.strip()


def code_version() -> str:
    """The git commit of the checkout (with ``-dirty`` if models/ has changes), or ``unknown``."""
    try:
        commit = _git("rev-parse", "HEAD")
        dirty = _git("status", "--porcelain", "--", "models")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


class ModelRegistry:
    """Versions ``eta-1``, ``eta-2``, ... in a directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _dir(self, version: str) -> Path:
        if not VERSION_RE.match(version):
            raise RegistryError(f"model version {version!r} is not of the form eta-<n>")
        path = self.root / version
        if not (path / "meta.json").is_file():
            raise RegistryError(f"no model {version} in {self.root}")
        return path

    def versions(self) -> list[str]:
        """Every registered version, oldest first."""
        if not self.root.is_dir():
            return []
        found = [m for p in self.root.iterdir() if (m := VERSION_RE.match(p.name))]
        return [
            f"eta-{n}"
            for n in sorted(int(m.group(1)) for m in found)
            if (self.root / f"eta-{n}" / "meta.json").is_file()
        ]

    def register(self, artifact: EtaArtifact, metadata: dict[str, Any]) -> str:
        """Store a new version (the next free number) and return its name."""
        self.root.mkdir(parents=True, exist_ok=True)
        n = max((int(v.split("-")[1]) for v in self.versions()), default=0) + 1
        while True:
            path = self.root / f"eta-{n}"
            try:
                path.mkdir()  # atomic: two trainers never get the same number
                break
            except FileExistsError:
                n += 1
        version = path.name
        (path / "model.pkl").write_bytes(pickle.dumps(artifact, protocol=5))
        meta = {"version": version, "created_ms": now_ms(), "code_version": code_version()}
        meta.update(metadata)
        meta.setdefault("evaluations", [])
        _write_atomic(path / "meta.json", json.dumps(meta, indent=2, sort_keys=True))
        return version

    def metadata(self, version: str) -> dict[str, Any]:
        """The metadata of a version."""
        meta: dict[str, Any] = json.loads((self._dir(version) / "meta.json").read_text())
        return meta

    def add_evaluation(self, version: str, evaluation: dict[str, Any]) -> None:
        """Record an evaluation (the latest one decides promotion)."""
        meta = self.metadata(version)
        meta["evaluations"] = [*meta.get("evaluations", []), evaluation]
        _write_atomic(self._dir(version) / "meta.json", json.dumps(meta, indent=2, sort_keys=True))

    def load(self, version: str) -> EtaArtifact:
        """The artifact of a version."""
        path = self._dir(version) / "model.pkl"
        try:
            artifact = pickle.loads(path.read_bytes())
        except (OSError, pickle.UnpicklingError, AttributeError, EOFError) as exc:
            raise RegistryError(f"cannot load {version} from {path}: {exc}") from exc
        if not isinstance(artifact, EtaArtifact):
            raise RegistryError(f"{path} does not hold an EtaArtifact")
        return artifact

    def report_dir(self, version: str) -> Path:
        """Where evaluation reports of a version go."""
        path = self._dir(version) / "reports"
        path.mkdir(exist_ok=True)
        return path

    def promoted(self) -> str | None:
        """The promoted version, or None."""
        try:
            version: str = json.loads((self.root / PROMOTED).read_text())["version"]
        except (OSError, ValueError, KeyError):
            return None
        return version

    def set_promoted(self, version: str) -> dict[str, Any]:
        """Make a version the one workers use (after the checks passed; see models.checks)."""
        self._dir(version)
        record = {"version": version, "promoted_ms": now_ms()}
        _write_atomic(self.root / PROMOTED, json.dumps(record))
        with open(self.root / "promotions.jsonl", "a") as log:
            log.write(json.dumps(record) + "\n")
        return record
