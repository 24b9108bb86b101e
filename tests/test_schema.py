"""`harness schema`: every shipped study validates against it, an unknown key does not, and it is
made from the loader's own tables (a train key without a type fails here, not in an editor)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from harness import spec
from harness.cli import main
from harness.spec.jsonschema import study_schema

ROOT = Path(__file__).resolve().parents[1]
STUDIES = sorted([*(ROOT / "studies").glob("*.yaml"), *(ROOT / "docs" / "studies").glob("*.yaml")])


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = study_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.stem)
def test_every_shipped_study_validates(validator: jsonschema.Draft202012Validator, path: Path) -> None:
    errors = [f"{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(yaml.safe_load(path.read_text()))]
    assert not errors, errors


@pytest.mark.parametrize("where", ["", "train", "profile", "grid", "tracking"])
def test_an_unknown_key_is_refused(validator: jsonschema.Draft202012Validator, where: str) -> None:
    study = yaml.safe_load(STUDIES[0].read_text())
    (study.setdefault(where, {}) if where else study)["lerning_rate"] = 1
    assert not validator.is_valid(study)


def test_a_wrong_choice_is_refused(validator: jsonschema.Draft202012Validator) -> None:
    study = {"name": "x", "grid": {"model": ["vit@xs"]}, "train": {"optimizer": "adam"}}
    assert not validator.is_valid(study)
    assert validator.is_valid({**study, "train": {"optimizer": "sgd"}})


def test_the_schema_has_every_key_of_the_loader() -> None:
    s = study_schema()
    assert set(s["properties"]) == spec.TOP_KEYS
    train = s["properties"]["train"]["properties"]
    assert set(train) == set(spec.TRAIN_DEFAULTS)
    assert train["optimizer"] == {"enum": list(spec.CHOICES["optimizer"]), "default": "adamw"}
    assert set(s["properties"]["grid"]["properties"]) == spec.GRID_KEYS | set(spec.TRAIN_DEFAULTS) | {"zip"}
    assert set(s["properties"]["resources"]["properties"]) == set(spec.RESOURCE_DEFAULTS)  # workers, nodes, memory_mb too
    assert set(s["properties"]["profile"]["properties"]) == set(spec.PROFILE_DEFAULTS)


def test_resources_of_a_data_parallel_trial_validate(validator: jsonschema.Draft202012Validator) -> None:
    study = {"name": "x", "grid": {"model": ["vit@xs"]}, "resources": {"cpus": 8, "gpus": 1, "workers": 8, "nodes": 2}}
    assert validator.is_valid(study)
    assert validator.is_valid({**study, "resources": {"memory_mb": 64000}})


def test_the_verb_prints_it_and_writes_it(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out) == study_schema()
    assert main(["schema", "--out", str(tmp_path / "s.json")]) == 0
    assert json.loads((tmp_path / "s.json").read_text()) == study_schema()
