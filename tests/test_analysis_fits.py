"""Scaling-law fits: published Chinchilla refit, synthetic recovery, groups, holdout, CLI."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.analysis import fit_records, lawfit, laws
from harness.analysis.fits import fit_results
from harness.analysis.io import load_results
from harness.analysis.lawfit import fit_arrays
from harness.analysis.laws import predict
from harness.cli.analysis import register
from harness.errors import StudyError
from tests.analysis_fixtures import LAWS, SHAPES, true_error, write_results

CHINCHILLA = Path(__file__).resolve().parents[2] / "shared" / "data" / "chinchilla_svg_extracted.csv"
# Epoch AI's refit (Besiroglu et al. 2024, Table 1 via ../shared/data/README.md): estimate, SE
EPOCH = {"A": (482.01, 124.5), "B": (2085.43, 1293.0), "E": (1.817, 0.026), "alpha": (0.3478, 0.015), "beta": (0.3659, 0.021)}


@pytest.fixture(scope="module")
def chinchilla_fit() -> lawfit.LawFit:
    if not CHINCHILLA.exists():
        pytest.skip(f"{CHINCHILLA} not present")
    df = pd.read_csv(CHINCHILLA).sort_values("loss").iloc[:-5]  # drop the 5 highest-loss runs
    n = df["Model Size"].to_numpy(float)
    d = df["Training FLOP"].to_numpy(float) / (6 * n)
    assert len(df) == 240
    # 200 resamples: SEs to ~±10%, ~3-10 s on 2 cores (Epoch used 4000)
    return fit_arrays(np.c_[n, d], df["loss"].to_numpy(float), bootstrap=200, seed=0)


def test_chinchilla_reproduces_epoch_refit(chinchilla_fit: lawfit.LawFit) -> None:
    for name, (est, se) in EPOCH.items():
        assert abs(chinchilla_fit.params[name] - est) < se, (name, chinchilla_fit.params[name])


def test_chinchilla_bootstrap_ses_match_epoch(chinchilla_fit: lawfit.LawFit) -> None:
    # The tolerance trap makes SEs ~200x too small; a factor 2 either way catches it.
    for name, (_, se) in EPOCH.items():
        assert se / 2 < chinchilla_fit.se[name] < se * 2, (name, chinchilla_fit.se[name])
    lo, hi = chinchilla_fit.ci95["a"]
    assert lo < 0.513 < hi  # compute-optimal exponent a = beta/(alpha+beta)


def test_optimiser_leaves_a_bad_start() -> None:
    """The trap itself: from one poor start L-BFGS-B must still reach the optimum."""
    rng = np.random.default_rng(1)
    x = np.repeat(np.geomspace(100, 1e5, 8), 3)
    y = 0.05 + 30 * x**-0.6 * np.exp(0.01 * rng.standard_normal(len(x)))
    logx, logy = np.log(x)[:, None], np.log(y)
    bad = np.array([[0.0, 0.0, math.log(0.9)]])  # A=1, alpha=0, E=0.9: flat, far away
    theta, loss = laws.minimise(logx, logy, bad)
    good, best = laws.minimise(logx, logy, laws.best_starts(logx, logy, 6, laws.HUBER_DELTA))
    assert loss == pytest.approx(best, rel=1e-6, abs=1e-6)
    assert laws.theta_to_params(theta)["alpha"] == pytest.approx(0.6, abs=0.05)


def test_recovers_known_law_and_intervals_cover_truth() -> None:
    truth = {"E": 0.08, "A": 12.0, "alpha": 0.55}
    rng = np.random.default_rng(0)
    x = np.repeat(np.geomspace(250, 64_000, 9), 4)  # 9 data sizes x 4 seeds
    y = predict(truth, x) * np.exp(0.03 * rng.standard_normal(len(x)))
    f = fit_arrays(x, y, bootstrap=200, seed=0)
    for name, v in truth.items():
        lo, hi = f.ci95[name]
        assert lo <= v <= hi, (name, v, lo, hi)
    assert f.params["alpha"] == pytest.approx(0.55, rel=0.15)
    assert f.rmse_log < 0.05


def test_two_x_recovers_known_law() -> None:
    truth = {"E": 0.05, "A": 0.1 * 1e6**0.3, "alpha": 0.3, "B": 20.0, "beta": 0.6}
    rng = np.random.default_rng(2)
    n, d = np.meshgrid(np.geomspace(2e5, 2e7, 5), np.geomspace(500, 5e4, 5))
    x = np.c_[n.ravel(), d.ravel()].repeat(2, axis=0)
    y = predict(truth, x) * np.exp(0.01 * rng.standard_normal(len(x)))
    p = fit_arrays(x, y).params
    for name in ("alpha", "beta"):
        assert p[name] == pytest.approx(truth[name], abs=0.05)
    assert p["E"] == pytest.approx(truth["E"], abs=0.01)


# ----------------------------------------------------------------------------- results frames


@pytest.fixture(scope="module")
def grid_df(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """One size per family, 6 data sizes, 3 seeds, with the fixture's planted failures."""
    root = write_results(
        tmp_path_factory.mktemp("fits"), sizes=("s",), data_sizes=(500, 1000, 2000, 4000, 8000, 16000), seeds=(0, 1, 2)
    )
    return load_results(root)[0]


