"""Issue 24: the wsd schedule, and wsd budgets run as branches of one trunk (rows equal to
independent runs, a killed trunk resumes)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from harness import spec, store
from harness.cli import main
from harness.errors import StudyError
from harness.train import Trainer, lr_at
from tests.conftest import write_study

WSD = {"lr": 1.0, "warmup_steps": 2, "schedule": "wsd", "decay_fraction": 0.25, "decay_shape": "linear"}


def test_wsd_schedule_values() -> None:
    lrs = [lr_at(s, 8, WSD) for s in range(8)]
    assert lrs == [0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5]  # warm-up, stable, decay over the last 2 steps (1, 1/2)
    sq = [lr_at(s, 16, dict(WSD, decay_shape="1-sqrt")) for s in range(12, 16)]
    assert sq == pytest.approx([1 - math.sqrt(p) for p in (0, 0.25, 0.5, 0.75)])
    # before its decay starts, a run's lr does not depend on its length
    assert [lr_at(s, 8, WSD) for s in range(6)] == [lr_at(s, 100, WSD) for s in range(6)]
    assert lr_at(99, 100, dict(WSD, decay_fraction=0.2)) == pytest.approx(1 / 20)


@pytest.mark.parametrize(
    "train, message",
    [
        ("schedule: wsd, decay_fraction: 0", "train.decay_fraction must be a number in (0, 1]"),
        ("schedule: wsd, decay_shape: cos", "unknown decay_shape 'cos'"),
        ("decay_fraction: 0.3", "train.decay_fraction applies to schedule wsd only"),
    ],
)
def test_wsd_keys_are_validated(tmp_path: Path, train: str, message: str) -> None:
    path = write_study(tmp_path)
    path.write_text(path.read_text().replace("eval_every: 2}", f"eval_every: 2, {train}}}"))
    with pytest.raises(StudyError) as e:
        spec.load_study(path)
    assert message in str(e.value)


def test_wsd_defaults_stay_out_of_the_id(tmp_path: Path) -> None:
    path = write_study(tmp_path)
    plain = spec.expand(spec.load_study(path))[0]
    assert "decay_fraction" not in plain.train and "decay_shape" not in plain.train
    path.write_text(path.read_text().replace("eval_every: 2}", "eval_every: 2, schedule: wsd, decay_fraction: 0.2}"))
    assert "decay_fraction" not in spec.expand(spec.load_study(path))[0].train


def _budget_study(tmp_path: Path) -> Path:
    """Three wsd budgets of one cell, with a validation split (curve cadence and best point per budget)."""
    path = write_study(tmp_path, name="wsd", models="[resnet@xs]", data_sizes="[64]", steps=40)
    text = (
        path.read_text()
        .replace("eval_every: 2}", "schedule: wsd, val_size: 32}")
        .replace("seed: [0]", "seed: [0]\n  steps: [10, 20, 40]")
    )
    path.write_text(text.replace("profile: {batch_size: 4, warmup: 1, iters: 2}", "profile: {enabled: false}"))
    return path


NUMBERS = ["steps", "samples_seen", "train_flops", "test_acc", "test_loss", "train_loss", "val_acc", "val_loss"]
NUMBERS += ["best_val_acc", "best_val_step", "test_acc_at_best_val", "best_test_acc"]


def _rows_and_curves(res: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows = store.read(res / "wsd").set_index("trial_id").sort_index()
    curves = store.read_curves(res / "wsd").drop(columns="elapsed_s").sort_values(["trial_id", "step"]).reset_index(drop=True)
    return rows, curves


def _run(study: Path, res: Path, *extra: str) -> int:
    return main(["run", str(study), "--backend", "local", "--results", str(res), "--no-report", *extra])


def test_branched_rows_equal_independent_rows(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    study = _budget_study(tmp_path)
    assert _run(study, tmp_path / "a") == 0
    assert "FLOPs spent of" in capsys.readouterr().err
    assert _run(study, tmp_path / "b", "--no-branch") == 0
    (ra, ca), (rb, cb) = _rows_and_curves(tmp_path / "a"), _rows_and_curves(tmp_path / "b")
    assert list(ra.index) == list(rb.index)  # same trial ids
    pd.testing.assert_frame_equal(ra[NUMBERS], rb[NUMBERS])  # on CPU to the bit
    pd.testing.assert_frame_equal(ca, cb)  # curve points too (each budget's cadence and best point)
    by_steps = ra.set_index("steps")["trunk_steps_reused"].to_dict()
    assert by_steps == {10: 8, 20: 16, 40: 0}  # each branch starts at its decay start; the trunk is the 40-step cell
    assert rb["trunk_steps_reused"].isna().all()
    assert not (tmp_path / "a" / "wsd" / "branches").exists()  # every trial decided: the trunk checkpoints are gone


def test_killed_trunk_resumes_and_its_branches_complete(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    study = _budget_study(tmp_path)
    steps: list[int] = []
    step = Trainer._step

    def counted(self: Trainer, i: int, start: int) -> object:
        if i == 25 and not steps.count(25):  # the trunk dies once, after both branch points (8 and 16)
            steps.append(i)
            raise KeyboardInterrupt
        steps.append(i)
        return step(self, i, start)

    monkeypatch.setattr(Trainer, "_step", counted)
    assert _run(study, tmp_path / "a") == 130
    assert store.read(tmp_path / "a" / "wsd").empty
    steps.clear()
    steps.append(25)  # (do not die again)
    assert _run(study, tmp_path / "a") == 0
    # the trunk resumed from its checkpoint at step 16; the branches ran only their decays
    assert len(steps) - 1 == (40 - 16) + (20 - 16) + (10 - 8)
    assert _run(study, tmp_path / "b", "--no-branch") == 0
    (ra, _), (rb, _) = _rows_and_curves(tmp_path / "a"), _rows_and_curves(tmp_path / "b")
    pd.testing.assert_frame_equal(ra[NUMBERS], rb[NUMBERS])


@pytest.mark.slow
@pytest.mark.usefixtures("embedded_ray")  # one Ray for the in-process ray tests (conftest)
def test_branches_through_the_ray_backend(tmp_path: Path) -> None:
    """Embedded Ray: the trunk is a task, the branches are tasks handed over after it; the rows are
    those of the local backend's independent runs."""
    study = _budget_study(tmp_path)
    assert main(["run", str(study), "--results", str(tmp_path / "a"), "--no-report"]) == 0
    assert _run(study, tmp_path / "b", "--no-branch") == 0
    (ra, _), (rb, _) = _rows_and_curves(tmp_path / "a"), _rows_and_curves(tmp_path / "b")
    pd.testing.assert_frame_equal(ra[NUMBERS], rb[NUMBERS])
    assert ra.set_index("steps")["trunk_steps_reused"].to_dict() == {10: 8, 20: 16, 40: 0}
