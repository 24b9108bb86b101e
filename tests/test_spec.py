"""Study loading, validation errors, grid expansion, trial ids, smoke mode."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from harness import spec
from harness.errors import StudyError
from tests.conftest import write_study


def test_expand_is_the_cartesian_product_in_order(tiny_study: Path) -> None:
    study = spec.load_study(tiny_study)
    trials = spec.expand(study)
    assert [(t.model.name, t.data_size) for t in trials] == [("resnet@xs", 32), ("resnet@xs", 64), ("vit@xs", 32), ("vit@xs", 64)]
    assert len({t.trial_id for t in trials}) == 4
    assert all(len(t.trial_id) == 12 for t in trials)


def test_trial_id_is_stable_and_tracks_the_config(tmp_path: Path) -> None:
    a = spec.expand(spec.load_study(write_study(tmp_path, name="a")))
    b = spec.expand(spec.load_study(write_study(tmp_path, name="b")))  # renamed study: same ids
    assert [t.trial_id for t in a] == [t.trial_id for t in b]
    c = spec.expand(spec.load_study(write_study(tmp_path, name="c", lr="2.0e-3")))
    assert not {t.trial_id for t in a} & {t.trial_id for t in c}
    # resources do not change what is computed, so they do not change the id
    raw = yaml.safe_load(write_study(tmp_path, name="d").read_text())
    raw["resources"] = {"cpus": 2, "gpus": 0}
    d = spec.expand(spec.parse_study(raw))
    assert [t.trial_id for t in d] == [t.trial_id for t in a]


def test_explicit_shape_and_defaults(tmp_path: Path) -> None:
    p = write_study(tmp_path, models="[{family: vit, patch: 4, width: 32, depth: 2, heads: 2}]", data_sizes="[16]")
    (t,) = spec.expand(spec.load_study(p))
    assert t.model.family == "vit" and t.model.shape["width"] == 32
    assert t.train["optimizer"] == "adamw" and t.train["schedule"] == "cosine"


def test_smoke_keeps_the_grid_shape(tmp_path: Path) -> None:
    study = spec.load_study(Path(__file__).parent.parent / "studies" / "quickstart.yaml")
    small = spec.smoke(study)
    assert len(spec.expand(small)) == len(spec.expand(study)) == 12
    assert small.name == "quickstart-smoke"
    assert small.grid["data_size"] == [20, 80, 320]
    assert small.train["steps"] == spec.SMOKE_STEPS and small.profile["iters"] == 2
    assert spec.smoke_sizes([1000, 500, 32000, 2000], floor=20) == [21, 20, 640, 40]


BAD = [
    ("grid: [", "YAML syntax error at line", ""),
    ("name: x\ngrid: {model: [vit@xs], data_size: [10]}\ntrian: {steps: 3}\n", "unknown key 'trian'", "did you mean train"),
    ("name: x\ngrid: {model: [vit@xs], data_size: [10]}\ntrain: {step: 3}\n", "train.step: unknown key", "did you mean steps"),
    ("name: x\ngrid: {model: [vitt@xs], data_size: [100]}\n", "grid.model[0]", "did you mean vit"),
    ("name: x\ngrid: {model: [vit@xss], data_size: [100]}\n", "grid.model[0]", "vit@xs"),
    ("name: x\ngrid: {model: [vit@xs], data_size: [100], image_size: [30]}\n", "grid.model[0] x grid.image_size[0]", ""),
    ("name: x\ngrid: {model: [convnext@xs], data_size: [100], image_size: [8]}\n", "cannot take 8 px", ""),
    ("name: x\ngrid: {model: [vit@xs], data_size: [0]}\n", "grid.data_size[0]: must be a positive integer", ""),
    ("name: x\ngrid: {model: [vit@xs], data_size: [70000]}\n", "larger than the fashion_mnist training split", "at most 60000"),
    ("name: x\ngrid: {model: [vit@xs]}\n", "missing required axis 'data_size'", ""),
    ("grid: {model: [vit@xs], data_size: [10]}\n", "missing required key 'name'", ""),
    ("name: x\ndataset: {name: mnist}\ngrid: {model: [vit@xs], data_size: [10]}\n", "unknown dataset 'mnist'", "fashion_mnist"),
    ("name: x\ngrid: {model: [vit@xs], data_size: [100]}\ntrain: {lr: 2e-3}\n", "train.lr", "'.0'"),
    (
        "name: x\ngrid: {model: [vit@xs], data_size: [100]}\ntrain: {steps: 5, epochs: 2}\n",
        "both train.steps and train.epochs",
        "",
    ),
    ("name: x\ngrid: {model: [vit@xs], data_size: [100]}\ntrain: {optimizer: adam}\n", "unknown optimizer", "adamw"),
    ("name: x\ngrid: {model: [vit@xs], data_size: [100]}\nresources: {cpus: 0}\n", "resources.cpus", ""),
    ("name: 'a b'\ngrid: {model: [vit@xs], data_size: [100]}\n", "invalid study name", ""),
]


@pytest.mark.parametrize("text,message,fix", BAD)
def test_bad_input_names_file_key_and_fix(tmp_path: Path, text: str, message: str, fix: str) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(StudyError) as e:
        spec.load_study(p)
    line = e.value.line()
    assert line.startswith(str(p)), line
    assert message in line, line
    assert fix in line, line
    assert e.value.fix, "every error says how to fix it"
    assert "\n" not in line


def test_missing_fashion_mnist_says_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.data import builtin  # where the Fashion-MNIST search reads DEBIAN_FASHION

    monkeypatch.setattr(builtin, "DEBIAN_FASHION", tmp_path / "none")
    monkeypatch.delenv("HARNESS_DATA", raising=False)
    p = tmp_path / "s.yaml"
    p.write_text("name: x\ngrid: {model: [vit@xs], data_size: [100]}\n")
    with pytest.raises(StudyError, match="apt-get install dataset-fashion-mnist"):
        spec.load_study(p)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(StudyError, match="study file not found"):
        spec.load_study(tmp_path / "nope.yaml")
