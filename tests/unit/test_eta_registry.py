"""The model registry: numbered versions, metadata, promotion only past the checks, rollback."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from fleet.settings import Settings
from models import cli
from models.estimators import EtaModel, EtaModelParams
from models.features import ZoneSpeeds
from models.registry import EtaArtifact, ModelRegistry, RegistryError, registry_root
from tests.unit.test_eta_model_contract import synthetic

GOOD = {"n": 5000, "mae_s": 200.0, "baseline_mae_s": 400.0, "coverage_p10_p90": 0.8}


@pytest.fixture(scope="module")
def artifact() -> EtaArtifact:
    batch, y = synthetic(600)
    model = EtaModel(EtaModelParams(max_iter=5)).fit(batch, y)
    return EtaArtifact(model, ZoneSpeeds({}, {}, 8.0), 7)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(var_dir=tmp_path)


def _register(settings: Settings, artifact: EtaArtifact, evaluation: dict | None) -> str:
    registry = ModelRegistry(registry_root(settings))
    version = registry.register(artifact, {"training_window": {"since_ms": 0, "until_ms": 1}})
    if evaluation is not None:
        registry.add_evaluation(version, evaluation)
    return version


def _run(handler, settings: Settings, capsys, **kwargs) -> tuple[int, object]:
    rc = handler(argparse.Namespace(json=True, **kwargs), settings)
    return rc, json.loads(capsys.readouterr().out)


def test_versions_are_numbered_in_order_with_metadata(settings, artifact) -> None:
    first = _register(settings, artifact, None)
    second = _register(settings, artifact, None)
    registry = ModelRegistry(registry_root(settings))
    assert (first, second) == ("eta-1", "eta-2")
    assert registry.versions() == ["eta-1", "eta-2"]
    meta = registry.metadata("eta-2")
    assert meta["code_version"] and meta["created_ms"] > 0 and meta["evaluations"] == []
    assert isinstance(registry.load("eta-1").model, EtaModel)


def test_unknown_or_malformed_versions_are_clear_errors(settings) -> None:
    registry = ModelRegistry(registry_root(settings))
    with pytest.raises(RegistryError, match="no model eta-9"):
        registry.metadata("eta-9")
    with pytest.raises(RegistryError, match="not of the form"):
        registry.metadata("../etc")


def test_promote_refuses_a_model_without_held_out_evaluation(settings, artifact, capsys) -> None:
    version = _register(settings, artifact, None)
    rc, out = _run(cli._cmd_promote, settings, capsys, version=version)
    assert rc == 1 and out["promoted"] is False
    assert ModelRegistry(registry_root(settings)).promoted() is None


def test_promote_refuses_a_model_no_better_than_the_baseline(settings, artifact, capsys) -> None:
    version = _register(settings, artifact, {**GOOD, "mae_s": 390.0})
    rc, out = _run(cli._cmd_promote, settings, capsys, version=version)
    failed = {c["name"] for c in out["checks"] if not c["passed"]}
    assert rc == 1 and failed == {"beats_baseline"}


def test_promote_refuses_miscalibrated_intervals(settings, artifact, capsys) -> None:
    version = _register(settings, artifact, {**GOOD, "coverage_p10_p90": 0.6})
    rc, out = _run(cli._cmd_promote, settings, capsys, version=version)
    assert rc == 1 and {c["name"] for c in out["checks"] if not c["passed"]} == {"coverage"}


def test_promote_then_roll_back_by_promoting_the_older_version(settings, artifact, capsys) -> None:
    old = _register(settings, artifact, GOOD)
    new = _register(settings, artifact, GOOD)
    assert _run(cli._cmd_promote, settings, capsys, version=new)[0] == 0
    rc, out = _run(cli._cmd_promote, settings, capsys, version=old)
    assert rc == 0 and out["previous"] == new
    _, listing = _run(cli._cmd_list, settings, capsys)
    assert [(r["version"], r["promoted"]) for r in listing] == [(old, True), (new, False)]
    assert set(listing[0]) >= {"version", "promoted", "created_ms", "metrics"}
    lines = (registry_root(settings) / "promotions.jsonl").read_text().splitlines()
    assert [json.loads(line)["version"] for line in lines] == [new, old]
