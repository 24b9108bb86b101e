"""SimCLR as a training objective (harness/ssl.py): the loss, the views, the ids, the validation,
and a tiny trial end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from harness import data, spec, ssl, store, zoo
from harness import train as train_mod
from harness.cli import main
from harness.errors import StudyError
from tests.conftest import write_study

SIMCLR = ", objective: simclr, temperature: 0.5, proj_dim: 16"


def test_nt_xent_matches_a_direct_computation() -> None:
    """Eq. 1 of the paper written out: for each of the 2N anchors, -log of exp(sim to its positive)
    over the sum of exp(sim) to every other view, averaged over anchors."""
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    t = 0.3
    views = [*z1, *z2]
    n2 = len(views)

    def sim(a: torch.Tensor, b: torch.Tensor) -> float:
        return float(a @ b / (a.norm() * b.norm())) / t

    total = 0.0
    for i in range(n2):
        positive = (i + 5) % n2
        denom = sum(math.exp(sim(views[i], views[k])) for k in range(n2) if k != i)
        total += -math.log(math.exp(sim(views[i], views[positive])) / denom)
    assert ssl.nt_xent(z1, z2, t).item() == pytest.approx(total / n2, rel=1e-5)


def test_nt_xent_is_low_for_matching_views_and_has_gradients() -> None:
    z = torch.randn(8, 16, generator=torch.Generator().manual_seed(1), requires_grad=True)
    matched = ssl.nt_xent(z, z.detach() * 2, 0.1)  # same direction: the positive is the most similar
    shuffled = ssl.nt_xent(z, z.detach().roll(1, 0), 0.1)
    assert matched < shuffled
    matched.backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()


def _batcher(channels: int = 1) -> tuple[data.Batcher, torch.Tensor]:
    ds = data.load(
        {"name": "synthetic", "num_classes": 4, "channels": channels, "image_size": 16, "train_size": 64, "test_size": 16}
    )
    return data.Batcher(ds, 16, torch.device("cpu")), ds.train.images[:6]


@pytest.mark.parametrize("channels", [1, 3])
def test_two_views_differ_and_are_deterministic_given_the_seed(channels: int) -> None:
    batcher, images = _batcher(channels)

    def views(seed: int) -> torch.Tensor:
        return ssl.two_views(images, batcher, torch.Generator().manual_seed(seed))

    a, b, other = views(0), views(0), views(1)
    assert a.shape == (12, channels, 16, 16) and torch.isfinite(a).all()
    assert torch.equal(a, b)  # the same seed: the same views, bit for bit
    assert not torch.allclose(a[:6], a[6:])  # view 1 and view 2 of each image differ
    assert not torch.allclose(a, other)
    plain = batcher(images)  # the un-augmented, normalised images: views are not copies of them
    assert not torch.allclose(a[:6], plain)


PROBES = "eval: {linear_probe: true, few_shot: [2], few_shot_draws: 2}\n"


def _load(
    tmp_path: Path, train: str = SIMCLR, extra: str = PROBES, models: str = "[resnet@xs]", steps: int | str = 4
) -> spec.Study:
    path = write_study(tmp_path, models=models, data_sizes="[32]", steps=steps, extra=extra)
    text = path.read_text().replace("eval_every: 2}", "eval_every: 2" + train + "}")
    path.write_text(text)
    return spec.load_study(path)


def test_supervised_ids_are_unchanged_and_simclr_changes_the_id(tmp_path: Path) -> None:
    # studies/quickstart.yaml's first trial id, as recorded before the objective key existed
    assert spec.expand(spec.load_study("studies/quickstart.yaml"))[0].trial_id == "8ca513dee06e"
    plain = spec.expand(_load(tmp_path, ""))[0]
    explicit = spec.expand(_load(tmp_path, ", objective: supervised"))[0]
    simclr = spec.expand(_load(tmp_path))[0]
    assert "objective" not in plain.train and plain.trial_id == explicit.trial_id
    assert simclr.train["objective"] == "simclr" and simclr.trial_id != plain.trial_id
    warmer = spec.expand(_load(tmp_path, SIMCLR.replace("0.5", "0.2")))[0]
    assert warmer.trial_id != simclr.trial_id  # the temperature is part of the id
    defaults = spec.expand(_load(tmp_path, ", objective: simclr"))[0]
    assert (defaults.train["temperature"], defaults.train["proj_dim"]) == (0.2, 128)


def test_objective_is_a_grid_axis(tmp_path: Path) -> None:
    study = _load(tmp_path, "")
    path = Path(study.path)
    path.write_text(
        path.read_text().replace(
            "seed: [0]",
            "seed: [0]\n  zip: [{objective: [supervised, simclr, supervised], steps: [4, 4, 0], temperature: [null, 0.5, null]}]",
        )
    )
    trials = spec.expand(spec.load_study(path))
    assert [(t.train.get("objective", "supervised"), t.train["steps"], t.train.get("temperature")) for t in trials] == [
        ("supervised", 4, None),
        ("simclr", 4, 0.5),
        ("supervised", 0, None),
    ]
    assert trials[0].trial_id == spec.expand(_load(tmp_path, ""))[0].trial_id  # the supervised cell is the plain trial


@pytest.mark.parametrize(
    "train, key, message",
    [
        (", temperature: 0.5", "train.temperature", "SimCLR key and this trial's objective is supervised"),
        (", proj_dim: 64", "train.proj_dim", "SimCLR key"),
        (", objective: simclear", "train.objective", "did you mean simclr"),
        (", objective: simclr, temperature: 0", "train.temperature", "positive number"),
        (", objective: simclr, proj_dim: 1.5", "train.proj_dim", "positive integer"),
        (", objective: simclr, augment: flip", "train.augment", "supervised augmentation"),
        (", objective: simclr, label_smoothing: 0.1", "train.label_smoothing", "no meaning"),
        (", objective: simclr, val_size: 50, early_stop: {patience: 2, max_steps: 8}", "train.early_stop", "no classifier"),
    ],
)
def test_bad_objective_keys_name_the_key(tmp_path: Path, train: str, key: str, message: str) -> None:
    with pytest.raises(StudyError) as e:
        _load(tmp_path, train, steps="null" if "early_stop" in train else 4)
    assert e.value.key == key and message in str(e.value), str(e.value)


def test_a_grid_cell_error_names_the_axis(tmp_path: Path) -> None:
    study = _load(tmp_path, "")
    path = Path(study.path)
    path.write_text(
        path.read_text().replace("seed: [0]", "seed: [0]\n  zip: [{objective: [supervised, simclr], augment: [flip, flip]}]")
    )
    with pytest.raises(StudyError) as e:
        spec.load_study(path)
    assert "grid.zip[0].augment[1]" in str(e.value)


def test_simclr_training_has_no_accuracy_and_resumes_from_a_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trial = spec.expand(_load(tmp_path, models="[vit@xs]", steps=6))[0]

    def run(**kw: object) -> train_mod.TrainResult:
        torch.manual_seed(0)
        model = zoo.build(trial.model, image_size=16, in_chans=1, num_classes=4)
        return train_mod.train(
            model,
            data.load(trial.dataset),
            image_size=16,
            data_size=32,
            seed=0,
            cfg=trial.train,
            device=torch.device("cpu"),
            objective=ssl.objective(trial.train, in_chans=1, image_size=16),
            **kw,
        )

    reference = run()
    assert math.isnan(reference.test_acc) and math.isnan(reference.test_loss) and math.isfinite(reference.train_loss)
    assert [p["step"] for p in reference.curve] == [2, 4, 6] and all(math.isnan(p["test_acc"]) for p in reference.curve)

    class Preempted(BaseException):
        pass

    calls, original = {"n": 0}, train_mod.EpochSampler.next

    def preempt_at_step_5(self: train_mod.EpochSampler) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] == 5:
            raise Preempted
        return original(self)

    ckpt = tmp_path / "ck.pt"
    monkeypatch.setattr(train_mod.EpochSampler, "next", preempt_at_step_5)
    with pytest.raises(Preempted):
        run(checkpoint_path=ckpt, checkpoint_every=2)
    monkeypatch.setattr(train_mod.EpochSampler, "next", original)
    resumed = run(checkpoint_path=ckpt, checkpoint_every=2)
    assert resumed.resumed_from_step == 4  # the projection head and the view generator came back too:
    assert resumed.train_loss == reference.train_loss  # the same losses as the uninterrupted run


def test_a_simclr_study_needs_probes(tmp_path: Path) -> None:
    with pytest.raises(StudyError) as e:
        _load(tmp_path, extra="")
    assert e.value.key == "eval" and "eval: {linear_probe: true}" in str(e.value)
    assert "objective" not in spec.expand(_load(tmp_path, "", extra=""))[0].train  # supervised: no probes needed


@pytest.mark.slow
def test_a_tiny_simclr_trial_runs_end_to_end_beside_its_baselines(tmp_path: Path) -> None:
    """SimCLR, supervised and the untrained backbone (steps 0) in one run: probe columns on every row,
    no test accuracy for the SimCLR row."""
    zip_ = "  zip: [{objective: [simclr, supervised, supervised], steps: [4, 4, 0]}]\n"
    path = write_study(tmp_path, models="[resnet@xs]", data_sizes="[32]", extra=PROBES)
    text = path.read_text().replace("seed: [0]\n", "seed: [0]\n" + zip_)
    path.write_text(text.replace("profile: {batch_size: 4, warmup: 1, iters: 2}", "profile: {enabled: false}"))
    assert main(["run", str(path), "--backend", "local", "--results", str(tmp_path / "r"), "--no-report"]) == 0
    df = store.read(tmp_path / "r" / "tiny").set_index("steps", drop=False)
    assert len(df) == 3 and (df["status"] == "ok").all()
    df["objective"] = [json.loads(c)["train"].get("objective", "supervised") for c in df["config_json"]]
    simclr, supervised = (
        df[df["objective"] == "simclr"].iloc[0],
        df[(df["objective"] == "supervised") & (df["steps"] == 4)].iloc[0],
    )
    assert math.isnan(simclr["test_acc"]) and math.isnan(simclr["test_loss"]) and math.isfinite(simclr["train_loss"])
    assert math.isfinite(supervised["test_acc"])
    assert df["probe_acc"].between(0, 1).all() and df["fewshot_2_acc"].between(0, 1).all()
    assert simclr["train_flops"] == 2 * supervised["train_flops"]  # two views per image
