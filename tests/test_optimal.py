"""Compute-optimal allocation (harness optimal, fit --isoflop, plan --isoflop): the minimiser against
its closed form, FLOPs per sample on registry ladders, IsoFLOP parabolas with known minima, the
Chinchilla reproduction, plots, report and CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from harness.analysis import optimal
from harness.analysis.isoflops import assign_budgets, fit_profile, isoflop_results
from harness.analysis.optimal import (
    FlopsModel,
    allocation_exponents,
    fit_flops_per_sample,
    n_opt,
    n_opt_closed_form,
    optimal_results,
)
from harness.cli import main

REPO = Path(__file__).resolve().parents[1]
CHINCHILLA = next(
    (
        p
        for p in (
            REPO.parent / "shared" / "data" / "chinchilla_svg_extracted.csv",
            Path("/work/shared/data/chinchilla_svg_extracted.csv"),
        )
        if p.exists()
    ),
    REPO.parent / "shared" / "data" / "chinchilla_svg_extracted.csv",
)
# Epoch AI's refit of Chinchilla (Besiroglu et al. 2024, via ../shared/data/README.md)
EPOCH = {"A": 482.01, "B": 2085.43, "E": 1.817, "alpha": 0.3478, "beta": 0.3659}
CHINCHILLA_BUDGET = 5.76e23  # Chinchilla's training FLOPs (70B params x 1.4T tokens x 6)
SIX_N = FlopsModel("6N", 6.0, 1.0)

# a vision-like law: err = E + A·N^-alpha + B·D^-beta, and f(N) = k·N^gamma (counted-like)
TRUTH = {"E": 0.05, "A": 40.0, "alpha": 0.35, "B": 60.0, "beta": 0.45}
F_TRUTH = FlopsModel("counted", 60.0, 1.05)


# ----------------------------------------------------------------------------- the minimiser


@pytest.mark.parametrize(
    "params,fm",
    [
        (EPOCH, SIX_N),
        ({"A": 406.4, "B": 410.7, "E": 1.69, "alpha": 0.34, "beta": 0.28}, SIX_N),  # Hoffmann et al.'s own fit
        (TRUTH, F_TRUTH),
        ({"A": 3.0, "B": 900.0, "E": 0.1, "alpha": 0.9, "beta": 0.2}, FlopsModel("counted", 25.0, 0.8)),
    ],
)
def test_minimiser_matches_the_closed_form(params: dict[str, float], fm: FlopsModel) -> None:
    """For f = k·N^gamma, minimising E + A·N^-alpha + B·(k·N^gamma/C)^beta over N gives
    N_opt = (alpha·A/(gamma·beta·B))^(1/(alpha+gamma·beta)) · (C/k)^(beta/(alpha+gamma·beta)) exactly."""
    for budget in (1e12, 1e18, 5.76e23):
        assert n_opt(params, fm, budget) == pytest.approx(n_opt_closed_form(params, fm, budget), rel=1e-6)
    a, b = allocation_exponents(params, fm)
    c1, c2 = 1e15, 1e21
    slope = math.log(n_opt(params, fm, c2) / n_opt(params, fm, c1)) / math.log(c2 / c1)
    assert slope == pytest.approx(a, abs=1e-6)
    d = [c / float(fm.per_sample(n_opt(params, fm, c))) for c in (c1, c2)]
    assert math.log(d[1] / d[0]) / math.log(c2 / c1) == pytest.approx(b, abs=1e-6)
    if fm.kind == "6N":
        assert a + b == pytest.approx(1.0)


def test_minimiser_has_no_optimum_without_both_exponents() -> None:
    assert math.isnan(n_opt(dict(EPOCH, beta=0.0), SIX_N, 1e20))


# ----------------------------------------------------------------------------- FLOPs per sample


@pytest.fixture(scope="module")
def ladder_counts() -> dict[str, list[tuple[int, float]]]:
    """(params, counted training MACs per sample) of each family's small ladder at 28 px."""
    import torch

    from harness import flops, flops_train, zoo

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = {}
    try:
        for fam in ("resnet", "vit"):
            rows = []
            for size in ("xs", "s", "m"):
                ms = zoo.resolve(f"{fam}@{size}")
                dims = {"image_size": 28, "in_chans": 1, "num_classes": 10}
                rows.append((flops.param_count(ms, **dims), flops_train.train_gmacs(ms, **dims) * 1e9))
            out[fam] = rows
    finally:
        torch.set_num_threads(threads)
    return out


