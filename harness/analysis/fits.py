"""Scaling-law fits: `y = E + A·x^-alpha` (one x) and `y = E + A·x1^-alpha + B·x2^-beta`.

Method is Chinchilla "approach 3" (Hoffmann et al. 2022, App. D.2) as replicated by Epoch AI
(Besiroglu et al. 2024, arXiv 2404.10102): the prediction is written in log space as
`log y = LSE(log A − alpha·log x1, [log B − beta·log x2,] log E)`, the loss is the Huber loss
(delta = 1e-3) of the log residuals, minimised with L-BFGS-B from a grid of starting points.
Uncertainty is a bootstrap with percentile 95% intervals: `harness fit` resamples the seeds within each
x where an x has several (issue 11), else the trials (rows).

Numerical trap (see ../shared/data/README.md): with delta = 1e-3 a *mean* Huber objective is
~1e-3 and scipy's default ftol/gtol stop L-BFGS at the start point, which then "confirms" any
start and makes bootstrap SEs ~200x too small. We sum the terms, divide by delta (so the
objective is ~ sum |r| in log units) and tighten ftol/gtol.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import brentq, minimize

from harness.analysis.io import as_fraction, is_accuracy, load_results, require_columns
from harness.analysis.tables import FAMILY_ORDER
from harness.errors import StudyError

HUBER_DELTA = 1e-3  # Hoffmann et al. 2022; larger deltas turn the fit into least squares
# ftol is relative: the summed/delta objective is O(n) so 1e-12 means ~1e-10 absolute,
# far below one data point's contribution; gtol 1e-9 on gradients that are O(n) at a start.
_LBFGS_OPTIONS = {"ftol": 1e-12, "gtol": 1e-9, "maxiter": 5000, "maxfun": 20000}
N_LOCAL_STARTS = 6  # best grid points polished by L-BFGS-B (the grid itself is scored exactly)
# Bootstrap resamples start from the full-data optimum only (a warm start): on the Chinchilla
# data adding the best grid start changed no SE in the 4th digit and doubled the run time.
N_BOOT_STARTS = 0
DEFAULT_BOOTSTRAP = 200  # resamples; ~2-3 s per one-x group on one core
MIN_DISTINCT_X = 3  # a 3-parameter curve through 2 distinct x values is not identified

# Bounds keep the search in physically meaningful territory: exponents in [0, 5]
# (published ones are 0.05–1); log-coefficients are bounded at the data's centre x (see
# `_centre`), where a term above e^30 or below e^-30 times any plausible y is meaningless.
_EXP_BOUNDS = (0.0, 5.0)
_LOGCOEF_BOUNDS = (-30.0, 30.0)
_LOGE_BOUNDS = (-25.0, 10.0)


# ----------------------------------------------------------------------------- the law


def form_text(n_x: int) -> str:
    return "E + A*x^-alpha" if n_x == 1 else "E + A*x1^-alpha + B*x2^-beta"


# The optimiser's vector is [log A, alpha, (log B, beta,) log E]; `theta_to_params` names it.


def _terms(theta: np.ndarray, logx: np.ndarray) -> np.ndarray:
    """Log of each additive term, shape (n, k+1): log A_i − alpha_i·log x_i, then log E."""
    k = logx.shape[1]
    coef, expo = theta[0 : 2 * k : 2], theta[1 : 2 * k : 2]
    power = coef[None, :] - expo[None, :] * logx
    return np.concatenate([power, np.full((logx.shape[0], 1), theta[-1])], axis=1)


def log_predict(theta: np.ndarray, logx: np.ndarray) -> np.ndarray:
    terms = _terms(theta, logx)
    top = terms.max(axis=1)
    return top + np.log(np.exp(terms - top[:, None]).sum(axis=1))


def _huber_over_delta(r: np.ndarray, delta: float) -> np.ndarray:
    """Huber(r)/delta: r²/(2·delta) inside ±delta, |r| − delta/2 outside."""
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r * r / delta, a - 0.5 * delta)


def _objective(theta: np.ndarray, logx: np.ndarray, logy: np.ndarray, delta: float) -> tuple[float, np.ndarray]:
    """Summed Huber/delta loss of the log residuals and its analytic gradient.

    logsumexp/softmax are written out: scipy's versions cost ~4x more per call here and
    this function runs ~10^5 times per bootstrap.
    """
    terms = _terms(theta, logx)
    top = terms.max(axis=1, keepdims=True)
    ex = np.exp(terms - top)
    total = ex.sum(axis=1)
    r = top[:, 0] + np.log(total) - logy
    dr = np.clip(r / delta, -1.0, 1.0)  # derivative of Huber(r)/delta
    w = ex * (dr / total)[:, None]  # d loss / d term = softmax · dr
    k = logx.shape[1]
    grad = np.empty_like(theta)
    grad[0 : 2 * k : 2] = w[:, :k].sum(axis=0)
    grad[1 : 2 * k : 2] = -(w[:, :k] * logx).sum(axis=0)
    grad[-1] = w[:, k].sum()
    return float(_huber_over_delta(r, delta).sum()), grad


def _bounds(k: int) -> list[tuple[float, float]]:
    return [_LOGCOEF_BOUNDS, _EXP_BOUNDS] * k + [_LOGE_BOUNDS]


def start_grid(logx: np.ndarray, logy: np.ndarray) -> np.ndarray:
    """Starting points on a grid, scale-free: each power term at the data's centre x is a
    fraction of the median y, and E a fraction of the smallest y.

    Hoffmann et al. used fixed grids (log A in 0..25, log E in −1..1) that suit LM losses
    ~2–3 and x ~ 1e9; vision errors are 0.01–0.9 and x may be 32 px or 1e16 FLOPs, so the
    grid is placed relative to the data instead. Exponents follow Hoffmann: 0..2.
    """
    k = logx.shape[1]
    exps = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0)
    coefs = tuple(float(np.median(logy) + math.log(f)) for f in (0.01, 0.05, 0.2, 0.5, 1.0, 2.0))
    es = tuple(float(logy.min() + math.log(f)) for f in (0.02, 0.2, 0.5, 0.8, 0.95))
    centred = np.array(list(itertools.product(*([coefs, exps] * k + [es]))), dtype=float)
    shift = logx.mean(axis=0)
    return np.array([_centre(t, shift, -1.0) for t in centred])


def _grid_losses(grid: np.ndarray, logx: np.ndarray, logy: np.ndarray, delta: float) -> np.ndarray:
    """Objective at every grid point at once, in chunks of ~8M terms (~64 MB) each."""
    k, n = logx.shape[1], logx.shape[0]
    out = np.empty(len(grid))
    chunk = max(1, 8_000_000 // (n * (k + 1)))
    for i in range(0, len(grid), chunk):
        g = grid[i : i + chunk]
        power = g[:, None, 0 : 2 * k : 2] - g[:, None, 1 : 2 * k : 2] * logx[None, :, :]
        terms = np.concatenate([power, np.broadcast_to(g[:, None, -1:], (len(g), n, 1))], axis=2)
        top = terms.max(axis=2)
        r = top + np.log(np.exp(terms - top[:, :, None]).sum(axis=2)) - logy[None, :]
        out[i : i + chunk] = _huber_over_delta(r, delta).sum(axis=1)
    return out


def best_starts(logx: np.ndarray, logy: np.ndarray, n: int, delta: float) -> np.ndarray:
    grid = start_grid(logx, logy)
    return grid[np.argsort(_grid_losses(grid, logx, logy, delta))[:n]]


def _centre(theta: np.ndarray, shift: np.ndarray, sign: float) -> np.ndarray:
    """Move log-coefficients between x and x/exp(shift): log A' = log A − alpha·shift.

    Optimising around the data's centre decorrelates log A and alpha (log x ~ 7–25 makes
    them nearly collinear otherwise), which roughly halves L-BFGS iterations.
    """
    out = np.array(theta, dtype=float)
    k = len(shift)
    out[0 : 2 * k : 2] -= sign * theta[1 : 2 * k : 2] * shift
    return out


def minimise(logx: np.ndarray, logy: np.ndarray, starts: np.ndarray, delta: float = HUBER_DELTA) -> tuple[np.ndarray, float]:
    """L-BFGS-B from each start; the lowest final objective wins."""
    shift = logx.mean(axis=0)
    centred = logx - shift
    best_theta, best_loss = starts[0], math.inf
    bounds = _bounds(logx.shape[1])
    for s in starts:
        res = minimize(
            _objective,
            _centre(s, shift, 1.0),
            args=(centred, logy, delta),
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options=_LBFGS_OPTIONS,
        )
        if np.isfinite(res.fun) and res.fun < best_loss:
            best_theta, best_loss = _centre(res.x, shift, -1.0), float(res.fun)
    return np.asarray(best_theta, dtype=float), best_loss


def theta_to_params(theta: np.ndarray) -> dict[str, float]:
    """Optimiser vector -> {E, A, alpha[, B, beta]} with coefficients exponentiated."""
    k = (len(theta) - 1) // 2
    out = {"E": math.exp(theta[-1]), "A": math.exp(theta[0]), "alpha": float(theta[1])}
    if k == 2:
        out |= {"B": math.exp(theta[2]), "beta": float(theta[3])}
    return out


def derived(params: dict[str, float]) -> dict[str, float]:
    """Quantities users quote: for two x the compute-optimal split a = beta/(alpha+beta)."""
    if "beta" not in params:
        return {}
    s = params["alpha"] + params["beta"]
    return {"a": params["beta"] / s, "b": params["alpha"] / s} if s > 0 else {}


def predict(params: dict[str, float], x: np.ndarray) -> np.ndarray:
    """y at x (shape (n,) for one x, (n, 2) for two)."""
    x = np.asarray(x, dtype=float).reshape(len(np.atleast_1d(x)), -1)
    y = params["E"] + params["A"] * x[:, 0] ** -params["alpha"]
    if "B" in params:
        y = y + params["B"] * x[:, 1] ** -params["beta"]
    return y


# ----------------------------------------------------------------------------- one fit


@dataclass
class LawFit:
    """One fitted law with its bootstrap; `boot` holds the resampled params (not serialised)."""

    params: dict[str, float]
    ci95: dict[str, tuple[float, float]]
    se: dict[str, float]
    n: int
    rmse_log: float
    n_boot: int  # resamples that could be fitted (degenerate ones are skipped)
    boot: list[dict[str, float]] = field(default_factory=list, repr=False)


def _one_blas_thread() -> contextlib.AbstractContextManager:
    """Run L-BFGS-B with a single BLAS thread.

    scipy's L-BFGS-B calls OpenBLAS on 5x5-sized problems; with OpenBLAS's default thread
    pool each call pays a thread wake-up, measured here at 0.6–2 ms per function evaluation
    instead of 0.17 ms on a 2-core machine (4–12x slower bootstraps). threadpoolctl is
    optional: without it fits are only slower.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def fit_arrays(
    x: np.ndarray,
    y: np.ndarray,
    *,
    bootstrap: int = 0,
    seed: int = 0,
    delta: float = HUBER_DELTA,
    within_points: bool = False,
) -> LawFit:
    """Fit the law to positive finite x (n,) or (n, 2) and y (n,); bootstrap over rows, or with
    `within_points` over the repeats (seeds) of each x where there are any (see `_bootstrap`)."""
    with _one_blas_thread():
        return _fit_arrays(x, y, bootstrap, seed, delta, within_points)


