"""`harness sql`: DuckDB views `trials` and `curves` over results read through the store.

Rows are written with `ResultsDir.write` (the runner's write), so the views see what the store
reads: the compacted read path plus newer files, the study as last run (study.json), several
studies under one root. The docs' example queries (docs/guides/sql.md) run here against a tiny results directory.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from harness.cli import main
from harness.store import ResultsDir, TrialOutput
from tests.analysis_fixtures import make_rows

SQL_PAGE = Path(__file__).resolve().parents[1] / "docs" / "guides" / "sql.md"  # moved there from the README
GRID = {"families": ("resnet", "vit", "mixer"), "sizes": ("xs",), "data_sizes": (1000, 4000), "seeds": (0, 1)}


def write_study(root: Path, study: str = "tiny", *, record: bool = True, **grid: object) -> ResultsDir:
    """Rows and curves through the store, and study.json naming them (the study as last run)."""
    trials, curves = make_rows(study=study, **{**GRID, **grid})
    rd = ResultsDir(root / study)
    by_trial = (
        {tid: g.drop(columns="trial_id").to_dict("records") for tid, g in curves.groupby("trial_id")} if len(curves) else {}
    )
    for row in trials.to_dict("records"):
        rd.write(TrialOutput(row=row, curve=by_trial.get(row["trial_id"], [])))
    if record:
        src = root / f"{study}.yaml"
        src.write_text(f"name: {study}\n")
        rd.record_study(src, study, "feedc0de", trials["trial_id"])
    return rd


@pytest.fixture
def results(tmp_path: Path) -> Path:
    root = tmp_path / "results"
    write_study(root, "tiny")
    write_study(root, "other", families=("resnet",), data_sizes=(1000,), seeds=(0,), fail=False)
    return root


def sql(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(["sql", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def as_json(capsys: pytest.CaptureFixture, path: Path, query: str) -> list[dict]:
    code, out, err = sql(capsys, str(path), query, "--json")
    assert code == 0, err
    return json.loads(out)


def test_trials_and_curves_views_match_the_store(results: Path, capsys: pytest.CaptureFixture) -> None:
    rd = ResultsDir(results / "tiny")
    rows, curves = rd.read(), rd.read_curves()
    got = as_json(capsys, rd.path, "SELECT trial_id, status, test_acc FROM trials ORDER BY trial_id")
    want = rows.sort_values("trial_id")
    assert [r["trial_id"] for r in got] == list(want["trial_id"])
    assert [r["status"] for r in got] == list(want["status"])
    ok = [r["test_acc"] for r in got if r["status"] == "ok"]
    assert ok == pytest.approx(list(want.loc[want["status"] == "ok", "test_acc"]))
    n = as_json(capsys, rd.path, "SELECT count(*) AS n, count(DISTINCT trial_id) AS t, min(study) AS s FROM curves")[0]
    assert n == {"n": len(curves), "t": curves["trial_id"].nunique(), "s": "tiny"}
    # curves join trials on (study, trial_id)
    joined = as_json(
        capsys,
        rd.path,
        "SELECT t.model, max(c.step) AS last FROM curves c JOIN trials t USING (study, trial_id) GROUP BY 1 ORDER BY 1",
    )
    assert [r["model"] for r in joined] == sorted(rows.loc[rows["status"] == "ok", "model"].unique())


def test_a_root_of_several_studies_has_a_study_column(results: Path, capsys: pytest.CaptureFixture) -> None:
    got = as_json(capsys, results, "SELECT study, count(*) AS n FROM trials GROUP BY study ORDER BY study")
    assert got == [{"study": "other", "n": 1}, {"study": "tiny", "n": 12}]
    got = as_json(capsys, results, "SELECT study, count(DISTINCT trial_id) AS n FROM curves GROUP BY study ORDER BY study")
    assert [g["study"] for g in got] == ["other", "tiny"]


def test_compacted_rows_and_newer_files_are_both_seen(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rd = write_study(tmp_path, "tiny", record=False)
    rd.compact()
    extra, _ = make_rows(study="tiny", families=("convnext",), sizes=("xs",), data_sizes=(1000,), seeds=(7,), fail=False)
    rd.write(TrialOutput(row=extra.to_dict("records")[0]))  # written after the compaction
    got = as_json(capsys, rd.path, "SELECT count(*) AS n, count(DISTINCT trial_id) AS d FROM trials")
    assert got == [{"n": 13, "d": 13}]


def test_only_the_study_as_last_run_unless_all(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rd = write_study(tmp_path, "tiny")
    ids = sorted(rd.membership())
    src = tmp_path / "tiny.yaml"
    rd.record_study(src, "tiny", "0ther", ids[:5])  # the study was edited: 5 of its 12 trials remain
    assert as_json(capsys, rd.path, "SELECT count(*) AS n FROM trials") == [{"n": 5}]
    code, out, err = sql(capsys, str(rd.path), "SELECT count(*) AS n FROM trials", "--all", "--json")
    assert code == 0 and json.loads(out) == [{"n": 12}]


def test_table_csv_and_parquet_output(results: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    q = "SELECT family, count(*) AS n, avg(test_acc) AS acc FROM trials GROUP BY family ORDER BY family"
    code, out, _ = sql(capsys, str(results / "tiny"), q)
    assert code == 0
    assert re.search(r"family.*n.*acc", out) and "mixer" in out and "3 rows" in out
    code, out, _ = sql(capsys, str(results / "tiny"), q, "--csv")
    assert code == 0 and out.splitlines()[0] == "family,n,acc" and len(out.splitlines()) == 4
    dest = tmp_path / "out" / "acc.parquet"
    code, _, _ = sql(capsys, str(results / "tiny"), q, "--parquet", str(dest))
    df = pd.read_parquet(dest)
    assert code == 0 and list(df.columns) == ["family", "n", "acc"] and list(df["family"]) == ["mixer", "resnet", "vit"]


def test_sql_error_is_one_line_exit_2_and_nothing_written(results: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    dest = tmp_path / "never.parquet"
    for query in ("SELECT nosuch FROM trials", "SELEC 1", "SELECT * FROM runs"):
        code, out, err = sql(capsys, str(results), query, "--parquet", str(dest))
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error: harness sql: "), err
        assert "trials" in lines[0] and not dest.exists()
    code, _, err = sql(capsys, str(tmp_path / "nowhere"), "SELECT 1")
    assert code == 2 and "does not exist" in err


def readme_queries() -> list[str]:
    """The queries of the docs' `harness sql` examples (docs/guides/sql.md, "SQL over results")."""
    m = re.search(r"^# SQL over results\n(.*)", SQL_PAGE.read_text(encoding="utf-8"), re.S | re.M)
    assert m, "docs/guides/sql.md has no '# SQL over results' page title"
    return re.findall(r'^harness sql results/\S* "(.*?)"', m.group(1), re.M)


def test_readme_queries_run(results: Path, capsys: pytest.CaptureFixture) -> None:
    queries = readme_queries()
    assert len(queries) >= 3
    for q in queries:
        code, out, err = sql(capsys, str(results), q)
        assert code == 0, f"{q}: {err}"
        assert "row" in out, q


def test_sql_imports_neither_torch_nor_a_tracker(results: Path) -> None:
    """`harness sql` answers like the other analysis verbs: no torch, ray or tracker packages loaded."""
    probe = (
        "import sys; from harness.cli import main; code = main(sys.argv[1:]); "
        "print('LOADED', code, sorted(m for m in ('torch', 'ray', 'timm', 'mlflow', 'tensorboard') if m in sys.modules))"
    )
    root = Path(__file__).resolve().parents[1]
    p = subprocess.run(
        [sys.executable, "-c", probe, "sql", str(results), "SELECT count(*) AS n FROM trials", "--csv"],
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin", "HOME": str(results)},
    )
    assert p.stdout.splitlines()[-1] == "LOADED 0 []", p.stdout + p.stderr
    assert p.stdout.splitlines()[:2] == ["n", "13"]