def test_flops_per_sample_fit_on_registry_ladders(ladder_counts: dict[str, list[tuple[int, float]]]) -> None:
    for fam, rows in ladder_counts.items():
        n, f = np.array(rows, dtype=float).T
        fm = fit_flops_per_sample(n, f)
        assert fm.kind == "counted" and fm.n_models == 3
        assert 0.5 < fm.gamma < 1.5, (fam, fm.gamma)  # compute grows about linearly with params on a ladder
        assert fm.max_rel_error < 0.25, (fam, fm.max_rel_error)
        assert np.allclose(fm.per_sample(n), f, rtol=fm.max_rel_error + 1e-9)
    # why 6N is wrong for vision: on these ladders the families differ several-fold at equal params
    r = fit_flops_per_sample(*np.array(ladder_counts["resnet"], float).T)
    v = fit_flops_per_sample(*np.array(ladder_counts["vit"], float).T)
    assert max(r.per_sample(1e6), v.per_sample(1e6)) > 2 * min(r.per_sample(1e6), v.per_sample(1e6))


def test_flops_per_sample_needs_two_models() -> None:
    with pytest.raises(optimal.StudyError, match="2 model sizes"):
        fit_flops_per_sample(np.array([1e6, 1e6]), np.array([3e7, 3e7]))


def _rows(
    ladders: dict[str, list[tuple[int, float]]], budgets: list[float], law: dict[str, float], noise: float = 0.01, seed: int = 0
) -> pd.DataFrame:
    """Trials of every ladder model at every budget, as harness rows (train_flops = f·samples)."""
    rng = np.random.default_rng(seed)
    out = []
    for fam, models in ladders.items():
        for n, f in models:
            for c in budgets:
                d = round(c / f)
                err = optimal.law_at(law, n, d) * math.exp(noise * rng.standard_normal())
                out.append(
                    {
                        "status": "ok",
                        "family": fam,
                        "model": f"{fam}-{n}",
                        "params": n,
                        "samples_seen": d,
                        "train_flops": f * d,
                        "test_acc": 1.0 - err,
                        "data_size": 60000,
                    }
                )
    return pd.DataFrame(out)


def test_counted_optimum_on_ladder_rows_matches_the_truth(ladder_counts: dict[str, list[tuple[int, float]]]) -> None:
    """End to end: rows from counted ladders and a known law; the optimum matches the closed form
    under the rows' own fitted f, inside the bootstrap interval."""
    law = {"E": 0.08, "A": 5.0, "alpha": 0.3, "B": 20.0, "beta": 0.5}
    budgets = [1e12 * 2**k for k in range(6)]
    df = _rows(ladder_counts, budgets, law, noise=0.005)
    rep = optimal_results(df, [1e13, 1e15], by="family", bootstrap=40)
    assert [g.fit.group for g in rep.groups] == ["resnet", "vit"]
    for g in rep.groups:
        fm = g.flops_model
        assert fm.kind == "counted" and fm.n_models == 3
        big = g.allocations[1]
        assert "extrapolated ×" in big.note and "beyond the largest run" in big.note
        assert g.allocations[0].note == ""
        want = n_opt_closed_form(law, fm, 1e13)
        lo, hi = g.allocations[0].n_opt_ci95
        assert lo <= want <= hi, (g.fit.group, lo, want, hi)
        assert g.allocations[0].a == pytest.approx(law["beta"] / (law["alpha"] + fm.gamma * law["beta"]), abs=0.08)
    row = rep.rows()[0]
    for key in ("group", "budget", "n_opt", "d_opt", "n_opt_ci95", "d_opt_ci95", "metric_opt", "a", "b", "flops_model"):
        assert key in row
    assert row["flops_model"]["kind"] == "counted"


# ----------------------------------------------------------------------------- approach 2