def _fit_arrays(x: np.ndarray, y: np.ndarray, bootstrap: int, seed: int, delta: float, within_points: bool = False) -> LawFit:
    logx = np.log(np.asarray(x, dtype=float).reshape(len(y), -1))
    logy = np.log(np.asarray(y, dtype=float))
    starts = best_starts(logx, logy, N_LOCAL_STARTS, delta)
    theta, _ = minimise(logx, logy, starts, delta)
    params = theta_to_params(theta)
    rmse = float(np.sqrt(np.mean((log_predict(theta, logx) - logy) ** 2)))
    boot_starts = np.vstack([theta, starts[:N_BOOT_STARTS]])
    boot = _bootstrap(logx, logy, boot_starts, bootstrap, seed, delta, within_points)
    ci, se = _intervals(boot)
    return LawFit(params, ci, se, len(logy), rmse, len(boot), boot)


def _bootstrap(
    logx: np.ndarray,
    logy: np.ndarray,
    starts: np.ndarray,
    b: int,
    seed: int,
    delta: float,
    within_points: bool = False,
) -> list[dict[str, float]]:
    """Refit on `b` resamples. `within_points` and repeated x (seeds): each point's seeds are
    resampled within the point, so every x stays and the interval measures seed noise, not which
    points were kept (`harness fit`); else rows are resampled (resamples with < MIN_DISTINCT_X
    distinct x are skipped)."""
    rng = np.random.default_rng(seed)
    out: list[dict[str, float]] = []
    n = len(logy)
    points = (
        [
            np.flatnonzero(inv == i)
            for inv in [np.unique(logx, axis=0, return_inverse=True)[1].ravel()]
            for i in range(inv.max() + 1)
        ]
        if n
        else []
    )
    within = within_points and any(len(p) > 1 for p in points)
    for _ in range(b):
        idx = np.concatenate([p[rng.integers(0, len(p), len(p))] for p in points]) if within else rng.integers(0, n, n)
        if any(len(np.unique(logx[idx, j])) < MIN_DISTINCT_X for j in range(logx.shape[1])):
            continue
        theta, _ = minimise(logx[idx], logy[idx], starts, delta)
        p = theta_to_params(theta)
        out.append(p | derived(p))
    return out


