"""The grid grammar: training keys as axes, zip groups, per-family/model overrides, their errors,
and trial-id stability when axes are added (issue 11 items 1-2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import spec, store
from harness.cli import main
from harness.errors import StudyError
from tests.conftest import write_study


def _study(
    tmp_path: Path, grid_extra: str = "", extra: str = "", models: str = "[resnet@xs, vit@xs]", name: str = "g"
) -> spec.Study:
    p = write_study(tmp_path, name=name, models=models, extra=extra)
    if grid_extra:  # add lines under grid:
        text = p.read_text().replace("  seed: [0]\n", "  seed: [0]\n" + grid_extra)
        p.write_text(text)
    return spec.load_study(p)


def _ids(study: spec.Study) -> list[str]:
    return [t.trial_id for t in spec.expand(study)]


def test_train_key_axis_crosses_the_grid_and_keeps_existing_ids(tmp_path: Path) -> None:
    base = _study(tmp_path)
    swept = _study(tmp_path, "  lr: [1.0e-3, 3.0e-3]\n")
    trials = spec.expand(swept)
    assert len(trials) == 2 * len(spec.expand(base))
    assert [(t.model.name, t.data_size, t.train["lr"]) for t in trials[:4]] == [
        ("resnet@xs", 32, 1e-3),
        ("resnet@xs", 32, 3e-3),
        ("resnet@xs", 64, 1e-3),
        ("resnet@xs", 64, 3e-3),
    ]
    # the cells whose lr equals the train section's are the very trials of the study without the axis
    assert set(_ids(base)) <= set(_ids(swept))
    assert set(_ids(base)) == {t.trial_id for t in trials if t.train["lr"] == 1e-3}
    # a single-valued axis equal to the train section changes nothing
    assert _ids(_study(tmp_path, "  lr: [1.0e-3]\n")) == _ids(base)
    assert spec.varying_train_keys(trials) == ["lr"]


def test_budget_axis_replaces_the_train_sections_budget(tmp_path: Path) -> None:
    s = _study(tmp_path, "  epochs: [1, 2]\n")
    assert {(t.train["steps"], t.train["epochs"]) for t in spec.expand(s)} == {(None, 1), (None, 2)}
    s = _study(tmp_path, "  steps: [6]\n")  # the section's steps (4) replaced by the axis
    assert {t.train["steps"] for t in spec.expand(s)} == {6}


def test_zip_pairs_axes_and_crosses_the_rest(tmp_path: Path) -> None:
    p = write_study(tmp_path, models="[resnet@xs]")
    text = (
        p.read_text()
        .replace("  model: [resnet@xs]\n", "")
        .replace("  image_size: [16]\n", "  zip: [{model: [resnet@xs, vit@xs], image_size: [16, 32], lr: [1.0e-3, 3.0e-3]}]\n")
    )
    p.write_text(text)
    trials = spec.expand(spec.load_study(p))
    assert [(t.model.name, t.image_size, t.train["lr"], t.data_size) for t in trials] == [
        ("resnet@xs", 16, 1e-3, 32),
        ("resnet@xs", 16, 1e-3, 64),
        ("vit@xs", 32, 3e-3, 32),
        ("vit@xs", 32, 3e-3, 64),
    ]


def test_overrides_model_beats_family_beats_axis_beats_train(tmp_path: Path) -> None:
    s = _study(
        tmp_path,
        "  lr: [1.0e-3, 3.0e-3]\n",
        models="[resnet@xs, resnet@s, vit@xs]",
        extra='overrides: {resnet: {weight_decay: 0.1, lr: 5.0e-4}, "resnet@s": {weight_decay: 0.2}, vit: {lr: [2.0e-4, 4.0e-4]}}\n',
    )
    got = {(t.model.name, t.train["lr"], t.train["weight_decay"]) for t in spec.expand(s) if t.data_size == 32}
    assert got == {("resnet@xs", 5e-4, 0.1), ("resnet@s", 5e-4, 0.2), ("vit@xs", 2e-4, 0.05), ("vit@xs", 4e-4, 0.05)}
    # the scalar family override collapsed resnet's two grid lrs into one cell each
    assert len(spec.expand(s)) == 2 * (1 + 1 + 2)


BAD = [
    ("  train.lr: [1.0e-3]\n", "", "grid.train.lr: write a training-key axis without 'train.'", ""),
    ("  lrr: [1.0e-3]\n", "", "grid.lrr: unknown key", "did you mean lr"),
    ("  lr: [1.0e-3, 0]\n", "", "grid.lr[1]: train.lr is 0", ""),
    ("  warmup_steps: [-1]\n", "", "grid.warmup_steps[0]: must be a non-negative integer", ""),
    ("  augment: [flipp]\n", "", "grid.augment[0]: unknown augment", "did you mean flip"),
    (
        "  zip: [{lr: [1.0e-3, 2.0e-3], weight_decay: [0.1]}]\n",
        "",
        "grid.zip[0]: zip group lists differ in length (lr: 2, weight_decay: 1)",
        "",
    ),
    ("  zip: [{seed: [0, 1], lr: [1.0e-3, 2.0e-3]}]\n", "", "grid.zip[0].seed: axis 'seed' is given twice", ""),
    ("", "overrides: {vitt: {lr: 1.0e-3}}\n", "overrides.vitt: unknown family 'vitt'", "did you mean vit"),
    ("", "overrides: {mixer: {lr: 1.0e-3}}\n", "overrides.mixer: no model of family 'mixer' in grid.model", ""),
    ("", 'overrides: {"vit@s": {lr: 1.0e-3}}\n', "overrides.vit@s: model vit@s is not in grid.model", ""),
    ("", "overrides: {vit: {lrr: 1.0e-3}}\n", "overrides.vit.lrr: unknown key", "did you mean lr"),
    ("", "overrides: {vit: {lr: [1.0e-3, -1.0]}}\n", "overrides.vit.lr[1]: train.lr must be a non-negative number", ""),
    (
        "  early_stop: [{patience: 2, max_steps: 8}]\n",
        "",
        "grid.early_stop[0]: early stopping watches the validation split",
        "val_size",
    ),
    (
        "  val_size: [250]\n",
        "",
        "grid.data_size: data_size 32 + val_size 250 is larger than the synthetic training split (256 images)",
        "at most 6",
    ),
]


@pytest.mark.parametrize("grid_extra,extra,message,fix", BAD)
def test_bad_grid_input_is_one_line(tmp_path: Path, grid_extra: str, extra: str, message: str, fix: str) -> None:
    with pytest.raises(StudyError) as e:
        _study(tmp_path, grid_extra, extra=extra)
    line = e.value.line()
    assert "\n" not in line and message in line and fix in line, line


def test_early_stop_grammar(tmp_path: Path) -> None:
    s = _study(tmp_path, "  early_stop: [{patience: 2, max_steps: 8}]\n  val_size: [40]\n")
    (t, *_) = spec.expand(s)
    assert t.train["steps"] is None and t.train["early_stop"] == {"patience": 2, "max_steps": 8} and t.train["val_size"] == 40
    with pytest.raises(StudyError, match="one ceiling"):
        _study(tmp_path, extra="", grid_extra="  val_size: [40]\n  early_stop: [{patience: 2}]\n")
    with pytest.raises(StudyError, match="train.steps and train.early_stop are both set"):
        p = write_study(tmp_path, name="h")
        p.write_text(
            p.read_text().replace("warmup_steps: 1,", "warmup_steps: 1, val_size: 40, early_stop: {patience: 2, max_steps: 8},")
        )
        spec.load_study(p)


def test_adding_an_lr_value_reruns_only_the_new_cells(tmp_path: Path) -> None:
    res = tmp_path / "res"
    p = write_study(tmp_path, name="grow", models="[resnet@xs]", data_sizes="[32]", steps=2)
    p.write_text(p.read_text().replace("  seed: [0]\n", "  seed: [0]\n  lr: [1.0e-3]\n"))
    assert main(["run", str(p), "--backend", "local", "--results", str(res), "--no-report"]) == 0
    before = {f.name: f.stat().st_mtime_ns for f in (res / "grow" / "trials").iterdir()}
    assert len(before) == 1
    p.write_text(p.read_text().replace("  lr: [1.0e-3]\n", "  lr: [1.0e-3, 3.0e-3]\n"))
    assert main(["run", str(p), "--backend", "local", "--results", str(res), "--no-report"]) == 0
    after = {f.name: f.stat().st_mtime_ns for f in (res / "grow" / "trials").iterdir()}
    assert len(after) == 2 and {k: after[k] for k in before} == before  # the old row untouched, one new row
    df = store.read(res / "grow")
    assert sorted(df["lr"]) == [1e-3, 3e-3]


def test_smoke_applies_to_every_cell(tmp_path: Path) -> None:
    s = _study(tmp_path, "  steps: [10, 20]\n  batch_size: [8, 64]\n")
    small = spec.expand(spec.smoke(s))
    assert {t.train["steps"] for t in small} == {spec.SMOKE_STEPS} and {t.train["batch_size"] for t in small} == {8, 32}
