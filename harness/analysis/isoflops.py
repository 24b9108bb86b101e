"""Compute-optimal allocation by Chinchilla approach 2 (`harness fit --isoflop`).

Rows grouped by training-compute budget (IsoFLOP profiles), a parabola in log N per budget, its
minimum with a bootstrap interval, and the power law N_opt ∝ C^a through the minima, compared with
approach 3 (`optimal.py`) on the same rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from harness.analysis.fmt import clean, fmt_x
from harness.analysis.io import as_fraction, is_accuracy, load_results, normalise, require_columns
from harness.analysis.lawfit import DEFAULT_BOOTSTRAP
from harness.analysis.optimal import (
    DEFAULT_COMPUTE,
    DEFAULT_X,
    DEFAULT_Y,
    Allocation,
    ci_text,
    metric_text,
    optimal_results,
    percentiles,
)
from harness.errors import StudyError

BUDGET_TOLERANCE = 1.25  # a row belongs to the nearest budget within this factor (planned trials: ~1-3% off)


@dataclass
class BudgetProfile:
    """One IsoFLOP profile: y = p0 + p1·t + p2·t², t = ln N, at one compute budget."""

    budget: float
    n: int
    n_range: tuple[float, float]
    coef: tuple[float, float, float] | None  # (p2, p1, p0), np.polyfit order
    n_opt: float = math.nan
    n_opt_ci95: tuple[float, float] | None = None
    metric_opt: float = math.nan
    boot_logn: list[float] = field(default_factory=list, repr=False)  # per resample, NaN if none
    bracketed: bool = False
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return clean(
            {
                "budget": self.budget,
                "n": self.n,
                "n_range": self.n_range,
                "coef": self.coef,
                "n_opt": self.n_opt,
                "n_opt_ci95": self.n_opt_ci95,
                "metric_opt": self.metric_opt,
                "bracketed": self.bracketed,
                "note": self.note,
            }
        )


@dataclass
class IsoflopGroup:
    group: str
    profiles: list[BudgetProfile]
    a: float = math.nan  # slope of ln N_opt on ln C through the bracketed minima
    a_ci95: tuple[float, float] | None = None
    g: float = math.nan  # N_opt = g·C^a
    approach3: Allocation | None = None
    verdict: str = ""
    notes: list[str] = field(default_factory=list)
    points: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)  # the rows: _n, _y, _c (compute), _budget

    def to_json(self) -> dict[str, Any]:
        a3 = self.approach3
        return clean(
            {
                "group": self.group,
                "profiles": [p.to_json() for p in self.profiles],
                "a": self.a,
                "a_ci95": self.a_ci95,
                "g": self.g,
                "approach3": {"a": a3.a, "a_ci95": a3.a_ci95} if a3 else None,
                "verdict": self.verdict,
                "notes": self.notes,
            }
        )


@dataclass
class IsoflopReport:
    y: str
    target: str
    x: str
    by: str | None
    compute: str
    bootstrap: int
    groups: list[IsoflopGroup]
    n_rows: int
    n_unassigned: int
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return clean(
            {
                "y": self.y,
                "target": self.target,
                "x": self.x,
                "by": self.by,
                "compute": self.compute,
                "bootstrap": self.bootstrap,
                "n_rows": self.n_rows,
                "n_unassigned": self.n_unassigned,
                "notes": self.notes,
                "groups": [g.to_json() for g in self.groups],
            }
        )

    def summary(self) -> str:
        return "\n".join(isoflop_lines(self)) + "\n"


def assign_budgets(compute: np.ndarray, budgets: list[float] | None = None, tolerance: float = BUDGET_TOLERANCE) -> np.ndarray:
    """Each row's budget: the nearest given budget within `tolerance`x (NaN otherwise), or, with no
    budgets given, clusters of compute values whose neighbours lie within `tolerance`x, labelled
    by their geometric mean."""
    c = np.asarray(compute, float)
    out = np.full(len(c), np.nan)
    ok = np.isfinite(c) & (c > 0)
    lc = np.log(np.where(ok, c, 1.0))
    if budgets:
        lb = np.log(np.asarray(budgets, float))
        near = np.abs(lc[:, None] - lb[None, :])
        j = near.argmin(axis=1)
        hit = ok & (near[np.arange(len(c)), j] <= math.log(tolerance))
        out[hit] = np.asarray(budgets, float)[j[hit]]
        return out
    order = [i for i in np.argsort(lc) if ok[i]]
    clusters: list[list[int]] = []
    for i in order:
        if clusters and lc[i] - lc[clusters[-1][-1]] <= math.log(tolerance):
            clusters[-1].append(i)
        else:
            clusters.append([i])
    for cl in clusters:
        out[cl] = math.exp(float(np.mean(lc[cl])))
    return out


def _parabola_min(t: np.ndarray, y: np.ndarray) -> tuple[np.ndarray | None, float]:
    """(coefficients, t at the minimum) of the least-squares parabola; NaN when not convex."""
    if len(np.unique(t)) < 3:
        return None, math.nan
    coef = np.polyfit(t, y, 2)
    if coef[0] <= 0:
        return coef, math.nan
    return coef, float(-coef[1] / (2 * coef[0]))


def fit_profile(
    n: np.ndarray, y: np.ndarray, budget: float, *, bootstrap: int = DEFAULT_BOOTSTRAP, seed: int = 0
) -> BudgetProfile:
    """Parabola in ln N through one budget's rows; its minimum with a bootstrap interval over rows."""
    t = np.log(np.asarray(n, float))
    y = np.asarray(y, float)
    prof = BudgetProfile(budget, len(y), (float(np.exp(t.min())), float(np.exp(t.max()))), None)
    coef, tmin = _parabola_min(t, y)
    if coef is None:
        prof.note = f"not fitted: needs >= 3 distinct model sizes, has {len(np.unique(t))}"
        return prof
    prof.coef = tuple(float(c) for c in coef)
    if not math.isfinite(tmin):
        prof.note = "no minimum: the profile is not convex (a parabola opening downwards)"
        return prof
    prof.n_opt, prof.metric_opt = math.exp(tmin), float(np.polyval(coef, tmin))
    prof.bracketed = bool(t.min() <= tmin <= t.max())
    if not prof.bracketed:
        prof.note = (
            f"minimum outside the measured sizes {fmt_x(prof.n_range[0])}–{fmt_x(prof.n_range[1])}: "
            f"extrapolated, left out of the power law"
        )
    rng = np.random.default_rng(seed)
    short = 0
    for _ in range(bootstrap):
        idx = rng.integers(0, len(y), len(y))
        short += len(np.unique(t[idx])) < 3
        prof.boot_logn.append(_parabola_min(t[idx], y[idx])[1])
    finite = [math.exp(v) for v in prof.boot_logn if math.isfinite(v)]
    concave = bootstrap - short - len(finite)
    notes = [f"{short} of {bootstrap} resamples had < 3 distinct sizes"] if short else []
    notes += [f"{concave} of {bootstrap} resamples had no minimum (not convex)"] if concave else []
    if bootstrap and len(finite) < bootstrap / 2:  # the survivors are a biased conditional sample (as fits.py)
        notes.append("no interval: most resamples could not be fitted (too few trials per budget)")
        prof.boot_logn = []
    else:
        prof.n_opt_ci95 = percentiles(finite)
    prof.note = "; ".join(filter(None, [prof.note, *notes]))
    return prof


