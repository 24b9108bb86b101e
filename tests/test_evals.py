"""Probe and few-shot evaluation (harness/evals.py, issue 16): the fits recover a known linear
separation, few-shot draws are deterministic and class-balanced, features come from the backbone
without its head for every family, an `eval:` section writes its columns (also for an untrained
model and for a transfer dataset), the analysis verbs take them, and bad sections are one line."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from harness import data, evals, features, spec, store, zoo
from harness.errors import StudyError
from harness.trial import run_trial
from tests.analysis_fixtures import make_rows, store_dtypes
from tests.conftest import write_study


def _blobs(
    n_per_class: int, classes: int = 4, dim: int = 16, seed: int = 0, scale: float = 4.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian blobs (unit noise) around fixed random centres, `scale` per coordinate: every
    coordinate carries class signal (pure-noise coordinates are what whitening a few shots
    amplifies: see README). At scale 4 the classes are linearly separable."""
    centres = scale * torch.randn(classes, dim, generator=torch.Generator().manual_seed(99))
    y = torch.arange(classes).repeat_interleave(n_per_class)
    return centres[y] + torch.randn(len(y), dim, generator=torch.Generator().manual_seed(seed)), y


# ----------------------------------------------------------------------------- the fits


@pytest.mark.parametrize("with_val", [True, False])
def test_linear_probe_separates_gaussian_blobs(with_val: bool) -> None:
    train, test = _blobs(40, seed=0), _blobs(50, seed=1)
    got = evals.linear_probe(train, test, 4, val=_blobs(10, seed=2) if with_val else None, seed=0)
    assert got["probe_acc"] == 1.0
    assert got["probe_l2"] in evals.PROBE_L2_GRID
    assert got["probe_l2_from"] == ("val" if with_val else "holdout")


def test_linear_probe_learns_the_labels_not_a_constant() -> None:
    x, y = _blobs(40)
    w, b = evals.fit_logistic(x, y, 4, 1e-4)
    assert ((x @ w + b).argmax(1) == y).all()
    flipped = (y + 1) % 4  # the same features, other labels: the probe follows the labels
    w, b = evals.fit_logistic(x, flipped, 4, 1e-4)
    assert ((x @ w + b).argmax(1) == flipped).all()


@pytest.mark.parametrize("shots", [1, 5, 25])
def test_ridge_fewshot_separates_gaussian_blobs(shots: int) -> None:
    x, y = _blobs(shots, dim=32, seed=3)  # N < D for 1 and 5 shots (the N x N system), N >= D for 25
    xt, yt = _blobs(50, dim=32, seed=4)
    assert evals.ridge_fewshot(x, y, xt, yt, 4) == 1.0


def test_ridge_fewshot_matches_the_primal_solution() -> None:
    """The N x N (dual) system gives the predictions of big_vision's primal (X^T X + l2 I)^-1 X^T Y."""
    x, y = _blobs(2, dim=32, scale=0.3)  # N = 8 < D + 1: the dual system; overlapping classes
    xt, yt = _blobs(50, dim=32, seed=6, scale=0.3)
    x64, xt64 = x.double(), xt.double()
    mean, std = x64.mean(0), x64.std(0, unbiased=False) + 1e-5
    a = torch.nn.functional.pad((x64 - mean) / std, (0, 1), value=100.0)
    t = 2.0 * torch.nn.functional.one_hot(y, 4).double() - 1.0
    w = torch.linalg.solve(a.T @ a + 1024.0 * torch.eye(33, dtype=a.dtype), a.T @ t)
    pred = (torch.nn.functional.pad((xt64 - mean) / std, (0, 1), value=100.0) @ w).argmax(1)
    want = (pred == yt).double().mean().item()
    assert 0.3 < want < 1.0  # a task where the two could disagree
    assert evals.ridge_fewshot(x, y, xt, yt, 4) == pytest.approx(want)


