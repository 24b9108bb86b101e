"""Figures: every kind writes PNG+SVG of sane size, or says why it drew nothing."""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib.colors as mcolors
import numpy as np
import pandas as pd
import pytest

from harness.analysis.io import load_results
from harness.analysis.pareto_plots import pareto_front
from harness.analysis.plot_style import FAMILY_COLOURS, family_colour
from harness.analysis.plots import (
    KINDS,
    make_plot,
    plot_cost,
    plot_curves,
)
from harness.cli.analysis import register
from harness.errors import StudyError
from tests.analysis_fixtures import write_results

MIN_PNG_BYTES = 5_000  # an empty 150-dpi axes with labels is already ~15 kB; 5 kB means broken


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two resolutions so every kind has something to draw."""
    return write_results(
        tmp_path_factory.mktemp("plots"),
        families=("resnet", "vit", "mixer"),
        sizes=("xs", "s"),
        data_sizes=(500, 2000, 8000),
        image_sizes=(32, 64),
    )


@pytest.fixture(scope="module")
def loaded(results: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    return load_results(results)


def _check(paths: list[Path]) -> None:
    assert paths and {p.suffix for p in paths} == {".png", ".svg"}
    for p in paths:
        assert p.exists()
        if p.suffix == ".png":
            assert p.stat().st_size > MIN_PNG_BYTES, p


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_draws(loaded: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path, kind: str) -> None:
    df, curves = loaded
    out = make_plot(df, curves, kind, tmp_path, bootstrap=20)
    assert out.skipped == []
    _check(out.paths)
    if kind == "pareto":  # one figure per cost axis
        assert sorted(p.stem for p in out.paths if p.suffix == ".png") == [
            "pareto_test_acc_vs_compute",
            "pareto_test_acc_vs_gmacs",
            "pareto_test_acc_vs_throughput",
        ]


def test_scaling_without_fits_still_draws(loaded: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path) -> None:
    # only 2 sizes per family: points are drawn and joined, fits skipped (3 distinct x needed)
    df, curves = loaded
    small = df[df["family"].isin(["vit", "resnet"]) & (df["image_size"] == 32)]
    out = make_plot(small, curves, "scaling", tmp_path, x="params", bootstrap=0)
    _check(out.paths)


def test_nothing_to_show_is_skipped_with_reason(tmp_path: Path) -> None:
    df, curves = load_results(write_results(tmp_path / "r", families=("vit",), data_sizes=(1000,)))
    cost = plot_cost(df, tmp_path / "out")
    assert cost.paths == [] and "needs >= 2 image sizes" in cost.skipped[0]
    no_curves = plot_curves(df, curves.iloc[0:0], tmp_path / "out")
    assert no_curves.paths == [] and "no learning curves" in no_curves.skipped[0]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_all_failed_scaling_is_skipped(tmp_path: Path) -> None:
    df, curves = load_results(write_results(tmp_path / "r", families=("vit",)))
    df = df.assign(status="failed", test_acc=np.nan)
    out = make_plot(df, curves, "scaling", tmp_path / "out", bootstrap=0)
    assert out.paths == [] and "no ok trials" in out.skipped[0]


def test_one_colour_per_family() -> None:
    fams = ["resnet", "vit", "mixer", "convnext", "swin", "linear", "mlp"]
    assert set(fams) <= set(FAMILY_COLOURS)
    assert len({mcolors.to_hex(FAMILY_COLOURS[f]) for f in fams}) == len(fams)
    assert family_colour("newnet") == family_colour("newnet")  # stable for unknown families


def test_pareto_front() -> None:
    x = np.array([1.0, 2.0, 3.0, 4.0])
    y = np.array([50.0, 40.0, 70.0, 60.0])
    assert sorted(pareto_front(x, y, higher_x_better=False)) == [0, 2]  # cost: cheaper or better
    assert sorted(pareto_front(x, y, higher_x_better=True)) == [2, 3]  # speed: faster or better
    tie = pareto_front(np.array([1.0, 1.0, 2.0]), np.array([50.0, 60.0, 55.0]), False)
    assert list(tie) == [1]  # same cost, lower accuracy: dominated
    loss = pareto_front(x, -y, higher_x_better=False, higher_y_better=False)
    assert sorted(loss) == [0, 2]


def test_unknown_kind_is_study_error(loaded: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path) -> None:
    with pytest.raises(StudyError, match="unknown plot kind"):
        make_plot(*loaded, "heatmap", tmp_path)


def test_cli_plot_prints_paths_and_skips(results: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="harness")
    register(parser.add_subparsers(required=True))
    args = parser.parse_args(["plot", str(results), "--kind", "cost", "--out", str(tmp_path)])
    assert args.func(args) == 0
    printed = capsys.readouterr().out.split()
    assert str(tmp_path / "cost_vs_resolution.png") in printed


def test_pareto_labels_name_custom_shapes_by_family_and_params() -> None:
    """A spec like resnet{block=basic,layers=[2,2,1,1],...} is a line long: label it 'resnet 1.01M';
    one data size for every point is not repeated on each label."""
    from harness.analysis.pareto_plots import _pareto_points

    df = pd.DataFrame(
        {
            "status": "ok",
            "family": ["resnet", "vit"],
            "data_size": 16000,
            "model": ["resnet{block=basic,layers=[2,2,1,1],width=28}", "vit@xs"],
            "params": [1012014, 205000],
            "train_flops": [1e12, 2e12],
            "test_acc": [0.87, 0.76],
        }
    )
    pts, _ = _pareto_points(df, "train_flops", "test_acc")
    assert sorted(pts["_label"]) == ["resnet 1.01M", "vit@xs"]
