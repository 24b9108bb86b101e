"""Compute-optimal allocation: which model size N and how many training samples D for a budget C.

Two of Chinchilla's approaches (Hoffmann et al. 2022, section 3):

- **Approach 3** (`harness optimal`): the joint fit `L(N, D) = E + A/N^alpha + B/D^beta` of
  `fits.py` (Huber on log residuals, L-BFGS-B, bootstrap over trials), minimised under the
  compute constraint `C = f(N)·D`, where f is the training compute per sample. For language
  models f = 6N; for vision it depends on the family, shape and resolution, so by default f is
  the *counted* training compute per sample of the rows (`train_flops / samples_seen`, or
  `train_gmacs`), fitted per group as a power law `f(N) = k·N^gamma` against parameters.
  Substituting D = C / f(N):

      L(N) = E + A·N^-alpha + B·(k·N^gamma / C)^beta
      dL/dN = 0  =>  N_opt = (alpha·A / (gamma·beta·B))^(1/(alpha+gamma·beta)) · (C/k)^(beta/(alpha+gamma·beta))

  so N_opt ∝ C^a with a = beta/(alpha + gamma·beta) and D_opt = C/f(N_opt) ∝ C^b with
  b = 1 − gamma·a = alpha/(alpha + gamma·beta); gamma = 1, k = 6 is Chinchilla's formula.
  N_opt is found numerically (`n_opt`, a bounded 1-D minimisation in log N, so any f works);
  the closed form is its test. Intervals: the minimisation repeated for every bootstrap refit.

- **Approach 2** (`harness fit --isoflop`, `isoflops.py`): rows grouped by training-compute budget (IsoFLOP
  profiles), a parabola in log N per budget, its minimum with a bootstrap interval, and the
  power law N_opt ∝ C^a through the minima, compared with approach 3 on the same rows.

Units: with `counted`, C is in the unit of the compute column (`train_flops`: MACs, the fvcore
convention of the whole harness; hardware FLOPs are 2x). With `6N`, C = 6·N·D in FLOPs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from harness.analysis.fit_records import GroupFit
from harness.analysis.fits import fit_results
from harness.analysis.fmt import clean, fmt_x
from harness.analysis.io import load_results, normalise, require_columns
from harness.analysis.lawfit import DEFAULT_BOOTSTRAP
from harness.analysis.laws import form_text, on_bound
from harness.errors import StudyError

FLOPS_MODELS = ("counted", "6N")
DEFAULT_X = ("params", "samples_seen")
DEFAULT_Y = "test_acc"
DEFAULT_COMPUTE = "train_flops"
_LOGN_SPAN = 40.0  # search log N within e^±40 of the data's median: far past any sane optimum


# ----------------------------------------------------------------------------- FLOPs per sample


@dataclass
class FlopsModel:
    """Training compute per sample f(N) = k·N^gamma (6N: k = 6, gamma = 1)."""

    kind: str  # "6N" | "counted"
    k: float
    gamma: float
    n_models: int = 0  # distinct parameter counts it was fitted on (counted)
    max_rel_error: float = 0.0  # worst |fitted / counted − 1| over those models

    def per_sample(self, n: np.ndarray | float) -> np.ndarray:
        return self.k * np.asarray(n, dtype=float) ** self.gamma

    def text(self) -> str:
        if self.kind == "6N":
            return "f(N) = 6N (language-model convention)"
        return (
            f"f(N) = {self.k:.4g}·N^{self.gamma:.4f} counted training compute per sample, "
            f"fitted on {self.n_models} model sizes (worst {self.max_rel_error:.1%} off)"
        )

    def to_json(self) -> dict[str, Any]:
        return clean(
            {"kind": self.kind, "k": self.k, "gamma": self.gamma, "n_models": self.n_models, "max_rel_error": self.max_rel_error}
        )


def fit_flops_per_sample(params: np.ndarray, per_sample: np.ndarray) -> FlopsModel:
    """Least squares of log f against log N over the distinct models (one point per model)."""
    pts = pd.DataFrame({"n": np.asarray(params, float), "f": np.asarray(per_sample, float)})
    pts = pts[np.isfinite(pts["n"]) & np.isfinite(pts["f"]) & (pts["n"] > 0) & (pts["f"] > 0)]
    pts = pts.groupby("n", as_index=False)["f"].median()
    if len(pts) < 2:
        raise StudyError(
            f"the FLOPs-per-sample fit needs >= 2 model sizes, got {len(pts)}",
            key="--flops-per-sample",
            fix="run more model sizes, or use --flops-per-sample 6N",
        )
    ln, lf = np.log(pts["n"].to_numpy()), np.log(pts["f"].to_numpy())
    gamma, logk = np.polyfit(ln, lf, 1)
    fm = FlopsModel("counted", math.exp(logk), float(gamma), len(pts))
    fm.max_rel_error = float(np.max(np.abs(fm.per_sample(pts["n"].to_numpy()) / pts["f"].to_numpy() - 1)))
    return fm


def _per_sample_column(df: pd.DataFrame, compute: str, samples: str) -> pd.Series:
    """Counted training compute per sample: `train_gmacs` (x1e9, the same unit as train_flops)
    when the rows have it and compute is train_flops, else compute / samples."""
    if compute == DEFAULT_COMPUTE and "train_gmacs" in df:
        g = pd.to_numeric(df["train_gmacs"], errors="coerce") * 1e9
        if g.notna().all():
            return g
    require_columns(df, [compute, samples], key="--flops-per-sample counted")
    return pd.to_numeric(df[compute], errors="coerce") / pd.to_numeric(df[samples], errors="coerce")


# ----------------------------------------------------------------------------- the minimiser


def law_at(params: dict[str, float], n: np.ndarray, d: np.ndarray) -> np.ndarray:
    return (
        params["E"]
        + params["A"] * np.asarray(n, float) ** -params["alpha"]
        + params["B"] * np.asarray(d, float) ** -params["beta"]
    )


def n_opt(params: dict[str, float], fm: FlopsModel, budget: float, centre: float = 1e6) -> float:
    """argmin over N of L(N, C / f(N)): bounded Brent in log N; NaN when the minimum is on a bound
    (an exponent of 0 makes L monotonic: no finite optimum)."""
    from scipy.optimize import minimize_scalar

    if params["alpha"] <= 0 or params["beta"] <= 0:
        return math.nan
    lo, hi = math.log(centre) - _LOGN_SPAN, math.log(centre) + _LOGN_SPAN

    def loss(t: float) -> float:
        n = math.exp(t)
        return float(law_at(params, n, budget / fm.per_sample(n)))

    res = minimize_scalar(loss, bounds=(lo, hi), method="bounded", options={"xatol": 1e-10, "maxiter": 2000})
    if res.x - lo < 1e-3 or hi - res.x < 1e-3:
        return math.nan
    return math.exp(float(res.x))


def n_opt_closed_form(params: dict[str, float], fm: FlopsModel, budget: float) -> float:
    """The module docstring's formula (the test of `n_opt`)."""
    al, be, g = params["alpha"], params["beta"], fm.gamma
    s = al + g * be
    return (al * params["A"] / (g * be * params["B"])) ** (1 / s) * (budget / fm.k) ** (be / s)