def test_few_shot_draws_are_deterministic_balanced_and_differ() -> None:
    labels = torch.arange(5).repeat(40)[torch.randperm(200, generator=torch.Generator().manual_seed(0))]
    draws = [evals.few_shot_indices(labels, 10, seed=3, draw=d) for d in range(3)]
    for d, idx in enumerate(draws):
        assert torch.equal(idx, evals.few_shot_indices(labels, 10, seed=3, draw=d))  # deterministic
        assert len(set(idx.tolist())) == 50  # no image twice
        assert torch.bincount(labels[idx], minlength=5).tolist() == [10] * 5  # class-balanced
    assert len({tuple(sorted(i.tolist())) for i in draws}) == 3  # each draw its own images
    other_seed = evals.few_shot_indices(labels, 10, seed=4, draw=0)
    assert set(other_seed.tolist()) != set(draws[0].tolist())
    with pytest.raises(ValueError, match="fewer than the 41 shots"):
        evals.few_shot_indices(labels, 41, seed=0, draw=0)


def test_holdout_is_stratified_and_keeps_every_class() -> None:
    labels = torch.tensor([0] * 10 + [1] * 5 + [2] * 1)
    keep, held = evals.holdout(labels, seed=0)
    assert sorted(keep.tolist() + held.tolist()) == list(range(16))
    assert torch.bincount(labels[held], minlength=3).tolist() == [2, 1, 0]
    assert set(labels[keep].tolist()) == {0, 1, 2}


# ----------------------------------------------------------------------------- features


@pytest.mark.parametrize("family", zoo.families())
def test_features_come_from_the_backbone_without_the_head(family: str) -> None:
    ms = zoo.resolve(f"{family}@xs")
    size = zoo.default_image_size(ms)
    frames = 4 if zoo.is_video(ms) else 0  # video families take [B, C, T, H, W] clips
    torch.manual_seed(0)
    model = zoo.build(ms, image_size=size, in_chans=1, num_classes=5, frames=frames).eval()
    x = torch.randn(3, 1, frames, size, size) if frames else torch.randn(3, 1, size, size)
    head = features.head_of(model)
    with torch.no_grad():
        feats = features.pooled_features(model, x)
        assert feats.shape == (3, head.in_features)
        assert torch.allclose(head(feats), model(x), atol=1e-5)  # the head is all that is left out
        logits = model(x)
        head.weight.normal_()
        head.bias.fill_(3.0)
        assert torch.equal(features.pooled_features(model, x), feats)  # the head does not reach the features
        assert not torch.allclose(model(x), logits)


# ----------------------------------------------------------------------------- trials

EVAL = """
eval: {linear_probe: true, few_shot: [1, 3, 5], few_shot_draws: 2}
"""


def test_trial_with_an_eval_section_writes_the_columns(tmp_path: Path) -> None:
    from harness.cli import main

    path = write_study(tmp_path, models="[resnet@xs]", data_sizes="[32]", steps=2, extra=EVAL)
    assert main(["run", str(path), "--backend", "local", "--results", str(tmp_path / "res"), "--no-report"]) == 0
    (row,) = store.read(tmp_path / "res" / "tiny").to_dict("records")
    assert row["status"] == "ok", row["error"]
    assert 0 <= row["probe_acc"] <= 1 and row["probe_l2"] in evals.PROBE_L2_GRID
    assert row["probe_l2_from"] == "holdout"  # no validation split
    for k in (1, 3, 5):  # 3-shot: an extra column beside the schema's
        assert 0 <= row[f"fewshot_{k}_acc"] <= 1 and row[f"fewshot_{k}_acc_std"] >= 0
    assert np.isnan(row["fewshot_10_acc"])  # in the schema, not asked for: NaN
    assert row["eval_time_s"] > 0
    assert set(evals.NOT_EVALUATED) <= set(store.COLUMNS)
    (trial,) = spec.expand(spec.load_study(path))
    again = run_trial(trial).row  # deterministic: the same draws, fits and accuracies
    assert (again["fewshot_5_acc"], again["probe_acc"]) == (row["fewshot_5_acc"], row["probe_acc"])


