"""Tables and results loading. Golden files: tests/golden/table_default.{md,tex,csv}.

After an intended format change regenerate them from the repository root with
    python -m tests.analysis_fixtures golden
and review the diff.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import pytest

from harness.analysis.io import load_results
from harness.analysis.tables import (
    NOT_RUN,
    build_table,
    fmt_count,
    fmt_sig,
    render,
    short_reason,
)
from harness.cli.analysis import register
from harness.errors import StudyError
from tests.analysis_fixtures import GOLDEN_DIR, NAN, OOM, golden_outputs, make_rows, write_results


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_results(tmp_path_factory.mktemp("results"))


@pytest.fixture(scope="module")
def df(results: Path) -> pd.DataFrame:
    return load_results(results)[0]


@pytest.fixture(scope="module")
def rendered(results: Path) -> dict[str, str]:
    return golden_outputs(results)


@pytest.mark.parametrize("name", ["table_default.md", "table_default.tex", "table_default.csv"])
def test_golden(rendered: dict[str, str], name: str) -> None:
    got = rendered[name]
    want = (GOLDEN_DIR / name).read_text(encoding="utf-8")
    assert got == want, f"{name} changed; if intended: python -m tests.analysis_fixtures golden"


def test_default_table_shape(df: pd.DataFrame) -> None:
    t = build_table(df)
    assert t.columns[:6] == ["family", "model", "params", "GMACs", "infer img/s", "train img/s"]
    assert t.columns[6:] == ["data_size=1k", "data_size=4k", "data_size=16k"]
    assert [r[1] for r in t.rows] == [
        "resnet@xs",
        "resnet@s",
        "vit@xs",
        "vit@s",
        "mixer@xs",
        "mixer@s",
        "convnext@xs",
        "convnext@s",
    ]
    assert all(cell for row in t.rows for cell in row), "no blank cells"


def test_failed_cells_say_why(df: pd.DataFrame) -> None:
    rows = {r[1]: r for r in build_table(df).rows}
    assert rows["mixer@xs"][6].startswith("failed: FloatingPointError: loss is NaN")
    assert rows["convnext@s"][8].endswith("(+1 failed)")  # OOM beside an ok seed
    assert "±" in rows["vit@s"][7] and rows["vit@s"][7].endswith("(2)")


def test_single_seed_cell_is_plain_number() -> None:
    trials, _ = make_rows(families=("vit",), sizes=("xs",), data_sizes=(1000,), seeds=(0,), fail=False)
    t = build_table(trials.assign(status="ok"))
    assert t.rows[0][-1].replace(".", "").isdigit()


def test_not_run_cell_is_marked() -> None:
    trials, _ = make_rows(families=("vit", "resnet"), sizes=("xs",), data_sizes=(1000, 4000), fail=False)
    trials = trials[~((trials["family"] == "vit") & (trials["data_size"] == 4000))]
    rows = {r[1]: r for r in build_table(trials).rows}
    assert rows["vit@xs"][-1] == NOT_RUN


def test_custom_rows_cols_and_max() -> None:
    trials, _ = make_rows(sizes=("xs",), data_sizes=(1000, 4000), fail=False)
    t = build_table(trials, rows=["family"], cols="data_size", value="test_loss", agg="max")
    assert t.columns == ["family", "data_size=1k", "data_size=4k"]  # no model attributes
    by = {r[0]: r for r in t.rows}
    want = trials[(trials.family == "vit") & (trials.data_size == 1000)]["test_loss"].max()
    assert by["vit"][1] == fmt_sig(want)


def test_formats_render(df: pd.DataFrame) -> None:
    t = build_table(df)
    assert render(t, "latex").count(r"\\") == len(t.rows) + 1
    csv = pd.read_csv(pd.io.common.StringIO(render(t, "csv")))
    assert csv["params"].dtype.kind == "i" and "test_acc@data_size=1000_std" in csv
    with pytest.raises(StudyError, match="format"):
        render(t, "xlsx")


def test_missing_column_names_it_and_suggests(df: pd.DataFrame) -> None:
    with pytest.raises(StudyError, match="test_accc.*did you mean test_acc"):
        build_table(df, value="test_accc")


@pytest.mark.parametrize(
    "v,want", [(272_474, "272k"), (1_203_322, "1.2M"), (86_567_656, "86.6M"), (950, "950"), (1.35e9, "1.35B")]
)
def test_fmt_count(v: float, want: str) -> None:
    assert fmt_count(v) == want


@pytest.mark.parametrize("v,want", [(0.01234, "0.0123"), (4.414, "4.41"), (17.64, "17.6"), (1234.5, "1,234"), (0, "0")])
def test_fmt_sig(v: float, want: str) -> None:
    assert fmt_sig(v) == want


def test_short_reason() -> None:
    assert short_reason(OOM).startswith("OOM: CUDA out of memory")
    assert len(short_reason(NAN)) <= 32 and short_reason(NAN).endswith("…")
    assert short_reason("torch.cuda.OutOfMemoryError") == "OOM"
    assert short_reason("") == "unknown error"


# ----------------------------------------------------------------------------- loading


def test_load_dir_reads_trials_and_curves(results: Path) -> None:
    df, curves = load_results(results)
    assert len(df) == 48 and set(df["status"]) == {"ok", "failed"}
    assert not curves.empty and set(curves["trial_id"]) <= set(df["trial_id"])


def test_load_parent_of_several_studies(tmp_path: Path) -> None:
    write_results(tmp_path / "a", families=("vit",), study="a")
    write_results(tmp_path / "b", families=("resnet",), study="b")
    df, _ = load_results(tmp_path)
    assert set(df["study"]) == {"a", "b"}


def test_load_csv_and_parquet_files(tmp_path: Path) -> None:
    trials, _ = make_rows(families=("vit",), fail=False)
    trials.drop(columns=["status", "error"]).to_csv(tmp_path / "r.csv", index=False)
    trials.to_parquet(tmp_path / "r.parquet", index=False)
    for name in ("r.csv", "r.parquet"):
        df, curves = load_results(tmp_path / name)
        assert len(df) == len(trials) and curves.empty and set(df["status"]) == {"ok"}


def test_load_errors_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(StudyError, match="does not exist") as e:
        load_results(tmp_path / "nope")
    assert str(tmp_path / "nope") in e.value.line() and e.value.fix
    (tmp_path / "empty" / "trials").mkdir(parents=True)
    with pytest.raises(StudyError, match="no trials"):
        load_results(tmp_path / "empty")
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(StudyError, match="unsupported"):
        load_results(tmp_path / "x.json")


def test_extra_columns_pass_through(tmp_path: Path) -> None:
    trials, _ = make_rows(families=("vit",), fail=False)
    trials.assign(new_metric=1.0).to_parquet(tmp_path / "r.parquet", index=False)
    df, _ = load_results(tmp_path / "r.parquet")
    assert "new_metric" in df and build_table(df).rows


# ----------------------------------------------------------------------------- cli


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="harness")
    register(parser.add_subparsers(required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_table_formats(results: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["table", str(results)]) == 0
    assert capsys.readouterr().out == (GOLDEN_DIR / "table_default.md").read_text(encoding="utf-8")
    assert _run(["table", str(results), "--format", "csv", "--rows", "family,model", "--agg", "max"]) == 0
    assert capsys.readouterr().out.startswith("family,model,params")


def test_cli_table_bad_input_raises_study_error(tmp_path: Path) -> None:
    with pytest.raises(StudyError):
        _run(["table", str(tmp_path / "missing")])


def test_unmeasured_throughput_columns_are_left_out() -> None:
    """Profiling off: no infer/train img/s anywhere, so no all-"—" columns that read as "no trial"."""
    trials, _ = make_rows(families=("vit", "resnet"), sizes=("xs",), data_sizes=(1000,), fail=False)
    t = build_table(trials.assign(infer_img_s=float("nan"), train_img_s=float("nan")))
    assert t.columns == ["family", "model", "params", "GMACs", "data_size=1k"]
    half = trials.assign(infer_img_s=float("nan"))  # measured for some: the column stays
    assert "train img/s" in build_table(half).columns and "infer img/s" not in build_table(half).columns