def allocation_exponents(params: dict[str, float], fm: FlopsModel) -> tuple[float, float]:
    """(a, b): N_opt ∝ C^a, D_opt ∝ C^b for f = k·N^gamma."""
    s = params["alpha"] + fm.gamma * params["beta"]
    if s <= 0:
        return math.nan, math.nan
    a = params["beta"] / s
    return a, 1.0 - fm.gamma * a


# ----------------------------------------------------------------------------- approach 3


@dataclass
class Allocation:
    group: str
    budget: float
    n_opt: float
    d_opt: float
    n_opt_ci95: tuple[float, float] | None
    d_opt_ci95: tuple[float, float] | None
    metric_opt: float
    a: float
    b: float
    a_ci95: tuple[float, float] | None
    b_ci95: tuple[float, float] | None
    flops_model: FlopsModel
    note: str = ""  # extrapolation

    def to_json(self) -> dict[str, Any]:
        return clean(
            {
                "group": self.group,
                "budget": self.budget,
                "n_opt": self.n_opt,
                "d_opt": self.d_opt,
                "n_opt_ci95": self.n_opt_ci95,
                "d_opt_ci95": self.d_opt_ci95,
                "metric_opt": self.metric_opt,
                "a": self.a,
                "b": self.b,
                "a_ci95": self.a_ci95,
                "b_ci95": self.b_ci95,
                "flops_model": self.flops_model.to_json(),
                "note": self.note,
            }
        )