def test_eval_section_changes_the_trial_id_only_when_present(tmp_path: Path) -> None:
    plain = spec.expand(spec.load_study(write_study(tmp_path, name="a")))
    same = spec.expand(spec.load_study(write_study(tmp_path, name="b", extra="eval: null\n")))
    probed = spec.expand(spec.load_study(write_study(tmp_path, name="c", extra=EVAL)))
    assert [t.trial_id for t in plain] == [t.trial_id for t in same]
    assert "eval" not in plain[0].config() and probed[0].config()["eval"]["few_shot"] == [1, 3, 5]
    assert not {t.trial_id for t in plain} & {t.trial_id for t in probed}
    smoked = spec.expand(spec.smoke(spec.load_study(write_study(tmp_path, name="d", extra=EVAL))))
    assert all(t.eval == probed[0].eval for t in smoked)  # --smoke keeps the section


def test_untrained_model_is_probed_with_steps_0(tmp_path: Path) -> None:
    """steps 0 + eval: the randomly initialised backbone's probes (the baseline of a pretraining
    objective), on the data_size the grid gives (kept, unlike a profile-only study)."""
    (trial,) = spec.expand(spec.load_study(write_study(tmp_path, name="u", models="[vit@xs]", data_sizes="[24]", steps=0)))
    assert trial.data_size == 0  # profile only: no data axis without an eval section
    text = write_study(tmp_path, name="p", models="[vit@xs]", data_sizes="[24]", steps=0).read_text()
    (tmp_path / "p.yaml").write_text(text.replace("train: {steps: 0,", "train: {steps: 0, val_size: 40,") + EVAL)
    (trial,) = spec.expand(spec.load_study(tmp_path / "p.yaml"))
    assert trial.data_size == 24
    row = run_trial(trial).row
    assert row["status"] == "ok", row.get("error")
    assert row["probe_l2_from"] == "val" and 0 <= row["probe_acc"] <= 1
    assert "test_acc" not in row and row["fewshot_1_acc"] >= 0


def _balanced_cifar(root: Path, per_batch: int = 10, test: int = 20) -> Path:
    """A tiny cifar-10-batches-py (the real pickled layout) with every class in every batch."""
    d = root / data.CIFAR_DIR
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in data.CIFAR_FILES:
        n = test if name == "test_batch" else per_batch
        batch = {b"labels": [i % 10 for i in range(n)], b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8)}
        with open(d / name, "wb") as f:
            pickle.dump(batch, f)
    return root


def test_transfer_dataset_columns_are_prefixed(tmp_path: Path) -> None:
    root = _balanced_cifar(tmp_path / "data")
    extra = f"""
    eval:
      linear_probe: true
      few_shot: [2]
      few_shot_draws: 2
      datasets: [{{name: cifar10, root: {root}}}, {{name: synthetic, channels: 3, num_classes: 3, label: rgb}}]
    """
    study = spec.load_study(write_study(tmp_path, models="[mlp@xs]", data_sizes="[32]", steps=1, extra=extra))
    (trial,) = spec.expand(study)
    assert trial.eval["datasets"][0] == {"label": "cifar10", "name": "cifar10", "root": str(root)}
    row = run_trial(trial).row
    assert row["status"] == "ok", row.get("error")
    for prefix in ("", "cifar10_", "rgb_"):
        assert 0 <= row[f"{prefix}probe_acc"] <= 1 and 0 <= row[f"{prefix}fewshot_2_acc"] <= 1, prefix
    assert row["cifar10_eval_time_s"] <= row["eval_time_s"]


