"""Issue 15 item 1: rows that do not belong to the study as last run are never pooled into its numbers.

Run a study, change train.steps, run it again: the directory now holds two versions of every
cell. By default table / fit / status / report use the study as last run (study.json) and say
how many rows they left out; --all includes the rest but keeps each configuration apart.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from harness import store
from harness.analysis.io import load_results, mark_variants
from harness.analysis.tables import build_table
from harness.cli import main
from tests.conftest import write_study


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """results/mem after running the same study with steps 2 and then steps 3 (3 trials each)."""
    tmp = tmp_path_factory.mktemp("membership")
    res = tmp / "res"
    for steps in (2, 3):
        study = write_study(tmp, name="mem", models="[vit@xs]", data_sizes="[16, 32, 64]", steps=steps)
        assert main(["run", str(study), "--backend", "local", "--results", str(res), "--no-report"]) == 0
    return res / "mem"


def test_the_directory_holds_both_versions_and_study_json_names_the_last(two_versions: Path) -> None:
    rows = store.read(two_versions)
    assert len(rows) == 6 and rows["trial_id"].is_unique
    manifest = json.loads((two_versions / "study.json").read_text())
    assert manifest["name"] == "mem" and len(manifest["trial_ids"]) == 3
    assert set(manifest["trial_ids"]) == set(rows.loc[rows["steps"] == 3, "trial_id"])
    assert manifest["study_hash"] == rows.loc[rows["steps"] == 3, "study_hash"].iloc[0]


def test_table_shows_each_cell_once(two_versions: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["table", str(two_versions), "--format", "csv"]) == 0
    out, err = capsys.readouterr()
    frame = pd.read_csv(__import__("io").StringIO(out))
    assert len(frame) == 1  # one model, one row
    assert all(frame[c].iloc[0] == 1 for c in frame.columns if c.endswith("_n"))  # one trial per cell, not "2 seeds"
    assert "3 rows from earlier versions of this study not shown; --all to include" in err
    assert len(err.strip().splitlines()) == 1


def test_table_all_keeps_the_versions_apart(two_versions: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["table", str(two_versions), "--all"]) == 0
    out, err = capsys.readouterr()
    assert "train.steps=2" in out and "train.steps=3" in out and "not shown" not in err
    rows = [line for line in out.splitlines() if line.startswith("| vit")]
    assert len(rows) == 2 and not any("±" in r for r in rows)  # no cell averages two configurations as seeds


def test_fit_counts_the_study_as_last_run(two_versions: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["fit", str(two_versions), "--y", "test_acc", "--x", "data_size", "--json", "--bootstrap", "0"]) == 0
    fits = json.loads(capsys.readouterr().out)["fits"]
    assert [f["n"] for f in fits] == [3]
    assert main(["fit", str(two_versions), "--y", "test_acc", "--x", "data_size", "--json", "--bootstrap", "0", "--all"]) == 0
    fits = json.loads(capsys.readouterr().out)["fits"]
    assert sorted(f["n"] for f in fits) == [3, 3]  # two fits, one per version, never one of n=6
    assert all("train.steps=" in f["group"] for f in fits)


def test_status_counts_the_study_as_last_run(two_versions: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["status", str(two_versions)]) == 0
    out = capsys.readouterr().out
    assert _count(out, "ok") == 3 and "3 rows from earlier versions of this study not shown" in out
    assert main(["status", str(two_versions), "--all"]) == 0
    assert _count(capsys.readouterr().out, "ok") == 6


def test_report_uses_the_study_as_last_run(two_versions: Path) -> None:
    from harness.analysis.report import write_report

    md = write_report(two_versions, bootstrap=0).read_text()
    assert "3 trials (3 ok" in md


def test_seeds_are_averaged_only_when_everything_else_is_equal() -> None:
    """Hand-made rows: two seeds of one configuration average; a different lr is its own row."""

    def row(seed: int, lr: float, acc: float) -> dict:
        cfg = {
            "model": {"family": "vit", "size": "xs"},
            "data_size": 100,
            "image_size": 28,
            "seed": seed,
            "train": {"lr": lr, "steps": 10},
        }
        return {
            "study": "s",
            "trial_id": f"{seed}-{lr}",
            "status": "ok",
            "error": "",
            "family": "vit",
            "model": "vit@xs",
            "data_size": 100,
            "image_size": 28,
            "seed": seed,
            "test_acc": acc,
            "config_json": json.dumps(cfg),
        }

    df = mark_variants(pd.DataFrame([row(0, 1e-3, 0.5), row(1, 1e-3, 0.7), row(0, 2e-3, 0.9)]))
    assert sorted(df["variant"].unique()) == ["train.lr=0.001", "train.lr=0.002"]
    t = build_table(df)
    cells = {r[-2]: r[-1] for r in t.rows}  # variant -> the data_size=100 cell
    assert cells["train.lr=0.001"].startswith("60.0 ± ") and cells["train.lr=0.001"].endswith("(2)")
    assert cells["train.lr=0.002"] == "90.0"


def test_several_studies_read_together_are_grouped_by_study(tmp_path: Path) -> None:
    from tests.analysis_fixtures import write_results

    write_results(tmp_path / "a", families=("vit",), study="a", seeds=(0,))
    write_results(tmp_path / "b", families=("vit",), study="b", seeds=(0,))  # the same trials, another study
    df, _ = load_results(tmp_path)
    assert len(df) == 2 * 6 and set(df["variant"]) == {"a", "b"}
    table = build_table(df)
    assert all("±" not in cell for r in table.rows for cell in r)


def _count(status_out: str, state: str) -> int:
    for line in status_out.splitlines():
        cells = [c.strip() for c in line.replace("│", "|").split("|") if c.strip()]
        if cells[:1] == [state]:
            return int(cells[1])
    raise AssertionError(f"no {state} line in {status_out}")


def test_a_per_family_setting_is_not_a_variant_but_a_per_model_difference_is() -> None:
    """`overrides: {vit: {lr: ...}}` gives each family its own recipe: constant within a model, it splits no
    seeds and is not labelled; two lrs for one model are two variants (never averaged as seeds)."""
    import json

    import pandas as pd

    from harness.analysis.io import mark_variants

    def row(model: str, lr: float, seed: int) -> dict:
        return {"model": model, "seed": seed, "config_json": json.dumps({"train": {"lr": lr}, "seed": seed})}

    per_family = pd.DataFrame(
        [row("resnet@xs", 2e-3, 0), row("resnet@xs", 2e-3, 1), row("vit@xs", 1e-3, 0), row("vit@xs", 1e-3, 1)]
    )
    assert "variant" not in mark_variants(per_family)
    swept = pd.DataFrame([row("resnet@xs", 2e-3, 0), row("resnet@xs", 6e-3, 0), row("vit@xs", 1e-3, 0)])
    labels = mark_variants(swept)["variant"].tolist()
    assert labels[0] != labels[1] and "train.lr=" in labels[0]