@dataclass
class OptimalGroup:
    fit: GroupFit
    flops_model: FlopsModel | None
    compute_range: tuple[float, float] | None  # of the group's runs
    allocations: list[Allocation] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class OptimalReport:
    y: str
    target: str
    x: list[str]
    by: str | None
    flops: str
    compute: str
    bootstrap: int
    groups: list[OptimalGroup]
    notes: list[str] = field(default_factory=list)

    def rows(self) -> list[dict[str, Any]]:
        return [a.to_json() for g in self.groups for a in g.allocations]

    def summary(self) -> str:
        return "\n".join(optimal_lines(self)) + "\n"


def percentiles(v: list[float]) -> tuple[float, float] | None:
    arr = np.asarray([x for x in v if math.isfinite(x)])
    if len(arr) < 2:
        return None
    return float(np.percentile(arr, 2.5)), float(np.percentile(arr, 97.5))


def _with_samples(df: pd.DataFrame, x: list[str], flops: str, compute: str) -> tuple[pd.DataFrame, list[str]]:
    """Rows with the D column; when it is missing but the compute column is there and f = 6N,
    D = C / (6N) (a published table of N and C, e.g. Chinchilla's runs)."""
    require_columns(df, [x[0]], key="--x")
    if x[1] in df:
        return df, []
    if flops == "6N" and compute in df:
        out = df.copy()
        out[x[1]] = pd.to_numeric(out[compute], errors="coerce") / (6 * pd.to_numeric(out[x[0]], errors="coerce"))
        return out, [f"{x[1]} = {compute} / (6·{x[0]}): the rows have no {x[1]} column"]
    require_columns(df, [x[1]], key="--x")
    return df, []


def _check(flops: str, budgets: list[float], x: list[str], bootstrap: int) -> None:
    if flops not in FLOPS_MODELS:
        raise StudyError(
            f"unknown --flops-per-sample {flops!r}",
            key="--flops-per-sample",
            fix="use counted (training compute per sample from the rows) or 6N",
        )
    if len(x) != 2:
        raise StudyError(f"got {len(x)} x columns", key="--x", fix="give two: --x params --x samples_seen (N then D)")
    if not budgets or not all(b > 0 and math.isfinite(b) for b in budgets):
        raise StudyError("budgets must be positive numbers", key="--budget", fix="e.g. --budget 1e12,1e13")
    if bootstrap < 0:
        raise StudyError("--bootstrap must be >= 0", key="--bootstrap", fix="pass a non-negative count")