def _intervals(boot: list[dict[str, float]]) -> tuple[dict[str, tuple[float, float]], dict[str, float]]:
    """Percentile 95% intervals and standard deviations (SE) of each bootstrapped quantity."""
    if len(boot) < 2:
        return {}, {}
    frame = pd.DataFrame(boot)
    ci = {c: (float(frame[c].quantile(0.025)), float(frame[c].quantile(0.975))) for c in frame}
    se = {c: float(frame[c].std(ddof=1)) for c in frame}
    return ci, se


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def describe_params(fit: LawFit) -> str:
    """'E=1.82 [1.77, 1.87], A=482 [...]' in a fixed order, derived quantities last."""
    parts = []
    for name, v in (fit.params | derived(fit.params)).items():
        lo_hi = fit.ci95.get(name)
        ci = f" [{_fmt(lo_hi[0])}, {_fmt(lo_hi[1])}]" if lo_hi else ""
        parts.append(f"{name}={_fmt(v)}{ci}")
    return ", ".join(parts)


# ----------------------------------------------------------------------------- results frames

# Columns that, if they vary inside a group but are neither x nor the grouping, mean the
# group pools different experiments (e.g. error vs data_size pooled over model sizes).
_CONTROL_COLUMNS = ("model", "data_size", "image_size", "frames", "frame_stride", "dataset")
_SIZE_LIKE = ("params", "fwd_gmacs", "train_flops")  # an x that *is* the model size


@dataclass
class GroupFit:
    """The fit of one group (a family, a model, or "all")."""

    group: str
    y: str  # the column asked for
    target: str  # what was fitted: the column, or "1 - column" for accuracies
    x: list[str]
    n: int
    n_dropped: int
    law: LawFit | None
    x_range: tuple[float, float] | None  # of the first x, over the rows used
    holdout: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)  # family, image_size, params if constant

    def to_json(self) -> dict[str, Any]:
        law = self.law
        return _clean(
            {
                "group": self.group,
                "form": form_text(len(self.x)),
                "y": self.y,
                "target": self.target,
                "x": self.x,
                "n": self.n,
                "n_dropped": self.n_dropped,
                "params": law.params if law else None,
                "derived": derived(law.params) if law else None,
                "ci95": {k: list(v) for k, v in law.ci95.items()} if law else None,
                "se": law.se if law else None,
                "n_boot": law.n_boot if law else 0,
                "rmse_log": law.rmse_log if law else None,
                "x_range": self.x_range,
                "holdout": self.holdout,
                "notes": self.notes,
            }
        )