def _isoflop_frame(a: float = 0.5, budgets: tuple[float, ...] = (1e12, 4e12, 1.6e13), seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """Synthetic IsoFLOP profiles with known minima N*(C) = g·C^a: y = y0(C) + 0.02·(ln N − ln N*)²."""
    rng = np.random.default_rng(seed)
    g = 1e6 / 1e12**a
    truth, rows = {}, []
    for c in budgets:
        star = g * c**a
        truth[c] = star
        for n in star * np.geomspace(1 / 6, 6, 7):
            for _ in range(2):
                y = 0.3 - 0.02 * math.log(c / 1e12) + 0.02 * math.log(n / star) ** 2 + 0.002 * rng.standard_normal()
                cc = c * math.exp(0.01 * rng.standard_normal())  # planned trials land ~1% off their budget
                rows.append(
                    {
                        "status": "ok",
                        "family": "vit",
                        "params": n,
                        "samples_seen": cc / (30 * n),
                        "train_flops": cc,
                        "test_loss": y,
                    }
                )
    return pd.DataFrame(rows), truth


def test_parabola_recovers_known_minima() -> None:
    df, truth = _isoflop_frame()
    rep = isoflop_results(df, y="test_loss", x=["params"], bootstrap=100)
    (g,) = rep.groups
    assert [p.budget for p in g.profiles] == pytest.approx(sorted(truth), rel=0.02)
    for p, (_c, star) in zip(g.profiles, sorted(truth.items())):
        assert p.bracketed and p.n_opt == pytest.approx(star, rel=0.1)
        lo, hi = p.n_opt_ci95
        assert lo <= star <= hi
    assert g.a == pytest.approx(0.5, abs=0.03)
    assert g.a_ci95[0] <= 0.5 <= g.a_ci95[1]
    assert "approach 2 vs approach 3" in rep.summary()


def test_parabola_without_a_minimum_says_so() -> None:
    t = np.array([1e5, 2e5, 4e5, 8e5])
    p = fit_profile(t, 1.0 - 0.1 * np.log(t) ** 2 / 100, 1e12, bootstrap=10)  # concave: no minimum
    assert math.isnan(p.n_opt) and "not convex" in p.note
    q = fit_profile(t, (np.log(t) - math.log(1e7)) ** 2, 1e12, bootstrap=10)  # minimum far right
    assert not q.bracketed and "outside the measured sizes" in q.note


def test_assign_budgets() -> None:
    c = np.array([0.99e12, 1.01e12, 2.02e12, 1.98e12, 3.9e12, 7e12])
    got = assign_budgets(c, [1e12, 2e12, 4e12])
    assert list(got[:5]) == [1e12, 1e12, 2e12, 2e12, 4e12] and math.isnan(got[5])
    clusters = assign_budgets(c)
    assert len(set(clusters)) == 4 and clusters[0] == clusters[1] == pytest.approx(1e12, rel=0.01)


# ----------------------------------------------------------------------------- Chinchilla


@pytest.fixture(scope="module")
def chinchilla() -> pd.DataFrame:
    if not CHINCHILLA.exists():
        pytest.skip(f"{CHINCHILLA} not present")
    return pd.read_csv(CHINCHILLA).sort_values("loss").iloc[:-5]  # Epoch dropped the 5 highest-loss runs


def test_chinchilla_allocation_reproduces_the_refit(chinchilla: pd.DataFrame) -> None:
    """The value to contain, derived from Epoch's refit (A, B, E, alpha, beta above):

    With C = 6·N·D, D = C/(6N) and L(N) = E + A·N^-alpha + B·(6N/C)^beta. Setting dL/dN = 0:
        alpha·A·N^-(alpha+1) = beta·B·(6/C)^beta·N^(beta-1)
        N^(alpha+beta) = (alpha·A / (beta·B)) · (C/6)^beta
        N_opt = G·(C/6)^a,  G = (alpha·A/(beta·B))^(1/(alpha+beta)),  a = beta/(alpha+beta)
    Numbers: a = 0.3659/0.7137 = 0.5127; G = (0.3478·482.01/(0.3659·2085.43))^(1/0.7137) = 0.2197^1.401
    = 0.1197; C/6 = 9.6e22, (C/6)^a = 6.06e11; N_opt ≈ 72.5B (Chinchilla itself is 70B)."""
    p = EPOCH
    a = p["beta"] / (p["alpha"] + p["beta"])
    g = (p["alpha"] * p["A"] / (p["beta"] * p["B"])) ** (1 / (p["alpha"] + p["beta"]))
    expected = g * (CHINCHILLA_BUDGET / 6) ** a
    assert expected == pytest.approx(72.5e9, rel=0.01)
    assert a == pytest.approx(0.513, abs=0.001)

    rep = optimal_results(
        chinchilla, [CHINCHILLA_BUDGET], y="loss", x=["Model Size", "D"], flops="6N", compute="Training FLOP", bootstrap=200
    )
    (al,) = rep.groups[0].allocations
    assert al.a == pytest.approx(0.51, abs=0.02)
    assert al.a_ci95[0] < 0.513 < al.a_ci95[1]
    lo, hi = al.n_opt_ci95
    assert lo < expected < hi, (lo, expected, hi)
    assert al.d_opt == pytest.approx(CHINCHILLA_BUDGET / (6 * al.n_opt))
    assert "extrapolated ×44.3" in al.note or "extrapolated ×44" in al.note  # largest run 1.3e22


def test_chinchilla_cli_json(chinchilla: pd.DataFrame, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "chinchilla240.csv"
    chinchilla.to_csv(path, index=False)  # the 240-run subset, as the docs example (docs/guides/compute-optimal.md) makes it
    assert (
        main(
            [
                "optimal",
                str(path),
                "--budget",
                "5.76e23,1e21",
                "--x",
                "Model Size",
                "--x",
                "D",
                "--y",
                "loss",
                "--flops-per-sample",
                "6N",
                "--compute",
                "Training FLOP",
                "--bootstrap",
                "20",
                "--json",
            ]
        )
        == 0
    )
    rows = json.loads(capsys.readouterr().out)
    assert [r["budget"] for r in rows] == [5.76e23, 1e21]
    assert rows[0]["flops_model"]["kind"] == "6N" and 4e10 < rows[0]["n_opt"] < 1.2e11


# ----------------------------------------------------------------------------- CLI, plots, report


def test_fit_isoflop_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    df, _ = _isoflop_frame()
    path = tmp_path / "iso.csv"
    df.to_csv(path, index=False)
    assert main(["fit", str(path), "--isoflop", "--y", "test_loss", "--x", "params", "--bootstrap", "30"]) == 0
    out = capsys.readouterr().out
    assert "power law through the minima: N_opt =" in out and "approach 2 vs approach 3:" in out
    assert (
        main(
            [
                "fit",
                str(path),
                "--isoflop",
                "--y",
                "test_loss",
                "--x",
                "params",
                "--bootstrap",
                "10",
                "--budgets",
                "1e12,4e12,1.6e13",
                "--json",
            ]
        )
        == 0
    )
    rep = json.loads(capsys.readouterr().out)
    assert [p["budget"] for p in rep["groups"][0]["profiles"]] == [1e12, 4e12, 1.6e13]


def test_optimal_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    df, _ = _isoflop_frame()
    path = tmp_path / "iso.csv"
    df.to_csv(path, index=False)
    assert main(["optimal", str(path), "--budget", "lots"]) == 2
    assert "--budget: cannot read budget 'lots'" in capsys.readouterr().err
    assert main(["optimal", str(path), "--budget", "1e12", "--flops-per-sample", "7N"]) == 2
    assert "--flops-per-sample" in capsys.readouterr().err


def test_plots_and_report_section(ladder_counts: dict[str, list[tuple[int, float]]], tmp_path: Path) -> None:
    from harness.analysis.optimal_plots import measured_points, plot_isoflop, plot_n_opt, report_section
    from harness.analysis.report import Doc, to_md

    law = {"E": 0.08, "A": 5.0, "alpha": 0.3, "B": 20.0, "beta": 0.5}
    df = _rows(ladder_counts, [3e12, 1e13, 3e13], law, noise=0.005)
    iso = isoflop_results(df, y="test_acc", by="family", bootstrap=20)
    opt = optimal_results(df, [1e13, 3e14], by="family", bootstrap=20)
    assert plot_isoflop(iso, tmp_path).paths[0].name == "isoflop_test_acc.png"
    out = plot_n_opt(opt, tmp_path, iso, measured_points(iso))
    assert [p.suffix for p in out.paths] == [".png", ".svg"]
    doc = Doc()
    report_section(doc, df, "test_acc", tmp_path, 20)
    md = to_md(doc)
    assert "## Compute-optimal allocation" in md and "n_opt_test_acc.png" in md and "isoflop_test_acc.png" in md
    doc = Doc()
    report_section(doc, df.assign(samples_seen=1000), "test_acc", tmp_path, 20)
    assert "Not computed: the joint fit needs" in to_md(doc)


# ----------------------------------------------------------------------------- plan --isoflop


def test_plan_isoflop_puts_every_point_on_its_budget() -> None:
    from harness import isoflop

    budgets = [2e11, 4e11, 8e11]
    pts = isoflop.plan_isoflop("vit", budgets, image_size=28, sizes=3, min_steps=20, batch_size=32)
    assert len(pts) == 9
    for c in budgets:
        on = [p for p in pts if p.budget == c]
        assert len({p.params for p in on}) == 3  # three distinct shapes per budget
        for p in on:
            assert abs(p.error_pct) < 100 / (2 * p.steps) + 1e-9  # within half a step
        assert max(p.train_gmacs for p in on) / min(p.train_gmacs for p in on) == pytest.approx(4, rel=0.25)
    # sliding ladder: neighbouring budgets share all but one shape
    shapes = [{p.model_yaml() for p in pts if p.budget == c} for c in budgets]
    assert len(shapes[0] & shapes[1]) == 2 and len(shapes[1] & shapes[2]) == 2


def test_plan_isoflop_cli_snippets_and_study(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from harness import spec

    argv = ["plan", "--isoflop", "2e11,4e11,8e11", "--family", "vit", "--sizes", "3", "--min-steps", "20", "--batch-size", "32"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "linked axes" in text and "## budget 2e+11: vit" in text
    items = yaml.safe_load("\n".join(line for line in text.splitlines() if line.startswith("- ")))
    assert len(items) == 9 and all(set(i) == {"model", "steps"} for i in items)
    assert main([*argv, "--study", "iso_test"]) == 0
    study_file = tmp_path / "iso_test.yaml"
    study_file.write_text(capsys.readouterr().out)
    study = spec.load_study(study_file)
    assert study.train["epochs"] == 1 and study.zips == (("model", "data_size"),)
    trials = spec.expand(study)
    # one trial per planned point: no off-budget cells (a cartesian 5 models x 3 sizes would be 15)
    assert len(trials) == 9 and len(study.grid["model"]) == 9
    assert sorted(set(study.grid["data_size"])) == [640, 1280, 2560]
    _assert_on_budget(trials, [2e11, 4e11, 8e11], per_budget=3)
    # budgets that are not a geometric series: each budget's ladder still lands on it
    assert main([*argv[:2], "2e11,5e11", *argv[3:], "--study", "x", "--ratio", "2"]) == 0
    study_file.write_text(capsys.readouterr().out)
    _assert_on_budget(spec.expand(spec.load_study(study_file)), [2e11, 5e11], per_budget=3)
    assert main([*argv[:-4], "--min-steps", "1000", "--batch-size", "64", "--study", "x"]) == 2
    assert "over 60,000" in capsys.readouterr().err
    assert main(["plan", "--family", "vit"]) == 2
    assert "--targets is required" in capsys.readouterr().err


def _assert_on_budget(trials: list, budgets: list[float], *, per_budget: int) -> None:
    """Every trial's counted training compute (epochs 1: samples = data_size) is within 5% of one budget,
    each budget has `per_budget` trials of distinct models, and a budget's largest model sees the least data."""
    from harness import flops_train

    on: dict[float, list[tuple[int, float]]] = {c: [] for c in budgets}
    for t in trials:
        assert t.train["epochs"] == 1 and t.train["steps"] is None
        compute = flops_train.train_gmacs(t.model, image_size=t.image_size, in_chans=1, num_classes=10) * 1e9 * t.data_size
        c = min(budgets, key=lambda b: abs(math.log(compute / b)))
        assert compute == pytest.approx(c, rel=0.05), (t.model, t.data_size, compute, c)
        on[c].append((t.data_size, compute / t.data_size))
    for cells in on.values():
        assert len(cells) == per_budget and len({f for _, f in cells}) == per_budget
        assert [d for d, _ in sorted(cells, key=lambda x: x[1])] == sorted((d for d, _ in cells), reverse=True)


def test_plan_isoflop_study_reproduces_isoflop_cpu(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """studies/isoflop_cpu.yaml's grid is the planner's --study output for the command in its header."""
    from harness import spec

    assert (
        main(["plan", "--isoflop", "2.5e11,5e11,1e12", "--family", "resnet,vit", "--image-size", "28", "--study", "isoflop_cpu"])
        == 0
    )
    path = tmp_path / "isoflop_cpu.yaml"
    path.write_text(capsys.readouterr().out)

    def cells(study_path: Path) -> list[tuple]:
        return [(t.model.identity(), t.data_size, t.image_size, t.seed) for t in spec.expand(spec.load_study(study_path))]

    planned, shipped = cells(path), cells(REPO / "studies" / "isoflop_cpu.yaml")
    assert len(planned) == 24 and sorted(planned, key=repr) == sorted(shipped, key=repr)
    _assert_on_budget(spec.expand(spec.load_study(path)), [2.5e11, 5e11, 1e12], per_budget=8)


def test_six_n_budgets_are_compared_with_six_n_d_not_the_counted_column() -> None:
    """With 6N, 'extrapolated' is judged in 6·N·D FLOPs, even when the rows carry counted train_flops (MACs)."""
    df, _ = _isoflop_frame()
    df["test_loss"] = optimal.law_at(TRUTH, df["params"], df["samples_seen"])
    rep = optimal_results(df, [1e12], y="test_loss", flops="6N", bootstrap=0)
    (g,) = rep.groups
    six = 6 * df["params"] * df["samples_seen"]
    assert g.compute_range == pytest.approx((six.min(), six.max()))
    assert g.allocations[0].n_opt_ci95 is None  # no bootstrap, no interval