def test_channels_are_adapted_by_luminance_and_repetition(tmp_path: Path) -> None:
    rgb = data.load({"name": "synthetic", "channels": 3, "num_classes": 2, "train_size": 8, "test_size": 4})
    grey = evals.adapt_channels(rgb, 1)
    assert grey.train.images.shape == (8, 1, 28, 28) and grey.info.in_chans == 1 and len(grey.mean) == 1
    want = (rgb.train.images.float() * torch.tensor(evals.LUMA).view(1, 3, 1, 1)).sum(1, keepdim=True).round()
    assert torch.equal(grey.train.images, want.to(torch.uint8))
    one = data.load({"name": "synthetic", "channels": 1, "num_classes": 2, "train_size": 8, "test_size": 4})
    three = evals.adapt_channels(one, 3)
    assert torch.equal(three.test.images, one.test.images.repeat(1, 3, 1, 1))
    assert evals.adapt_channels(one, 1) is one


def test_streamed_rgb_imagefolder_is_decoded_grey_like_the_in_memory_one(tmp_path: Path) -> None:
    """A streamed ImageFolder is converted by decoding in PIL's "L" mode, the same luminance the
    in-memory path applies to the uint8 images (within rounding)."""
    from tests.test_datasets import folder_cfg, write_folder

    root = write_folder(tmp_path / "folder", per_class=4)
    in_memory = evals.adapt_channels(data.load(folder_cfg(root)), 1)
    streamed = evals.adapt_channels(data.load(folder_cfg(root, max_memory_mb=0, workers=0)), 1)
    assert isinstance(streamed.train.images, data.ImageFiles) and streamed.info.in_chans == 1
    decoded = torch.stack([streamed.train.images[i] for i in range(len(streamed.train))])
    assert decoded.shape == in_memory.train.images.shape
    assert (decoded.int() - in_memory.train.images.int()).abs().max() <= 1
    assert streamed.mean == pytest.approx(in_memory.mean, abs=0.01)


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "section, key, words",
    [
        ("{linear_probe: true, few_shots: [1]}", "eval.few_shots", "did you mean few_shot"),
        ("{linear_probe: yes please}", "eval.linear_probe", "true or false"),
        ("{few_shot: [0, 5]}", "eval.few_shot", "positive integers"),
        ("{few_shot: [5], few_shot_draws: 0}", "eval.few_shot_draws", "positive integer"),
        ("{linear_probe: false}", "eval", "asks for no evaluation"),
        ("[linear_probe]", "eval", "must be a mapping"),
        ("{few_shot: [100]}", "eval.few_shot", "100-shot needs 400 images"),
        ("{linear_probe: true, datasets: [{name: cifar10, root: /nonexistent}]}", "eval.datasets[0].root", "not found"),
        ("{linear_probe: true, datasets: [{name: cifar100}]}", "eval.datasets[0].name", "unknown dataset"),
        ("{linear_probe: true, datasets: [{name: synthetic, colour: 3}]}", "eval.datasets[0].colour", "unknown key"),
        ("{linear_probe: true, datasets: [{name: synthetic}, {name: synthetic}]}", "eval.datasets[1].label", "give one"),
        ("{linear_probe: true, datasets: [{name: synthetic, channels: 2}]}", "eval.datasets[0]", "adapted between 1"),
        ("{linear_probe: true, datasets: {name: synthetic}}", "eval.datasets", "list of dataset mappings"),
    ],
)
def test_bad_eval_sections_are_one_line(tmp_path: Path, section: str, key: str, words: str) -> None:
    path = write_study(tmp_path, extra=f"eval: {section}\n")
    with pytest.raises(StudyError) as e:
        spec.load_study(path)
    assert e.value.key == key and words in e.value.line() and e.value.where == str(path), e.value.line()


# ----------------------------------------------------------------------------- analysis