def _power_law(profiles: list[BudgetProfile]) -> tuple[float, float, tuple[float, float] | None]:
    """(a, g, a_ci95) of ln N_opt = ln g + a ln C through the bracketed minima; the interval pairs
    the budgets' bootstrap minima by resample."""
    use = [p for p in profiles if p.bracketed]
    if len(use) < 2:
        return math.nan, math.nan, None
    lc = np.log([p.budget for p in use])
    a, lg = np.polyfit(lc, np.log([p.n_opt for p in use]), 1)
    slopes = []
    for r in range(min(len(p.boot_logn) for p in use)):
        ln = np.array([p.boot_logn[r] for p in use])
        if np.isfinite(ln).all():
            slopes.append(float(np.polyfit(lc, ln, 1)[0]))
    return float(a), math.exp(lg), percentiles(slopes)


def _agreement(g: IsoflopGroup) -> str:
    a3 = g.approach3
    if not math.isfinite(g.a):
        return "no comparison: fewer than 2 budgets have a bracketed minimum"
    if a3 is None or not math.isfinite(a3.a):
        return "no comparison: the joint fit (approach 3) could not be computed on these rows"
    both = f"approach 2 a = {g.a:.3f}{ci_text(g.a_ci95, lambda v: f'{v:.3f}')}, approach 3 a = {a3.a:.3f}{ci_text(a3.a_ci95, lambda v: f'{v:.3f}')}"
    if g.a_ci95 is None or a3.a_ci95 is None:
        return f"cannot tell (an interval is missing): {both}"
    overlap = g.a_ci95[0] <= a3.a_ci95[1] and a3.a_ci95[0] <= g.a_ci95[1]
    return f"{'AGREE' if overlap else 'DISAGREE'} (95% intervals {'overlap' if overlap else 'do not overlap'}): {both}"


