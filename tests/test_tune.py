"""The envelope over tuned keys (`--tune`), and seeds as uncertainty in fits (issue 11 items 4-5)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.analysis.lawfit import fit_arrays
from harness.analysis.laws import MIN_DISTINCT_X
from harness.analysis.tune import envelope
from harness.cli import main
from harness.cli.analysis import register  # noqa: F401 (the verbs' parser is built by harness.cli)
from harness.errors import StudyError


def _row(model: str, n: int, seed: int, lr: float, val: float, test: float, wd: float = 0.05) -> dict:
    train = {"lr": lr, "weight_decay": wd, "steps": 100, "val_size": 500}
    return {
        "study": "t",
        "trial_id": f"{model}{n}{seed}{lr}{wd}",
        "status": "ok",
        "family": model.split("@")[0],
        "model": model,
        "size": model.split("@")[1],
        "data_size": n,
        "image_size": 28,
        "seed": seed,
        "dataset": "fashion_mnist",
        "lr": lr,
        "params": 1000 if "vit" in model else 2000,
        "best_val_acc": val,
        "val_acc": val - 0.01,
        "test_acc": test,
        "test_acc_at_best_val": test,
        "config_json": json.dumps({"model": model, "train": train, "data_size": n, "seed": seed}),
    }


def _frame() -> pd.DataFrame:
    rows = []
    for n, (lo, mid, hi) in {1000: (0.70, 0.75, 0.72), 4000: (0.78, 0.80, 0.83), 16000: (0.82, 0.86, 0.85)}.items():
        for seed in (0, 1):
            for lr, val in ((1e-3, lo), (2e-3, mid), (4e-3, hi)):
                rows.append(_row("vit@xs", n, seed, lr, val + 0.001 * seed, val - 0.02))
    return pd.DataFrame(rows)


def test_envelope_keeps_the_best_validation_trial_per_point_and_warns_at_the_edge() -> None:
    env = envelope(_frame(), ["lr"])
    assert env.metric == "best_val_acc" and len(env.rows) == 6  # 3 sizes x 2 seeds
    won = {(r.data_size, r.seed): r.lr for r in env.rows.itertuples()}
    assert won == {(1000, 0): 2e-3, (1000, 1): 2e-3, (4000, 0): 4e-3, (4000, 1): 4e-3, (16000, 0): 2e-3, (16000, 1): 2e-3}
    assert any("vit@xs at n=1000 28px seed 0: lr=0.002" in w for w in env.winners)
    # the edge warning once per point (not once per seed)
    assert env.warnings == ["lr 0.004 is the largest tried for vit@xs at n=4000 28px: the optimum may lie beyond it"]
    assert set(env.rows["tuned"]) == {"lr=0.002", "lr=0.004"}


def test_untuned_varying_keys_stay_part_of_the_point() -> None:
    df = pd.concat(
        [
            _frame(),
            _frame().assign(
                config_json=lambda d: d["config_json"].str.replace('"weight_decay": 0.05', '"weight_decay": 0.1'),
                best_val_acc=lambda d: d["best_val_acc"] - 0.1,
            ),
        ],
        ignore_index=True,
    )
    assert len(envelope(df, ["lr"]).rows) == 12  # weight_decay varies but is not tuned: two points per (n, seed)
    both = envelope(df, ["lr", "train.weight_decay"])
    assert len(both.rows) == 6 and set(both.rows["weight_decay"]) == {0.05}


def test_no_validation_columns_is_a_clear_error() -> None:
    df = _frame().drop(columns=["best_val_acc", "val_acc"])
    with pytest.raises(StudyError, match="train.val_size"):
        envelope(df, ["lr"])
    with pytest.raises(StudyError, match="did you mean lr"):
        envelope(_frame(), ["lrr"])


def test_fit_and_table_take_tune(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "rows.parquet"
    _frame().to_parquet(path)
    assert main(["fit", str(path), "--y", "test_acc", "--x", "data_size", "--tune", "lr", "--bootstrap", "20"]) == 0
    out = capsys.readouterr().out
    assert "--tune lr: best best_val_acc per point, 6 points" in out and "the optimum may lie beyond it" in out
    assert main(["table", str(path), "--tune", "lr"]) == 0
    out = capsys.readouterr().out
    assert "± " in out and "lr=0.004" in out  # seed mean ± std of the winners; which lr won, as a note


def test_fit_bootstraps_seeds_within_each_point() -> None:
    assert MIN_DISTINCT_X == 3
    x = np.repeat([1e3, 4e3, 1.6e4], 2)  # 3 data sizes x 2 seeds
    y = 0.1 + 5 * x**-0.5 * np.array([1.02, 0.98] * 3)
    rows = fit_arrays(x, y, bootstrap=100, seed=0)
    seeds = fit_arrays(x, y, bootstrap=100, seed=0, within_points=True)
    assert len(seeds.boot) == 100  # every resample keeps every x: none skipped
    assert len(rows.boot) < 100  # row resampling drops points (and skips resamples left with < 3 x)
