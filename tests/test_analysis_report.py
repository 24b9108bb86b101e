"""The report: full sections on a rich grid, and no crash on tiny or odd results."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pandas as pd
import pytest

from harness.analysis.report import write_report
from harness.cli.analysis import register
from harness.errors import StudyError
from tests.analysis_fixtures import make_rows, store_dtypes, write_results

BOOT = 10  # resamples: enough to exercise the intervals, fast on 2 cores


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 sizes x 4 data sizes: every section, holdout and the joint fit have data."""
    root = write_results(
        tmp_path_factory.mktemp("report"), families=("resnet", "vit"), sizes=("xs", "s", "m"), data_sizes=(500, 1000, 4000, 16000)
    )
    write_report(root, bootstrap=BOOT)
    return root


def _links(md: str) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)


def test_full_report_has_every_section(full: Path) -> None:
    md = (full / "report" / "index.md").read_text(encoding="utf-8")
    for heading in (
        "## Comparison",
        "## Scaling with data size",
        "## Scaling with model size",
        "### Joint fit over parameters and data size",
        "## Cost and efficiency",
        "## Learning curves",
        "## Provenance",
        "### Failures",
    ):
        assert heading in md
    assert "| resnet@xs |" in md and "holdout log-RMSE" in md
    assert "vit@s overtakes resnet@s at data_size ≈" in md
    assert "OOM: CUDA out of memory" in md and "torch_version: `2.5.1`" in md
    assert "cost: needs >= 2 image sizes" in md  # one resolution: skipped, with the reason


def test_report_fits_loss_beside_error(full: Path) -> None:
    """Both test_acc and test_loss exist: each scaling section fits the error and then the loss (issue 23)."""
    md = (full / "report" / "index.md").read_text(encoding="utf-8")
    data, model = md.index("## Scaling with data size"), md.index("## Scaling with model size")
    assert data < md.index("### test_loss vs data_size") < model < md.index("### test_loss vs params")
    assert "`test_loss = E + A·data_size^-alpha`" in md and "`test_loss = E + A·params^-alpha`" in md


def test_report_images_exist_and_links_are_relative(full: Path) -> None:
    md = (full / "report" / "index.md").read_text(encoding="utf-8")
    links = _links(md)
    assert len(links) >= 5
    for link in links:
        assert "/" not in link and (full / "report" / link).stat().st_size > 5_000


def test_html_mirrors_markdown(full: Path) -> None:
    html = (full / "report" / "index.html").read_text(encoding="utf-8")
    md = (full / "report" / "index.md").read_text(encoding="utf-8")
    md_tables = sum(1 for line in md.splitlines() if re.fullmatch(r"\|(:?-+:?\|)+", line))
    assert html.startswith("<!doctype html>") and html.count("<table>") == md_tables
    assert html.count("<img ") == len(_links(md))
    assert "<code>1 - test_acc = E + A·data_size^-alpha</code>" in html
    assert "<script" not in html and "&lt;reason&gt;" in html  # escaped, not raw


def _report(tmp_path: Path, **grid) -> str:
    root = write_results(tmp_path, **grid)
    return write_report(root, bootstrap=BOOT).read_text(encoding="utf-8")


def test_one_data_size_says_why(tmp_path: Path) -> None:
    md = _report(tmp_path, families=("vit", "resnet"), data_sizes=(1000,), seeds=(0,))
    assert "needs >= 3 distinct data_size values among ok trials, results have 1" in md
    assert "needs >= 3 model sizes in a family" in md or "distinct params" in md


def test_one_seed_three_sizes_gives_fit_without_intervals(tmp_path: Path) -> None:
    md = _report(tmp_path, families=("vit",), sizes=("s",), data_sizes=(500, 2000, 8000), seeds=(0,), fail=False)
    assert "exact fit" in md and "No holdout check" in md


def test_all_failed(tmp_path: Path) -> None:
    trials, _ = make_rows(families=("vit",), sizes=("s",), data_sizes=(500, 2000, 8000))
    trials = store_dtypes(
        trials.assign(
            status="failed", error="RuntimeError: boom", test_acc=float("nan"), best_test_acc=float("nan"), test_loss=float("nan")
        )
    )
    (tmp_path / "trials").mkdir()
    for i in range(len(trials)):
        trials.iloc[[i]].to_parquet(tmp_path / "trials" / f"{i}.parquet", index=False)
    md = write_report(tmp_path, bootstrap=BOOT).read_text(encoding="utf-8")
    assert "0 ok, 6 failed" in md and "failed: RuntimeError: boom" in md
    assert "no ok trial has a quality column" in md
    assert "RuntimeError: boom | 6 |" in md


def test_minimal_columns(tmp_path: Path) -> None:
    """Rows from some other tool: no family/provenance columns, no curves."""
    pd.DataFrame({"data_size": [100, 200, 400, 800], "test_acc": [0.5, 0.6, 0.7, 0.75]}).to_parquet(tmp_path / "r.parquet")
    (tmp_path / "trials").mkdir()
    (tmp_path / "r.parquet").rename(tmp_path / "trials" / "r.parquet")
    md = write_report(tmp_path, bootstrap=BOOT).read_text(encoding="utf-8")
    assert "## Provenance" in md and "Not computed" in md
    assert "no learning curves" in md


def test_missing_dir_is_study_error(tmp_path: Path) -> None:
    with pytest.raises(StudyError, match="does not exist"):
        write_report(tmp_path / "nope")


def test_cli_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = write_results(tmp_path, families=("vit",), data_sizes=(1000,), seeds=(0,))
    parser = argparse.ArgumentParser(prog="harness")
    register(parser.add_subparsers(required=True))
    args = parser.parse_args(["report", str(root), "--bootstrap", "5"])
    assert args.func(args) == 0
    assert capsys.readouterr().out.strip() == str(root / "report" / "index.md")


def test_exponent_on_its_bound_is_marked_in_the_fit_table(tmp_path: Path) -> None:
    """A non-monotonic curve (the middle size best) fits alpha at the bound 5: the table says (bound)."""
    rows, _ = make_rows(families=("vit",), sizes=("xs",), data_sizes=(500, 2000, 8000), seeds=(0,), fail=False)
    rows = store_dtypes(rows.assign(test_acc=rows["data_size"].map({500: 0.70, 2000: 0.77, 8000: 0.76})))
    (tmp_path / "trials").mkdir()
    rows.to_parquet(tmp_path / "trials" / "all.parquet")
    md = write_report(tmp_path, bootstrap=BOOT).read_text(encoding="utf-8")
    assert "5.00 (bound)" in md and "sits on its search bound" in md