def isoflop_results(
    df: pd.DataFrame,
    *,
    y: str = DEFAULT_Y,
    x: list[str] | None = None,
    by: str | None = None,
    budgets: list[float] | None = None,
    compute: str = DEFAULT_COMPUTE,
    flops: str = "counted",
    bootstrap: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
) -> IsoflopReport:
    """`harness fit --isoflop`: IsoFLOP profiles per budget (and group), the power law through their
    minima, and the same allocation exponent from the joint fit on the same rows."""
    x = list(x or DEFAULT_X)
    if len(x) == 1:
        x.append(DEFAULT_X[1])
    df = normalise(df)
    require_columns(df, [y, x[0], compute], key="--isoflop")
    if by is not None:
        require_columns(df, [by], key="--by")
    ok = df[df["status"] == "ok"].copy()
    if is_accuracy(y):
        ok["_y"], target = 1.0 - as_fraction(ok[y])[0], f"1 - {y}"
    else:
        ok["_y"], target = pd.to_numeric(ok[y], errors="coerce"), y
    ok["_n"] = pd.to_numeric(ok[x[0]], errors="coerce")
    ok["_c"] = pd.to_numeric(ok[compute], errors="coerce").astype(float)
    ok["_budget"] = assign_budgets(ok["_c"].to_numpy(float), budgets)
    usable = ok[np.isfinite(ok["_y"]) & np.isfinite(ok["_n"]) & (ok["_n"] > 0)]
    unassigned = int(usable["_budget"].isna().sum())
    usable = usable[usable["_budget"].notna()]
    rep = IsoflopReport(y, target, x[0], by, compute, bootstrap, [], len(df), unassigned)
    if unassigned:
        rep.notes.append(f"{unassigned} ok rows lie more than ×{BUDGET_TOLERANCE} from every budget: left out")
    groups = [("all", usable)] if by is None else [(str(k), v) for k, v in usable.groupby(by, sort=True)]
    for name, rows in groups:
        profiles = [
            fit_profile(r["_n"].to_numpy(float), r["_y"].to_numpy(float), float(c), bootstrap=bootstrap, seed=seed + i)
            for i, (c, r) in enumerate(rows.groupby("_budget", sort=True))
        ]
        grp = IsoflopGroup(name, profiles, points=rows[["_n", "_y", "_c", "_budget"]].copy())
        grp.a, grp.g, grp.a_ci95 = _power_law(profiles)
        grp.approach3 = _approach3(df, rows, y, x, by, name, compute, flops, bootstrap, seed, grp.notes)
        grp.verdict = _agreement(grp)
        rep.groups.append(grp)
    return rep


def _approach3(
    df: pd.DataFrame,
    rows: pd.DataFrame,
    y: str,
    x: list[str],
    by: str | None,
    name: str,
    compute: str,
    flops: str,
    bootstrap: int,
    seed: int,
    notes: list[str],
) -> Allocation | None:
    """The joint fit's allocation on the same rows, at the group's middle budget."""
    sub = df.loc[rows.index]
    budget = float(np.exp(np.log(rows["_budget"].unique()).mean()))
    try:
        rep = optimal_results(sub, [budget], y=y, x=x, by=None, flops=flops, compute=compute, bootstrap=bootstrap, seed=seed)
    except StudyError as e:
        notes.append(f"approach 3 not computed: {e.what}")
        return None
    g = rep.groups[0]
    notes += [f"approach 3: {n}" for n in g.notes + g.fit.notes]
    return g.allocations[0] if g.allocations else None


def isoflop_lines(rep: IsoflopReport) -> list[str]:
    lines = [
        f"isoflop: {rep.target} = p0 + p1·ln N + p2·(ln N)² per {rep.compute} budget (N = {rep.x}"
        + (f", per {rep.by}" if rep.by else "")
        + "); N_opt ∝ C^a through the minima (Chinchilla approach 2)"
    ]
    if rep.bootstrap:
        lines.append(f"intervals: 95% percentile, bootstrap over each budget's trials ({rep.bootstrap} resamples)")
    lines += [f"note: {n}" for n in rep.notes]
    for g in rep.groups:
        lines += ["", f"[{g.group}]"]
        for p in g.profiles:
            head = f"  C = {p.budget:.3g}: {p.n} trials, N {fmt_x(p.n_range[0])}–{fmt_x(p.n_range[1])}"
            if math.isfinite(p.n_opt):
                head += f"; minimum at N = {fmt_x(p.n_opt)}{ci_text(p.n_opt_ci95)}, {metric_text(rep.target, p.metric_opt)}"
            lines.append(head + (f"; {p.note}" if p.note else ""))
        if math.isfinite(g.a):
            lines.append(
                f"  power law through the minima: N_opt = {g.g:.4g}·C^{g.a:.3f}{ci_text(g.a_ci95, lambda v: f'{v:.3f}')} (a)"
            )
        lines.append(f"  approach 2 vs approach 3: {g.verdict}")
        lines += [f"  note: {n}" for n in g.notes]
    return lines


def isoflop_path(path: str, **kwargs: Any) -> IsoflopReport:
    df, _ = load_results(path)
    return isoflop_results(df, **kwargs)