@dataclass
class Crossover:
    """Where two groups' fitted curves cross (lower y is better), or that they do not."""

    winner: str  # the group with lower y above the crossing (or throughout, if none)
    other: str
    x_name: str
    x: float | None
    searched: tuple[float, float]
    ci95: tuple[float, float] | None = None
    frac_boot: float | None = None  # share of bootstrap pairs that cross in `searched`
    measured: tuple[float, float] | None = None  # the x range both groups were measured on

    @property
    def extrapolated(self) -> bool:
        """A crossing outside the measured range is a prediction of the fitted laws, not a finding."""
        return self.x is not None and self.measured is not None and not (self.measured[0] <= self.x <= self.measured[1])

    def text(self) -> str:
        lo, hi = (fmt_x(v) for v in self.searched)
        share = f"crossing in {self.frac_boot:.0%} of bootstrap pairs" if self.frac_boot is not None else ""
        if self.x is None:
            tail = f" ({share})" if share else ""
            return (
                f"{self.winner} and {self.other} do not cross for {self.x_name} in "
                f"[{lo}, {hi}]; {self.winner} is lower throughout{tail}"
            )
        ci = f"95% CI {fmt_x(self.ci95[0])}–{fmt_x(self.ci95[1])}" if self.ci95 else ""
        extra = "; ".join(p for p in (ci, share) if p)
        where = ""
        if self.extrapolated:
            assert self.measured is not None
            where = f"; EXTRAPOLATED: outside the measured {fmt_x(self.measured[0])}–{fmt_x(self.measured[1])}"
        return f"{self.winner} overtakes {self.other} at {self.x_name} ≈ {fmt_x(self.x)}" + (
            f" ({extra}{where})" if extra else (f" ({where[2:]})" if where else "")
        )

    def to_json(self) -> dict[str, Any]:
        return _clean(
            {
                "winner": self.winner,
                "other": self.other,
                "x": self.x_name,
                "at": self.x,
                "searched": list(self.searched),
                "ci95": list(self.ci95) if self.ci95 else None,
                "frac_boot": self.frac_boot,
                "extrapolated": self.extrapolated,
                "text": self.text(),
            }
        )


@dataclass
class FitReport:
    y: str
    target: str
    x: list[str]
    by: str | None
    bootstrap: int
    fits: list[GroupFit]
    crossovers: list[Crossover]
    dropped: dict[str, int]  # reason -> rows
    n_rows: int
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return _clean(
            {
                "y": self.y,
                "target": self.target,
                "x": self.x,
                "by": self.by,
                "bootstrap": self.bootstrap,
                "n_rows": self.n_rows,
                "dropped": self.dropped,
                "notes": self.notes,
                "fits": [f.to_json() for f in self.fits],
                "crossovers": [c.to_json() for c in self.crossovers],
            }
        )

    def summary(self) -> str:
        return "\n".join(summary_lines(self)) + "\n"


def fmt_x(v: float) -> str:
    """Scale values for prose: 6.1k, 1.2M, 0.35, 224, 3.2e15."""
    if v is None or not math.isfinite(v):
        return "n/a"
    if abs(v) >= 1e12:  # FLOPs: T/P/E suffixes read worse than an exponent
        mant, exp = f"{v:.2e}".split("e")
        return f"{float(mant):.3g}e{int(exp)}"
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= scale:
            return f"{v / scale:.3g}{suffix}"
    return f"{v:.3g}"


