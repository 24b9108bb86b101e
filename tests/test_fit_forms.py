"""Law forms, --form auto, coded warnings (issue 23)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.analysis import fitwarnings, lawfit
from harness.analysis.fits import fit_results
from harness.analysis.forms import asymptotic_exponent, predict
from harness.analysis.io import load_results
from harness.analysis.lawfit import best_form, compare_forms, fit_arrays

GPU_ROWS = Path(__file__).resolve().parents[1] / "docs" / "gpu_run" / "gpu_data_scaling_trials.csv"
TRUTH = {
    "power": {"E": 0.05, "A": 12.0, "alpha": 0.55},
    "saturating": {"E": 0.01, "A": 30.0, "alpha": 0.6, "d": 2000.0},
    "m4": {"E": 0.05, "E0": 0.9, "A": 30.0, "alpha": 0.6, "gamma": 1.0},
    "broken": {"E": 0.02, "A": 20.0, "alpha": 0.8, "alpha2": -0.5, "x_break": 5000.0, "f": 0.3},
}


def _rows(truth: dict[str, float], noise: float, seeds: int = 3, n: int = 9, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    x = np.repeat(np.geomspace(100, 1e6, n), seeds)
    rng = np.random.default_rng(seed)
    return x, predict(truth, x) * np.exp(noise * rng.standard_normal(len(x)))


@pytest.mark.parametrize("form", list(TRUTH))
def test_each_form_recovers_its_own_law(form: str) -> None:
    truth = TRUTH[form]
    x, y = _rows(truth, 0.005)
    p = fit_arrays(x, y, form=form).params
    assert set(p) == set(truth)
    assert asymptotic_exponent(p) == pytest.approx(asymptotic_exponent(truth), abs=0.08)
    assert p["E"] == pytest.approx(truth["E"], abs=0.01)
    xs = np.geomspace(100, 1e6, 20)
    assert np.max(np.abs(predict(p, xs) / predict(truth, xs) - 1)) < 0.03


def test_saturating_truth_lies_in_its_intervals() -> None:
    truth = TRUTH["saturating"]
    x, y = _rows(truth, 0.02)
    f = fit_arrays(x, y, form="saturating", bootstrap=40, seed=0, within_points=True)
    for name in ("alpha", "E", "d"):
        lo, hi = f.ci95[name]
        assert lo <= truth[name] <= hi, (name, lo, hi)


@pytest.mark.slow  # ~12 s: every form fitted twice
def test_auto_extrapolates_saturating_data_where_power_misses() -> None:
    x, y = _rows(TRUTH["saturating"], 0.01)
    table = compare_forms(x[:, None], y)
    err = {r["form"]: r["extrapolation_error"] for r in table}
    assert err["power"] > 0.10  # E + A·x^-alpha bends through the plateau: ~27% off
    assert err[best_form(table)] < 0.05


# ----------------------------------------------------------------------------- warnings


def _frame(truth: dict[str, float], *, seeds: int = 3, steps: str = "fixed", noise: float = 0.01) -> pd.DataFrame:
    x, y = _rows(truth, noise, seeds=seeds, n=7)
    n_steps = 1000 if steps == "fixed" else np.ceil(10 * x / 256)  # an epoch budget grows with n
    df = pd.DataFrame({"status": "ok", "family": "vit", "data_size": x, "test_acc": 1 - y, "steps": n_steps, "batch_size": 256})
    return df.assign(samples_seen=df["steps"] * 256)  # as real rows: passes per example fall as 1/n at fixed steps


def _codes(df: pd.DataFrame, form: str = "power") -> dict[str, dict]:
    rep = fit_results(df, "test_acc", ["data_size"], by="family", bootstrap=30, form=form)
    return {w["code"]: w for w in rep.fits[0].warnings} | {"_fit": rep.fits[0]}


def test_clean_data_gives_no_warning() -> None:
    codes = _codes(_frame(TRUTH["power"]))
    assert set(codes) == {"_fit"}
    assert codes["_fit"].to_json()["warnings"] == []


def test_early_stopping_under_one_ceiling_is_not_a_confounded_budget() -> None:
    """Each size trained to convergence: the steps run differ, the budget (max_steps) does not."""
    df = _frame(TRUTH["power"])
    df = df.assign(max_steps=5000, steps=np.round(200 * np.sqrt(df["data_size"] / 100)).clip(upper=5000))
    assert fitwarnings.budget_confounded(df, "data_size") is None
    assert fitwarnings.budget_confounded(df.assign(batch_size=np.where(df["data_size"] > 5000, 512, 256)), "data_size")


def test_epoch_budget_and_two_seeds_are_flagged() -> None:
    codes = _codes(_frame(TRUTH["power"], seeds=2, steps="epochs"))
    assert {"budget_confounded", "few_seeds"} <= set(codes)
    assert "steps 4 at n=100 vs 3.906e+04 at n=1M" in codes["budget_confounded"]["message"]


def test_slope_change_is_pre_asymptotic() -> None:
    """Steep at small n, shallow (0.3) at large n: one power law fits neither end."""
    truth = {"E": 0.0001, "A": 20.0, "alpha": 0.9, "alpha2": -0.6, "x_break": 3000.0, "f": 0.1}
    codes = _codes(_frame(truth))
    assert "pre_asymptotic" in codes
    asym = codes["_fit"].asymptotic
    assert asym["alpha"] == pytest.approx(0.3, abs=0.05)
    assert asym["ci95"][0] <= asym["alpha"] <= asym["ci95"][1]


def test_tune_winner_on_the_edge() -> None:
    df = _frame(TRUTH["power"]).assign(_tune_edge=True)
    assert fitwarnings.edge_winner(df)["code"] == "edge_winner"
    assert fitwarnings.edge_winner(df.assign(_tune_edge=False)) is None


def test_gpu_rows_resnet_is_budget_confounded_and_pre_asymptotic() -> None:
    df, _ = load_results(str(GPU_ROWS))
    rep = fit_results(df[df["family"] == "resnet"], "test_acc", ["data_size"], by="family", bootstrap=40)
    f = rep.fits[0]
    codes = {w["code"] for w in f.warnings}
    assert {"budget_confounded", "pre_asymptotic", "few_seeds"} <= codes
    assert f.asymptotic["alpha"] == pytest.approx(0.24, abs=0.03)  # the large-n slope, not the fitted 0.94
    assert f.law.params["alpha"] > 0.6


def test_unknown_form_names_the_valid_ones() -> None:
    from harness.errors import StudyError

    with pytest.raises(StudyError, match="auto, power, saturating, m4, broken"):
        fit_results(_frame(TRUTH["power"]), "test_acc", ["data_size"], form="zhai")


# ----------------------------------------------------------------------------- loss beside error


def test_loss_is_fitted_as_it_is_with_forms_and_warnings(tmp_path: Path) -> None:
    """--y test_loss: no 1 - y, the same forms and warnings as the error, and a plot (issue 23 item 4)."""
    from harness.analysis.plots import plot_scaling

    truth = {"E": 0.3, "A": 40.0, "alpha": 0.5}
    df = _frame(truth, seeds=2, steps="epochs").drop(columns="test_acc")
    df["test_loss"] = _rows(truth, 0.01, seeds=2, n=7)[1]
    rep = fit_results(df, "test_loss", ["data_size"], by="family", bootstrap=10, form="auto")
    f = rep.fits[0]
    assert rep.target == "test_loss" and f.forms and f.law.params["E"] == pytest.approx(0.3, abs=0.05)
    assert {"budget_confounded", "few_seeds"} <= {w["code"] for w in f.warnings}
    out = plot_scaling(df, tmp_path, x="data_size", y="test_loss", bootstrap=5)
    assert [p.name for p in out.paths if p.suffix == ".png"] == ["scaling_test_loss_vs_data_size.png"]


def test_cli_unknown_form_is_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import main

    assert main(["fit", str(GPU_ROWS), "--x", "data_size", "--form", "zhai"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--form" in err[0] and "'zhai'" in err[0] and "auto, power, saturating, m4, broken" in err[0]


def test_broken_intervals_carry_their_measured_undercoverage() -> None:
    from harness.analysis.fits import BROKEN_CI_NOTE

    rep = fit_results(_frame(TRUTH["broken"]), "test_acc", ["data_size"], by="family", bootstrap=8, form="broken")
    assert BROKEN_CI_NOTE in rep.fits[0].notes
    assert (
        BROKEN_CI_NOTE
        not in fit_results(_frame(TRUTH["power"]), "test_acc", ["data_size"], bootstrap=8, form="power").fits[0].notes
    )


def test_auto_prefers_the_simpler_form_when_extrapolation_errors_tie() -> None:
    """Errors within FORM_TIE of the best are noise: the simplest such form wins, not the lowest by a hair."""
    table = [
        {"form": "power", "params": {}, "extrapolation_error": 0.0066},
        {"form": "saturating", "params": {}, "extrapolation_error": 0.0011},
        {"form": "m4", "params": {}, "extrapolation_error": None},
        {"form": "broken", "params": {}, "extrapolation_error": 0.0008},
    ]
    assert lawfit.best_form(table) == "power"
    table[0]["extrapolation_error"] = 0.15  # power misses by 15%: saturating (0.1%) wins over broken's tie
    assert lawfit.best_form(table) == "saturating"
    assert lawfit.best_form([{"form": "power", "params": {}, "extrapolation_error": None}]) == "power"


def test_the_summary_skips_full_data_fits_of_the_forms_not_chosen_and_json_keeps_them(capsys: pytest.CaptureFixture) -> None:
    """`harness fit` without --json prints each form's extrapolation error only, so the forms not chosen are not
    refitted on all rows (form_params=False, issue 27); the chosen law and the printed text are the same."""
    x, y = _rows(TRUTH["saturating"], 0.01, n=7)
    df = pd.DataFrame({"status": "ok", "family": "vit", "data_size": x, "test_acc": 1 - y})
    full = fit_results(df, "test_acc", ["data_size"], by="family", bootstrap=20, form="auto")
    lean = fit_results(df, "test_acc", ["data_size"], by="family", bootstrap=20, form="auto", form_params=False)
    assert lean.summary() == full.summary()
    (f_full,), (f_lean,) = full.fits, lean.fits
    assert f_lean.law.params == f_full.law.params and f_lean.law.ci95 == f_full.law.ci95
    chosen = f_full.form
    for a, b in zip(f_full.forms, f_lean.forms):
        assert a["extrapolation_error"] == b["extrapolation_error"] and a["params"] is not None
        assert b["params"] == (a["params"] if a["form"] == chosen else None)


def test_fit_json_carries_every_forms_full_data_params(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import json

    from harness.cli import main

    x, y = _rows(TRUTH["saturating"], 0.01, n=7)
    rows = tmp_path / "rows.csv"
    pd.DataFrame({"status": "ok", "family": "vit", "data_size": x, "test_acc": 1 - y}).to_csv(rows, index=False)
    assert main(["fit", str(rows), "--by", "family", "--bootstrap", "0", "--json"]) == 0
    (fit,) = json.loads(capsys.readouterr().out)["fits"]
    assert [f["form"] for f in fit["forms"]] == ["power", "saturating", "m4", "broken"]
    assert all(f["params"] for f in fit["forms"])