@pytest.fixture(scope="module")
def by_family(grid_df: pd.DataFrame) -> fit_records.FitReport:
    return fit_results(grid_df, "test_acc", ["data_size"], by="family", holdout=2, bootstrap=60)


def _true_crossing(a: str, b: str) -> float:
    xs = np.geomspace(100, 1e6, 20_000)
    n = {f: SHAPES[f]["s"][0] for f in (a, b)}
    d = true_error(a, n[a], xs) - true_error(b, n[b], xs)
    return float(xs[np.nonzero(np.diff(np.sign(d)))[0][0]])


def test_accuracy_is_fitted_as_error_and_drops_are_counted(by_family: fit_records.FitReport) -> None:
    assert by_family.target == "1 - test_acc"
    assert any("accuracy" in n for n in by_family.notes)
    assert by_family.dropped == {"failed": 4}  # 3 NaN seeds (mixer) + 1 OOM (convnext)
    mixer = next(f for f in by_family.fits if f.group == "mixer")
    assert mixer.n == 15 and mixer.n_dropped == 3
    assert "dropped: 4 failed" in by_family.summary()


def test_group_fits_match_the_generating_law(by_family: fit_records.FitReport) -> None:
    for f in by_family.fits:
        e, a, alpha, b, beta = LAWS[f.group]
        lo, hi = f.law.ci95["alpha"]
        assert lo <= beta <= hi, (f.group, beta, lo, hi)  # data exponent of the 2-x truth


def test_crossover_vit_overtakes_resnet(by_family: fit_records.FitReport) -> None:
    c = next(c for c in by_family.crossovers if {c.winner, c.other} == {"vit", "resnet"})
    assert c.winner == "vit" and c.x is not None
    truth = _true_crossing("vit", "resnet")
    assert truth / 1.5 < c.x < truth * 1.5
    assert c.ci95[0] < c.x < c.ci95[1]
    assert "vit overtakes resnet at data_size ≈" in c.text()
    never = next(c for c in by_family.crossovers if {c.winner, c.other} == {"resnet", "mixer"})
    assert never.x is None and "do not cross" in never.text()


def test_holdout_reports_extrapolation_error(by_family: fit_records.FitReport) -> None:
    h = by_family.fits[0].holdout
    assert h["held_out_x"] == [8000.0, 16000.0] and h["n_test"] == 6
    assert 0 < h["log_rmse"] < 0.3 and 0 < h["max_rel_error"] < 0.5


def test_json_shape(by_family: fit_records.FitReport) -> None:
    out = json.loads(json.dumps(by_family.to_json()))
    f = out["fits"][0]
    for key in ("group", "form", "y", "x", "n", "params", "ci95", "rmse_log", "holdout"):
        assert key in f
    assert set(f["params"]) == {"E", "A", "alpha"} and len(f["ci95"]["alpha"]) == 2
    assert out["crossovers"] and "text" in out["crossovers"][0]


def test_two_x_fit_on_results(tmp_path: Path) -> None:
    df = load_results(
        write_results(tmp_path, families=("vit",), sizes=("xs", "s", "m"), data_sizes=(500, 2000, 8000), fail=False)
    )[0]
    rep = fit_results(df, "test_acc", ["params", "data_size"], bootstrap=20)
    f = rep.fits[0]
    assert set(f.law.params) == {"E", "A", "alpha", "B", "beta"}
    assert "a" in f.law.ci95 and rep.crossovers == []
    assert f.law.params["beta"] == pytest.approx(LAWS["vit"][4], abs=0.1)