def optimal_results(
    df: pd.DataFrame,
    budgets: list[float],
    *,
    y: str = DEFAULT_Y,
    x: tuple[str, str] | list[str] = DEFAULT_X,
    by: str | None = None,
    flops: str = "counted",
    compute: str = DEFAULT_COMPUTE,
    bootstrap: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
) -> OptimalReport:
    """`harness optimal`: approach 3 per group, N_opt/D_opt at each budget with intervals."""
    x = list(x)
    _check(flops, budgets, x, bootstrap)
    frame, notes = _with_samples(normalise(df), x, flops, compute)
    rep = fit_results(frame, y, x, by=by, bootstrap=bootstrap, seed=seed)
    notes += [n for n in rep.notes if "crossovers" not in n]
    out = OptimalReport(y, rep.target, x, by, flops, compute, rep.bootstrap, [], notes)
    for f in rep.fits:
        if x[1] == "samples_seen":  # data_size moves with D (epochs-based budgets): not a pooled experiment
            f.notes = [n for n in f.notes if not n.startswith("pools") or "data_size" not in n]
        rows = frame if by is None else frame[frame[by].astype(str) == f.group]
        out.groups.append(_optimal_group(f, rows[rows["status"] == "ok"], budgets, x, flops, compute))
    return out


def _optimal_group(f: GroupFit, rows: pd.DataFrame, budgets: list[float], x: list[str], flops: str, compute: str) -> OptimalGroup:
    g = OptimalGroup(f, None, None)
    n = pd.to_numeric(rows[x[0]], errors="coerce").to_numpy(float)
    d = pd.to_numeric(rows[x[1]], errors="coerce").to_numpy(float)
    try:
        g.flops_model = (
            FlopsModel("6N", 6.0, 1.0)
            if flops == "6N"
            else fit_flops_per_sample(n, _per_sample_column(rows, compute, x[1]).to_numpy(float))
        )
    except StudyError as e:
        g.notes.append(f"not computed: {e.what}")
        return g
    # the runs' compute in the budgets' unit: 6ND for 6N (a counted train_flops column is MACs), else the column
    c = (
        pd.to_numeric(rows[compute], errors="coerce").to_numpy(float)
        if compute in rows and flops != "6N"
        else g.flops_model.per_sample(n) * d
    )
    c = c[np.isfinite(c) & (c > 0)]
    g.compute_range = (float(c.min()), float(c.max())) if len(c) else None
    if f.law is None:
        g.notes.append("not computed: the joint fit failed (see its notes)")
        return g
    for name in ("alpha", "beta"):
        if on_bound(f.law.params[name]):
            g.notes.append(f"{name} = {f.law.params[name]:g} is on its search bound: no compute-optimal allocation")
            return g
    centre = float(np.median(n[np.isfinite(n) & (n > 0)]))
    boot_ab = [allocation_exponents(p, g.flops_model) for p in f.law.boot]
    a, b = allocation_exponents(f.law.params, g.flops_model)
    for budget in budgets:
        no = n_opt(f.law.params, g.flops_model, budget, centre)
        do = budget / float(g.flops_model.per_sample(no)) if math.isfinite(no) else math.nan
        boot_n = [n_opt(p, g.flops_model, budget, centre) for p in f.law.boot]
        boot_d = [budget / float(g.flops_model.per_sample(v)) if math.isfinite(v) else math.nan for v in boot_n]
        lost = sum(not math.isfinite(v) for v in boot_n)
        note = _range_note(budget, g.compute_range)
        if lost:
            note = "; ".join(filter(None, [note, f"{lost} of {len(boot_n)} bootstrap fits have no finite optimum"]))
        metric = float(law_at(f.law.params, no, do)) if math.isfinite(no) else math.nan
        g.allocations.append(
            Allocation(
                f.group,
                budget,
                no,
                do,
                percentiles(boot_n),
                percentiles(boot_d),
                metric,
                a,
                b,
                percentiles([v[0] for v in boot_ab]),
                percentiles([v[1] for v in boot_ab]),
                g.flops_model,
                note,
            )
        )
    return g


def _range_note(budget: float, rng: tuple[float, float] | None) -> str:
    if rng is None:
        return ""
    lo, hi = rng
    if budget > hi * 1.0001:
        return f"extrapolated ×{budget / hi:.3g} beyond the largest run ({fmt_x(hi)})"
    if budget < lo * 0.9999:
        return f"extrapolated ×{lo / budget:.3g} below the smallest run ({fmt_x(lo)})"
    return ""