def _clean(obj: Any) -> Any:
    """JSON-safe: numpy scalars to Python, NaN/inf to None, tuples to lists."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj


PairFilter = Callable[[GroupFit, GroupFit], bool]


def fit_results(
    df: pd.DataFrame,
    y: str,
    x: list[str],
    *,
    by: str | None = None,
    holdout: int = 0,
    bootstrap: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
    pairs: PairFilter | None = None,
) -> FitReport:
    """Fit `y` against one or two `x` columns, per `by` group; see the module docstring.

    `pairs` limits which groups are compared for crossovers (default: every pair).
    """
    _check_request(df, y, x, by, holdout, bootstrap)
    if "variant" in df:  # different configurations are fitted apart, never pooled as seeds (analysis/io.py)
        by = by or "variant"
        df = df.assign(**{by: df[by].astype(str) + " [" + df["variant"].astype(str) + "]"}) if by != "variant" else df
    data, target, dropped, notes = _usable(df, y, x)
    groups = (
        [("all", data)]
        if by is None
        else sorted(((str(k), g) for k, g in data.groupby(by, sort=False)), key=lambda kg: _group_rank(*kg))
    )
    dropped_by_group = _dropped_per_group(df, data, by)
    fits = [_fit_group(name, g, y, target, x, by, holdout, bootstrap, seed, dropped_by_group.get(name, 0)) for name, g in groups]
    if by is not None:  # groups whose rows were all dropped still get a line saying so
        fitted_names = {name for name, _ in groups}
        for name in sorted(set(dropped_by_group) - fitted_names, key=lambda n: _group_rank(n, None)):
            fits.append(
                GroupFit(
                    name,
                    y,
                    target,
                    list(x),
                    0,
                    dropped_by_group[name],
                    None,
                    None,
                    notes=[
                        f"no usable rows (failed, or {y} missing or non-positive: e.g. a SimCLR or untrained backbone has no test_acc; fit --y probe_acc)"
                    ],
                )
            )
    cross = crossovers(fits, x[0], pairs) if len(x) == 1 else []
    if len(x) == 2 and by is not None:
        notes.append("crossovers are computed for one-x fits only")
    return FitReport(y, target, list(x), by, bootstrap, fits, cross, dropped, len(df), notes)


def _group_rank(name: str, rows: pd.DataFrame | None) -> tuple[int, float, float, str]:
    """Families in FAMILY_ORDER, then small to large models, then low to high resolution."""
    fam = re.split(r"[@ ]", name)[0]  # "vit", "vit@s", "vit@s 64px", "vit 64px"
    rank = FAMILY_ORDER.index(fam) if fam in FAMILY_ORDER else len(FAMILY_ORDER)

    def median(col: str) -> float:
        if rows is None or col not in rows:
            return math.inf
        v = pd.to_numeric(rows[col], errors="coerce").median()
        return float(v) if pd.notna(v) else math.inf

    return (rank, median("params"), median("image_size"), name)


_FIT_COLUMNS = (
    "data_size",
    "params",
    "fwd_gmacs",
    "train_flops",
    "image_size",
    "frames",
    "test_acc",
    "test_loss",
    "probe_acc",
    "fewshot_10_acc",
)  # named in errors


def _check_request(df: pd.DataFrame, y: str, x: list[str], by: str | None, holdout: int, bootstrap: int) -> None:
    if len(x) not in (1, 2):
        raise StudyError(
            f"got {len(x)} x columns", key="--x", fix="give one --x (E + A·x^-alpha) or two (E + A·x1^-alpha + B·x2^-beta)"
        )
    require_columns(df, [y, *x], key="--y/--x")
    if by is not None:
        require_columns(df, [by], key="--by")
    for flag, col in [("--y", y)] + [("--x", c) for c in x]:
        values = df[col].dropna()
        if len(values) and pd.to_numeric(values, errors="coerce").isna().all():  # a label column: nothing to fit
            numeric = [c for c in _FIT_COLUMNS if c in df and c != col]
            raise StudyError(
                f"column {col!r} holds labels (e.g. {str(values.iloc[0])!r}), not numbers",
                key=flag,
                fix=f"use a numeric column ({', '.join(numeric)}); to fit per {col}, pass --by {col}",
            )
    if holdout < 0 or bootstrap < 0:
        raise StudyError(
            "--holdout and --bootstrap must be >= 0", key="--holdout/--bootstrap", fix="pass a non-negative count (0 disables)"
        )


def _usable(df: pd.DataFrame, y: str, x: list[str]) -> tuple[pd.DataFrame, str, dict[str, int], list[str]]:
    """Rows with status ok and finite positive target and x; `_y`, `_x0`, `_x1` hold them."""
    notes: list[str] = []
    out = df.copy()
    if is_accuracy(y):
        frac, percent = as_fraction(out[y])
        out["_y"] = 1.0 - frac
        target = f"1 - {y}"
        notes.append(
            f"{y} is an accuracy: fitting the error 1 - {y}" + (" (values were percentages, divided by 100)" if percent else "")
        )
    else:
        out["_y"] = pd.to_numeric(out[y], errors="coerce").astype(float)
        target = y
    for i, col in enumerate(x):
        out[f"_x{i}"] = pd.to_numeric(out[col], errors="coerce").astype(float)
    failed = out["status"] != "ok"
    vals = out[["_y", *(f"_x{i}" for i in range(len(x)))]].to_numpy(dtype=float)
    bad = ~(np.isfinite(vals) & (vals > 0)).all(axis=1) & ~failed
    counts = (("failed", failed.sum()), ("non-finite or non-positive", bad.sum()))
    dropped = {k: int(v) for k, v in counts if v}
    return out[~failed & ~bad], target, dropped, notes


def _dropped_per_group(df: pd.DataFrame, used: pd.DataFrame, by: str | None) -> dict[str, int]:
    if by is None:
        return {"all": len(df) - len(used)}
    total = df[by].astype(str).value_counts()
    kept = used[by].astype(str).value_counts()
    return {str(k): int(total[k] - kept.get(k, 0)) for k in total.index}


def _fit_group(
    name: str,
    g: pd.DataFrame,
    y: str,
    target: str,
    x: list[str],
    by: str | None,
    holdout: int,
    bootstrap: int,
    seed: int,
    n_dropped: int,
) -> GroupFit:
    X = g[[f"_x{i}" for i in range(len(x))]].to_numpy(dtype=float)
    Y = g["_y"].to_numpy(dtype=float)
    xr = (float(X[:, 0].min()), float(X[:, 0].max())) if len(Y) else None
    fit = GroupFit(name, y, target, list(x), len(Y), n_dropped, None, xr, notes=_pooling_notes(g, x, by), meta=_group_meta(g))
    short = [c for i, c in enumerate(x) if len(np.unique(X[:, i])) < MIN_DISTINCT_X]
    if short:
        have = ", ".join(f"{len(np.unique(X[:, x.index(c)]))} {c}" for c in short)
        fit.notes.append(f"not fitted: needs >= {MIN_DISTINCT_X} distinct values of each x, has {have}")
        return fit
    n_params = 1 + 2 * len(x)
    if bootstrap and len(Y) <= n_params:
        fit.notes.append(f"no intervals: {len(Y)} trials for {n_params} parameters is an exact fit (add seeds or x values)")
        bootstrap = 0
    fit.law = fit_arrays(X, Y, bootstrap=bootstrap, seed=seed, within_points=True)  # seeds within each x (issue 11)
    fit.notes += _bound_notes(fit.law.params, x, float(Y.min()))
    if bootstrap:
        _check_bootstrap(fit.law, bootstrap, fit.notes)
    if holdout:
        fit.holdout, note = holdout_check(X, Y, holdout)
        if note:
            fit.notes.append(note)
    return fit


def on_bound(exponent: float) -> bool:
    """The fitted exponent sits on the search range's edge: not determined by the data."""
    return exponent <= _EXP_BOUNDS[0] + 1e-6 or exponent >= _EXP_BOUNDS[1] - 1e-6


