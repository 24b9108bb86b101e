"""Issue 24: successive halving over a sweep (search.halving): the rung arithmetic, pruned rows,
survivors continued from their checkpoints, and pruned rows kept out of --tune, tables and fits."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from harness import halving, spec, store
from harness.analysis.fits import fit_results
from harness.analysis.io import load_results
from harness.analysis.tables import build_table
from harness.analysis.tune import envelope
from harness.cli import main
from harness.errors import StudyError
from harness.train import Trainer
from tests.analysis_fixtures import write_results
from tests.conftest import write_study


def test_rungs_and_keep() -> None:
    assert halving.rungs(4, 3, 40) == [4, 12, 36] and halving.rungs(4, 2, 16) == [4, 8] and halving.rungs(50, 3, 50) == []
    assert [halving.keep(n, 3) for n in (1, 2, 3, 4, 5, 9, 10)] == [1, 1, 1, 2, 2, 3, 4]  # ceil(n/eta)


def _sweep(tmp_path: Path, search: str = "search: {halving: {metric: val_acc, eta: 2, min_steps: 4}}\n") -> Path:
    path = write_study(tmp_path, name="sweep", models="[resnet@xs]", data_sizes="[64]", steps=16)
    text = path.read_text().replace("seed: [0]", "seed: [0]\n  lr: [1.0e-4, 1.0e-3, 3.0e-3, 1.0e-2]")
    text = text.replace("eval_every: 2}", "val_size: 32}").replace(
        "profile: {batch_size: 4, warmup: 1, iters: 2}", "profile: {enabled: false}"
    )
    path.write_text(text + search)
    return path


def test_halving_section_is_validated(tmp_path: Path) -> None:
    path = _sweep(tmp_path, "search: {halving: {eta: 1, min_steps: 4}}\n")
    with pytest.raises(StudyError, match="eta must be an integer >= 2"):
        spec.load_study(path)
    path.write_text(path.read_text().replace("val_size: 32", "val_size: 0").replace("eta: 1", "eta: 2"))
    with pytest.raises(StudyError, match="train.val_size is 0"):
        spec.load_study(path)


def _run(study: Path, res: Path, *extra: str) -> int:
    return main(["run", str(study), "--backend", "local", "--results", str(res), "--no-report", *extra])


def test_halving_prunes_per_rung_and_survivors_continue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    study = _sweep(tmp_path)
    steps: list[int] = []
    step = Trainer._step
    monkeypatch.setattr(Trainer, "_step", lambda self, i, start: steps.append(i) or step(self, i, start))
    assert _run(study, tmp_path / "a") == 0
    # rungs 4 and 8 of 16 steps: 4 cells to step 4, 2 continue to 8, 1 to the end, each from its checkpoint
    assert len(steps) == 4 * 4 + 2 * 4 + 1 * 8
    df = store.read(tmp_path / "a" / "sweep").set_index("trial_id")
    cut = df[df["status"] == "pruned"]
    assert sorted(cut["halving_rung"].tolist()) == [0, 0, 1] and sorted(cut["pruned_step"].tolist()) == [4, 4, 8]
    assert (cut["pruned_metric"] == cut["val_acc"]).all() and (cut["steps"] == cut["pruned_step"]).all()
    (winner,) = df.index[df["status"] == "ok"]
    # the survivor's row is the row of an uninterrupted run (same id; on CPU to the bit)
    assert _run(study, tmp_path / "b", "--no-branch") == 0
    full = store.read(tmp_path / "b" / "sweep").set_index("trial_id")
    cols = ["test_acc", "test_loss", "train_loss", "val_acc", "best_val_acc", "best_val_step", "samples_seen", "train_flops"]
    pd.testing.assert_series_equal(df.loc[winner, cols], full.loc[winner, cols])
    # --tune, tables: pruned rows never win and are counted apart
    tricked = df.reset_index().assign(val_acc=lambda d: d["val_acc"].where(d["status"] == "ok", 1.0))
    tricked["best_val_acc"] = tricked["val_acc"]
    env = envelope(tricked, ["lr"])
    assert env.rows["trial_id"].tolist() == [winner]
    table = build_table(df.reset_index(), rows=["model"], cols="data_size")
    assert [c for r in table.rows for c in r if c.endswith("(+3 pruned)")]


def test_pruned_rows_stay_out_of_fits(tmp_path: Path) -> None:
    df = load_results(write_results(tmp_path, sizes=("s",), data_sizes=(500, 1000, 2000, 4000, 8000), seeds=(0,)))[0]
    ok = df[df["status"] == "ok"]
    ref = fit_results(ok, "test_acc", ["data_size"], by="family", bootstrap=0)
    planted = ok.head(3).assign(status="pruned", test_acc=0.01, trial_id=lambda d: d["trial_id"] + "p")
    got = fit_results(pd.concat([ok, planted]), "test_acc", ["data_size"], by="family", bootstrap=0)
    assert got.dropped == {"pruned": 3}
    assert [f.law.params for f in got.fits] == [f.law.params for f in ref.fits]


def test_halving_with_wsd_budget_branches_is_refused_at_load(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Halving's rungs would train each wsd budget on its own (losing the trunk's saving unseen): one line,
    exit 2, nothing written. Without a budget axis, or on a cosine schedule, the same search loads."""
    study = _sweep(tmp_path)
    text = study.read_text().replace("val_size: 32}", "val_size: 32, schedule: wsd}")
    study.write_text(text.replace("seed: [0]", "seed: [0]\n  steps: [8, 16]"))
    assert _run(study, tmp_path / "a") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "search.halving" in err and "do not compose" in err and "drop search.halving" in err
    assert not (tmp_path / "a").exists()
    assert spec.load_study(study, ["grid.steps=[16]"]).search["halving"]["eta"] == 2  # one budget: halving only
    assert spec.load_study(study, ["train.schedule=cosine"]).search  # cosine budgets never branch
    assert not spec.load_study(study, ["search={}"]).search  # branches only


def test_pruned_cells_count_for_the_sweep_range_but_never_win() -> None:
    """A halving winner at the largest lr is on the edge of the sweep that was tried, pruned cells included
    (RESULTS section 12: every winner was the largest lr, and --tune said nothing)."""
    rows = [
        {"status": s, "val_acc": v, "model": "resnet@xs", "family": "resnet", "data_size": 500, "seed": 0, "lr": lr}
        for s, v, lr in (("pruned", 0.9, 1e-3), ("pruned", 0.5, 3e-3), ("ok", 0.8, 1e-2))
    ]
    df = pd.DataFrame(rows).assign(config_json=lambda d: [json.dumps({"train": {"lr": lr}}) for lr in d["lr"]])
    env = envelope(df.drop(columns="lr"), ["lr"])
    assert env.rows["status"].tolist() == ["ok"]  # the pruned cell's higher val_acc does not win
    assert "lr=0.01 (val_acc 0.8 of 3 tried, 2 pruned)" in env.winners[0], env.winners
    assert any("largest tried" in w for w in env.warnings), env.warnings
    assert env.rows["_tune_edge"].tolist() == [True]