def test_pooling_and_exact_fit_are_flagged(tmp_path: Path) -> None:
    df = load_results(
        write_results(tmp_path, families=("vit",), sizes=("xs", "s"), data_sizes=(500, 2000, 8000), seeds=(0,), fail=False)
    )[0]
    pooled = fit_results(df, "test_acc", ["data_size"], bootstrap=10).fits[0]
    assert any("pools 2 model values" in n for n in pooled.notes)
    exact = fit_results(df, "test_acc", ["data_size"], by="model", bootstrap=10).fits[0]
    assert exact.law is not None and exact.law.ci95 == {}
    assert any("exact fit" in n for n in exact.notes)


def test_too_few_x_values_is_a_note_not_a_crash(tmp_path: Path) -> None:
    df = load_results(write_results(tmp_path, families=("vit",), data_sizes=(500, 2000)))[0]
    f = fit_results(df, "test_acc", ["data_size"], bootstrap=10).fits[0]
    assert f.law is None and "needs >= 3 distinct" in f.notes[-1]


def test_bad_requests_raise_study_error(grid_df: pd.DataFrame) -> None:
    with pytest.raises(StudyError, match="data_sise"):
        fit_results(grid_df, "test_acc", ["data_sise"])
    with pytest.raises(StudyError, match="3 x columns"):
        fit_results(grid_df, "test_acc", ["params", "data_size", "image_size"])
    with pytest.raises(StudyError, match="famly"):
        fit_results(grid_df, "test_acc", ["data_size"], by="famly")


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="harness")
    register(parser.add_subparsers(required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_fit_text_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = write_results(tmp_path, families=("resnet", "vit"), sizes=("s",), data_sizes=(500, 1000, 2000, 4000, 8000))
    assert (
        _run(["fit", str(root), "--y", "test_acc", "--x", "data_size", "--by", "family", "--holdout", "1", "--bootstrap", "20"])
        == 0
    )
    text = capsys.readouterr().out
    assert "[resnet]" in text and "holdout" in text and "overtakes" in text
    assert _run(["fit", str(root), "--y", "test_acc", "--x", "data_size", "--json", "--bootstrap", "0"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["fits"][0]["group"] == "all" and out["fits"][0]["ci95"] == {}


def test_crossover_outside_the_measured_range_is_marked_extrapolated() -> None:
    from harness.analysis.fit_records import Crossover

    inside = Crossover("a", "b", "data_size", 2000.0, (500.0, 32000.0), measured=(1000.0, 16000.0))
    outside = Crossover("a", "b", "data_size", 800.0, (500.0, 32000.0), measured=(1000.0, 16000.0))
    assert not inside.extrapolated and "EXTRAPOLATED" not in inside.text()
    assert outside.extrapolated and "EXTRAPOLATED: outside the measured 1k–16k" in outside.text()


def test_parameters_on_their_bounds_are_flagged() -> None:
    """A non-monotonic curve (the bigger model worse) drives alpha to its bound; a pure power law
    without a floor drives E to ~0: both are said, not reported as measured exponents or floors."""
    x = np.array([1e5, 3e5, 1e6, 1e5, 3e5, 1e6])
    bumpy = pd.DataFrame({"status": "ok", "params": x, "test_acc": [0.70, 0.77, 0.76, 0.70, 0.77, 0.76]})
    f = fit_results(bumpy, "test_acc", ["params"], bootstrap=0).fits[0]
    assert f.law is not None and any("alpha" in n and "search bound" in n for n in f.notes), f.notes
    no_floor = pd.DataFrame({"status": "ok", "params": x, "test_loss": 50.0 * x**-0.5})
    g = fit_results(no_floor, "test_loss", ["params"], bootstrap=0).fits[0]
    assert g.law.params["alpha"] == pytest.approx(0.5, abs=0.01)
    assert any("no floor is visible" in n for n in g.notes), g.notes
    assert not any("search bound" in n for n in g.notes)
    clean = pd.DataFrame({"status": "ok", "params": x, "test_loss": 0.1 + 50.0 * x**-0.5})
    assert fit_results(clean, "test_loss", ["params"], bootstrap=0).fits[0].notes == []