def _bound_notes(params: dict[str, float], x: list[str], y_min: float) -> list[str]:
    """A best fit with an exponent on its search bound, or a floor E that is ~0, did not measure it."""
    notes = []
    lo, hi = _EXP_BOUNDS
    for name, col in zip(("alpha", "beta"), x):
        v = params.get(name)
        if v is not None and on_bound(v):
            notes.append(
                f"{name} = {v:g} sits on its search bound [{lo:g}, {hi:g}]: these data do not determine it "
                f"(y does not fall like a power law in {col}: flat, non-monotonic or a step)"
            )
    if params["E"] < 0.01 * y_min:
        notes.append(f"E = {params['E']:.3g} is ~0 (under 1% of the smallest y): no floor is visible in these data")
    return notes


def _check_bootstrap(law: LawFit, requested: int, notes: list[str]) -> None:
    """Resamples missing a distinct x are skipped; if most were, the survivors are a biased
    conditional sample (all near-permutations of the data), so no intervals are given."""
    skipped = requested - law.n_boot
    if law.n_boot < requested / 2:
        notes.append(
            f"no intervals: {skipped} of {requested} bootstrap resamples lacked "
            f"{MIN_DISTINCT_X} distinct x values (too few trials per x)"
        )
        law.ci95, law.se, law.boot = {}, {}, []
    elif skipped:
        notes.append(f"{skipped} of {requested} bootstrap resamples lacked {MIN_DISTINCT_X} distinct x values and were skipped")


def _group_meta(g: pd.DataFrame) -> dict[str, Any]:
    meta: dict[str, Any] = {c: g[c].iloc[0] for c in ("family", "image_size") if c in g and len(g) and g[c].nunique() == 1}
    if "params" in g and len(g):
        meta["params"] = float(pd.to_numeric(g["params"], errors="coerce").median())
    return meta


def comparable_models(f: GroupFit, g: GroupFit) -> bool:
    """Crossovers worth reporting between per-model curves: different families, same
    resolution, parameter counts within 2x (a 5M ViT overtaking a 0.3M ResNet says little)."""
    a, b = f.meta, g.meta
    if a.get("family") == b.get("family") or a.get("image_size") != b.get("image_size"):
        return False
    pa, pb = a.get("params", math.nan), b.get("params", math.nan)
    return bool(math.isfinite(pa) and math.isfinite(pb) and max(pa, pb) <= 2 * min(pa, pb))


def _pooling_notes(g: pd.DataFrame, x: list[str], by: str | None) -> list[str]:
    """Warn when a group mixes experiments that the law does not model."""
    skip = set(x) | {by}
    if any(c in _SIZE_LIKE for c in x):
        skip |= {"model"}  # the model varies *because* x is its size
    if "train_flops" in x:
        skip |= {"data_size"}  # compute bundles data
    notes = []
    for col in _CONTROL_COLUMNS:
        if col in g and col not in skip and g[col].nunique() > 1:
            notes.append(f"pools {g[col].nunique()} {col} values; consider --by {col} or filtering")
    return notes


def holdout_check(X: np.ndarray, Y: np.ndarray, n_hold: int) -> tuple[dict[str, Any] | None, str]:
    """Refit without the `n_hold` largest distinct first-x values; errors on those rows."""
    values = np.unique(X[:, 0])
    if len(values) - n_hold < MIN_DISTINCT_X:
        return None, (f"holdout of {n_hold} skipped: needs >= {n_hold + MIN_DISTINCT_X} distinct x values, has {len(values)}")
    cut = values[-n_hold]
    train = X[:, 0] < cut
    if any(len(np.unique(X[train, j])) < MIN_DISTINCT_X for j in range(X.shape[1])):
        return None, f"holdout of {n_hold} skipped: the remaining rows have < {MIN_DISTINCT_X} distinct x2"
    law = fit_arrays(X[train], Y[train])
    pred, obs = predict(law.params, X[~train]), Y[~train]
    per_x = [
        {
            "x": float(v),
            "observed_mean": float(obs[X[~train, 0] == v].mean()),
            "predicted_mean": float(pred[X[~train, 0] == v].mean()),
        }
        for v in values[-n_hold:]
    ]
    return {
        "held_out_x": [float(v) for v in values[-n_hold:]],
        "n_train": int(train.sum()),
        "n_test": int((~train).sum()),
        "params": law.params,
        "log_rmse": float(np.sqrt(np.mean((np.log(pred) - np.log(obs)) ** 2))),
        "max_rel_error": float(np.max(np.abs(pred - obs) / obs)),
        "per_x": per_x,
    }, ""