def ci_text(ci: tuple[float, float] | None, fmt: Any = fmt_x) -> str:
    return f" [{fmt(ci[0])}, {fmt(ci[1])}]" if ci else ""


def metric_text(target: str, v: float) -> str:
    if not math.isfinite(v):
        return "n/a"
    if target.startswith("1 - "):
        return f"{target} = {v:.4g} ({target[4:]} {1 - v:.2%})"
    return f"{target} = {v:.4g}"


def optimal_lines(rep: OptimalReport) -> list[str]:
    unit = (
        "6·N·D FLOPs"
        if rep.flops == "6N"
        else f"the unit of {rep.compute}"
        + (" (MACs, fvcore convention; hardware FLOPs are 2x)" if rep.compute == DEFAULT_COMPUTE else "")
    )
    lines = [
        f"optimal: {rep.target} = {form_text(2)}  (x1 = N = {rep.x[0]}, x2 = D = {rep.x[1]}"
        + (f", per {rep.by}" if rep.by else "")
        + ")",
        f"constraint: C = f(N)·D, budgets in {unit}",
    ]
    if rep.bootstrap:
        lines.append(
            f"intervals: 95% percentile, bootstrap over trials ({rep.bootstrap} resamples), "
            f"the joint fit refitted and re-minimised per resample"
        )
    lines += [f"note: {n}" for n in rep.notes]
    for g in rep.groups:
        f = g.fit
        lines += [
            "",
            f"[{f.group}] n={f.n}"
            + (f", runs {fmt_x(g.compute_range[0])}–{fmt_x(g.compute_range[1])}" if g.compute_range else ""),
        ]
        if g.flops_model:
            lines.append(f"  {g.flops_model.text()}")
        if f.law:
            p = f.law.params
            lines.append(
                f"  fit: E={p['E']:.4g}, A={p['A']:.4g}, alpha={p['alpha']:.4g}, B={p['B']:.4g}, "
                f"beta={p['beta']:.4g}; rmse(log) {f.law.rmse_log:.4f}"
            )
        if g.allocations:
            a0 = g.allocations[0]
            lines.append(
                f"  a = {a0.a:.3f}{ci_text(a0.a_ci95, lambda v: f'{v:.3f}')} (N_opt ∝ C^a), "
                f"b = {a0.b:.3f}{ci_text(a0.b_ci95, lambda v: f'{v:.3f}')} (D_opt ∝ C^b)"
            )
        for al in g.allocations:
            lines.append(
                f"  C = {al.budget:.3g}: N_opt = {fmt_x(al.n_opt)}{ci_text(al.n_opt_ci95)}, "
                f"D_opt = {fmt_x(al.d_opt)}{ci_text(al.d_opt_ci95)}, {metric_text(rep.target, al.metric_opt)}"
                + (f"; {al.note}" if al.note else "")
            )
        lines += [f"  note: {n}" for n in g.notes + f.notes]
    return lines


def parse_budgets(text: str | list[str]) -> list[float]:
    items = text if isinstance(text, list) else [text]
    out = []
    for chunk in items:
        for item in filter(None, (t.strip() for t in chunk.split(","))):
            try:
                out.append(float(item))
            except ValueError:
                raise StudyError(
                    f"cannot read budget {item!r}", key="--budget", fix="numbers, comma-separated: 1e12,3e12,1e13"
                ) from None
    if not out:
        raise StudyError("no budgets given", key="--budget", fix="e.g. --budget 1e12,1e13")
    bad = [v for v in out if not math.isfinite(v) or v <= 0]  # 0 or nan ran on with raw numpy warnings (issue 27)
    if bad:
        raise StudyError(f"budget {bad[0]:g} is not a positive number", key="--budget", fix="positive budgets, e.g. 1e12,1e13")
    return out


def optimal_path(path: str, budgets: list[float], **kwargs: Any) -> OptimalReport:
    df, _ = load_results(path)
    return optimal_results(df, budgets, **kwargs)