def test_analysis_verbs_take_the_new_columns(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from harness.cli import main

    trials, _ = make_rows(families=("resnet", "vit"), sizes=("xs",), seeds=(0, 1), fail=False)
    trials["fewshot_10_acc"] = trials["test_acc"] - 0.1
    trials["fewshot_10_acc_std"] = 0.01
    trials["cifar10_probe_acc"] = trials["test_acc"] - 0.2  # a transfer column, outside the schema
    root = tmp_path / "res"
    (root / "trials").mkdir(parents=True)
    for _, row in store_dtypes(trials).iterrows():
        store.atomic_write(root / "trials" / f"{row['trial_id']}.parquet", lambda p, r=row: r.to_frame().T.to_parquet(p))
    assert main(["table", str(root), "--value", "fewshot_10_acc"]) == 0
    by_value = capsys.readouterr().out
    assert "resnet@xs" in by_value
    assert main(["table", str(root), "--y", "fewshot_10_acc"]) == 0  # the spelling fit and plot use
    assert capsys.readouterr().out == by_value
    assert main(["fit", str(root), "--y", "fewshot_10_acc", "--x", "data_size", "--bootstrap", "0"]) == 0
    assert "1 - fewshot_10_acc" in capsys.readouterr().out
    assert main(["fit", str(root), "--y", "cifar10_probe_acc", "--x", "data_size", "--bootstrap", "0"]) == 0
    assert main(["fit", str(root), "--y", "fewshot_10_acc_std", "--x", "data_size", "--bootstrap", "0"]) == 0
    assert "1 - fewshot_10_acc_std" not in capsys.readouterr().out  # a spread is not fitted as an error


@pytest.mark.slow
def test_plot_takes_a_fewshot_column(tmp_path: Path) -> None:
    from harness.cli import main

    trials, _ = make_rows(families=("resnet",), sizes=("xs", "s"), seeds=(0,), fail=False)
    trials["fewshot_10_acc"] = trials["test_acc"] - 0.1
    root = tmp_path / "res"
    (root / "trials").mkdir(parents=True)
    for _, row in store_dtypes(trials).iterrows():
        store.atomic_write(root / "trials" / f"{row['trial_id']}.parquet", lambda p, r=row: r.to_frame().T.to_parquet(p))
    assert main(["plot", str(root), "--kind", "scaling", "--y", "fewshot_10_acc", "--bootstrap", "0"]) == 0
    assert (root / "plots" / "scaling_fewshot_10_acc_vs_data_size.png").is_file()


def test_readme_documents_the_eval_keys() -> None:
    page = (Path(__file__).resolve().parents[1] / "docs" / "guides" / "probes.md").read_text(
        encoding="utf-8"
    )  # moved from README
    section = page.split("# Probe and few-shot evaluation", 1)[1]
    for key in sorted(spec.EVAL_KEYS):
        assert f"`{key}" in section, key


def test_video_trials_are_probed_on_the_clips_they_trained_on(tmp_path: Path) -> None:
    """The probes' batch path takes the trial's frames: ViViT's position table fits only T = 4 here,
    so probing all 8 native frames would fail the trial."""
    from harness.cli import main

    path = tmp_path / "v.yaml"
    path.write_text(
        "name: vprobe\n"
        "dataset: {name: synthetic, frames: 8, num_classes: 4, channels: 1, image_size: 16, train_size: 64, test_size: 32}\n"
        "grid: {model: [vivit@xs], data_size: [32], image_size: [16], seed: [0], frames: [4]}\n"
        "train: {steps: 2, batch_size: 16}\nprofile: {enabled: false}\neval: {linear_probe: true, few_shot: [1]}\n"
    )
    assert main(["run", str(path), "--backend", "local", "--results", str(tmp_path / "res"), "--no-report"]) == 0
    (row,) = store.read(tmp_path / "res" / "vprobe").to_dict("records")
    assert row["frames"] == 4 and 0 <= row["probe_acc"] <= 1 and 0 <= row["fewshot_1_acc"] <= 1