# ----------------------------------------------------------------------------- crossovers

_CROSS_GRID = 512  # log-spaced evaluation points to bracket sign changes


def _roots(p: dict[str, float], q: dict[str, float], lo: float, hi: float) -> list[float]:
    """x in [lo, hi] where the one-x curves p and q are equal (bracketed, then brentq in log x)."""
    grid = np.linspace(math.log(lo), math.log(hi), _CROSS_GRID)

    def diff(t: float | np.ndarray) -> np.ndarray:
        xs = np.exp(np.atleast_1d(t))
        return predict(p, xs) - predict(q, xs)

    d = diff(grid)
    out = []
    for i in np.nonzero(np.sign(d[:-1]) * np.sign(d[1:]) < 0)[0]:
        out.append(math.exp(brentq(lambda t: float(diff(t)[0]), grid[i], grid[i + 1], xtol=1e-10)))
    return out


def _lower_above(p: dict[str, float], q: dict[str, float], x: float) -> bool:
    """Is p below q just above x (1% further)?"""
    xs = np.array([x * 1.01])
    return bool(predict(p, xs)[0] < predict(q, xs)[0])


def crossovers(fits: list[GroupFit], x_name: str, pairs: PairFilter | None = None) -> list[Crossover]:
    """For every (allowed) pair of fitted groups: crossings within 2x of their joint x range."""
    fitted = [f for f in fits if f.law is not None and f.x_range is not None]
    out = []
    for f, g in itertools.combinations(fitted, 2):
        if pairs is not None and not pairs(f, g):
            continue
        lo = min(f.x_range[0], g.x_range[0]) / 2
        hi = max(f.x_range[1], g.x_range[1]) * 2
        roots = _roots(f.law.params, g.law.params, lo, hi)
        boot = _boot_roots(f.law, g.law, lo, hi, roots)
        if not roots:
            mid = np.array([math.sqrt(lo * hi)])
            f_lower = predict(f.law.params, mid)[0] < predict(g.law.params, mid)[0]
            win, other = (f, g) if f_lower else (g, f)
            out.append(Crossover(win.group, other.group, x_name, None, (lo, hi), None, boot[1]))
            continue
        measured = (max(f.x_range[0], g.x_range[0]), min(f.x_range[1], g.x_range[1]))
        for r, ci in zip(roots, boot[0]):
            win, other = (f, g) if _lower_above(f.law.params, g.law.params, r) else (g, f)
            out.append(Crossover(win.group, other.group, x_name, r, (lo, hi), ci, boot[1], measured))
    return out


def _boot_roots(
    f: LawFit, g: LawFit, lo: float, hi: float, roots: list[float]
) -> tuple[list[tuple[float, float] | None], float | None]:
    """Per point-estimate root: 95% interval of the nearest bootstrap root; share that cross.

    Vectorised over bootstrap pairs: sign changes on the log grid, root by linear
    interpolation in log x (grid step ~1% of x for a 100x range, far below the CI width).
    """
    n = min(len(f.boot), len(g.boot))
    if n < 2:
        return [None] * len(roots), None
    t = np.linspace(math.log(lo), math.log(hi), _CROSS_GRID)
    d = _boot_curves(f.boot[:n], t) - _boot_curves(g.boot[:n], t)  # (n, grid)
    change = np.sign(d[:, :-1]) * np.sign(d[:, 1:]) < 0
    share = float(change.any(axis=1).mean())
    frac = d[:, :-1] / np.where(change, d[:, :-1] - d[:, 1:], 1.0)
    cand = np.where(change, t[:-1] + frac * (t[1] - t[0]), np.nan)  # log-roots, NaN elsewhere
    cis: list[tuple[float, float] | None] = []
    for r0 in roots:
        dist = np.abs(cand - math.log(r0))
        has = change.any(axis=1)
        nearest = cand[has, np.nanargmin(np.where(np.isnan(dist), np.inf, dist)[has], axis=1)]
        cis.append(
            (float(np.exp(np.percentile(nearest, 2.5))), float(np.exp(np.percentile(nearest, 97.5))))
            if len(nearest) >= 2
            else None
        )
    return cis, share


def _boot_curves(boot: list[dict[str, float]], t: np.ndarray) -> np.ndarray:
    """One-x predictions of every bootstrap fit at x = exp(t), shape (len(boot), len(t))."""
    e = np.array([p["E"] for p in boot])[:, None]
    a = np.array([p["A"] for p in boot])[:, None]
    alpha = np.array([p["alpha"] for p in boot])[:, None]
    return e + a * np.exp(-alpha * t[None, :])


# ----------------------------------------------------------------------------- text


def summary_lines(rep: FitReport) -> list[str]:
    xs = " and ".join(rep.x)
    per = "curve" if rep.by == "_group" else rep.by  # internal grouping column of fit_view
    lines = [f"fit: {rep.target} = {form_text(len(rep.x))}  (x = {xs}" + (f", per {per}" if per else "") + ")"]
    lines += [f"note: {n}" for n in rep.notes]
    used = rep.n_rows - sum(rep.dropped.values())
    drop = ", ".join(f"{v} {k}" for k, v in rep.dropped.items()) or "none"
    lines.append(f"rows: {used} of {rep.n_rows} used; dropped: {drop}")
    if rep.bootstrap:
        lines.append(
            f"intervals: 95% percentile, bootstrap ({rep.bootstrap} resamples) over the seeds within each x "
            "where an x has several, else over trials"
        )
    for f in rep.fits:
        lines.append("")
        lines += group_lines(f)
    if rep.crossovers:
        lines += ["", "crossovers (lower is better):"]
        lines += [f"  {c.text()}" for c in rep.crossovers]
    return lines


def group_lines(f: GroupFit) -> list[str]:
    head = f"[{f.group}] n={f.n}" + (f" ({f.n_dropped} dropped)" if f.n_dropped else "")
    if f.x_range:
        head += f", {f.x[0]} {fmt_x(f.x_range[0])}–{fmt_x(f.x_range[1])}"
    out = [head]
    if f.law:
        out.append(f"  {describe_params(f.law)}")
        out.append(f"  rmse(log) = {f.law.rmse_log:.4f}")
    if f.holdout:
        h = f.holdout
        held = ", ".join(fmt_x(v) for v in h["held_out_x"])
        out.append(
            f"  holdout ({f.x[0]} = {held}; fitted on {h['n_train']} rows): "
            f"log-RMSE {h['log_rmse']:.3f}, worst relative error {h['max_rel_error']:.1%}"
        )
    out += [f"  note: {n}" for n in f.notes]
    return out


# ----------------------------------------------------------------------------- curves to fit


@dataclass
class ScalingView:
    """Rows to fit `y vs x`, one curve per `_group` (coloured by `_family`), and why."""

    frame: pd.DataFrame
    note: str
    per_model: bool  # curves are models (several per family), not families


def scaling_view(df: pd.DataFrame, x: str) -> ScalingView:
    """Choose the curves a 'y vs x' study means, so fits do not pool unlike experiments.

    - x = data_size (or any non-size x): one curve per model when a family has several
      sizes, else per family.
    - x = params / fwd_gmacs: one curve per family at the largest data_size (smaller data
      sizes would mix data-limited points into a model-size law).
    - x = train_flops: per family over all trials (compute bundles model and data).
    - several image sizes: curves are further split by resolution (unless x is image_size).
    """
    d = df.copy()
    fam = d["family"].astype(str) if "family" in d else pd.Series("all", index=d.index)
    d["_family"] = fam
    notes = []
    if x in ("params", "fwd_gmacs") and "data_size" in d and d["data_size"].nunique() > 1:
        top = d["data_size"].max()
        d = d[d["data_size"] == top]
        notes.append(f"at the largest data_size, {fmt_x(float(top))}")
    per_model = x not in _SIZE_LIKE and "model" in d and d.groupby("_family")["model"].nunique().max() > 1
    group = d["model"].astype(str) if per_model else d["_family"]
    if "image_size" in d and d["image_size"].nunique() > 1 and x != "image_size":
        group = group + " " + d["image_size"].astype(str) + "px"
        notes.append("one curve per resolution")
    if "frames" in d and d["frames"].nunique() > 1 and x != "frames":  # video: one curve per clip length
        group = group + " " + d["frames"].astype("string").fillna("-") + "f"
        notes.append("one curve per clip length")
    if "variant" in d:  # one curve per configuration; fit_results must not append it again
        group = group + " [" + d["variant"].astype(str) + "]"
        d = d.drop(columns="variant")
    d["_group"] = group
    return ScalingView(d, "; ".join(notes), bool(per_model))


def fit_view(
    df: pd.DataFrame, y: str, x: str, *, holdout: int = 0, bootstrap: int = DEFAULT_BOOTSTRAP, seed: int = 0
) -> tuple[FitReport, ScalingView]:
    """`fit_results` over the curves `scaling_view` picks (used by plots and the report)."""
    view = scaling_view(df, x)
    pairs = comparable_models if view.per_model else None
    return fit_results(view.frame, y, [x], by="_group", holdout=holdout, bootstrap=bootstrap, seed=seed, pairs=pairs), view


def fit_path(
    path: str,
    y: str,
    x: list[str],
    *,
    by: str | None = None,
    holdout: int = 0,
    bootstrap: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
    include_all: bool = False,
    tune: list[str] | None = None,
) -> FitReport:
    """`harness fit`: load a results path and fit (`tune`: first the best-val envelope over those keys)."""
    df, _ = load_results(path, include_all=include_all)
    env = None
    if tune:
        from harness.analysis.tune import envelope

        env = envelope(df, tune)
        df = env.rows
    report = fit_results(df, y, x, by=by, holdout=holdout, bootstrap=bootstrap, seed=seed)
    if env is not None:
        report.notes = env.lines() + report.notes
    return report
