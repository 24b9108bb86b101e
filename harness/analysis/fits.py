"""Scaling-law fits: `y = E + A·x^-alpha` (one x) and `y = E + A·x1^-alpha + B·x2^-beta`.

Method is Chinchilla "approach 3" (Hoffmann et al. 2022, App. D.2) as replicated by Epoch AI
(Besiroglu et al. 2024, arXiv 2404.10102): the prediction is written in log space as
`log y = LSE(log A − alpha·log x1, [log B − beta·log x2,] log E)`, the loss is the Huber loss
(delta = 1e-3) of the log residuals, minimised with L-BFGS-B from a grid of starting points.
Uncertainty is a bootstrap over trials (rows) with percentile 95% intervals.

Numerical trap (see ../shared/data/README.md): with delta = 1e-3 a *mean* Huber objective is
~1e-3 and scipy's default ftol/gtol stop L-BFGS at the start point, which then "confirms" any
start and makes bootstrap SEs ~200x too small. We sum the terms, divide by delta (so the
objective is ~ sum |r| in log units) and tighten ftol/gtol.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import brentq, minimize
from scipy.special import logsumexp, softmax

from harness.errors import StudyError

HUBER_DELTA = 1e-3  # Hoffmann et al. 2022; larger deltas turn the fit into least squares
# ftol is relative: the summed/delta objective is O(n) so 1e-12 means ~1e-10 absolute,
# far below one data point's contribution; gtol 1e-9 on gradients that are O(n) at a start.
_LBFGS_OPTIONS = {"ftol": 1e-12, "gtol": 1e-9, "maxiter": 5000, "maxfun": 20000}
N_LOCAL_STARTS = 6  # best grid points polished by L-BFGS-B (the grid itself is scored exactly)
N_BOOT_STARTS = 2  # per bootstrap resample: the full-data optimum plus this many grid starts
MIN_DISTINCT_X = 3  # a 3-parameter curve through 2 distinct x values is not identified

# Bounds keep the search in physically meaningful territory: exponents in [0, 5]
# (published ones are 0.05–1), log-coefficients generous enough for x up to ~1e15.
_EXP_BOUNDS = (0.0, 5.0)
_LOGCOEF_BOUNDS = (-30.0, 80.0)
_LOGE_BOUNDS = (-25.0, 10.0)


# ----------------------------------------------------------------------------- the law


def param_names(n_x: int) -> tuple[str, ...]:
    """Public names in the order of the optimiser's vector (log-coefficients become A, B, E)."""
    return ("A", "alpha", "E") if n_x == 1 else ("A", "alpha", "B", "beta", "E")


def form_text(n_x: int) -> str:
    return "E + A*x^-alpha" if n_x == 1 else "E + A*x1^-alpha + B*x2^-beta"


def _terms(theta: np.ndarray, logx: np.ndarray) -> np.ndarray:
    """Log of each additive term, shape (n, k+1): log A_i − alpha_i·log x_i, then log E."""
    k = logx.shape[1]
    coef, expo = theta[0 : 2 * k : 2], theta[1 : 2 * k : 2]
    power = coef[None, :] - expo[None, :] * logx
    return np.concatenate([power, np.full((logx.shape[0], 1), theta[-1])], axis=1)


def log_predict(theta: np.ndarray, logx: np.ndarray) -> np.ndarray:
    return logsumexp(_terms(theta, logx), axis=1)


def _huber_over_delta(r: np.ndarray, delta: float) -> np.ndarray:
    """Huber(r)/delta: r²/(2·delta) inside ±delta, |r| − delta/2 outside."""
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r * r / delta, a - 0.5 * delta)


def _objective(theta: np.ndarray, logx: np.ndarray, logy: np.ndarray, delta: float):
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
    """Starting points: Hoffmann et al.'s exponent/coefficient grid, E relative to min(y).

    Hoffmann's E grid (log E in −1..1) suits LM losses ~2–3; vision errors are 0.01–0.9, so
    E starts are fractions of the smallest observed y instead.
    """
    k = logx.shape[1]
    exps = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0)
    coefs = (-5.0, 0.0, 5.0, 10.0, 15.0, 20.0, 25.0)
    es = tuple(float(logy.min() + math.log(f)) for f in (0.02, 0.2, 0.5, 0.8, 0.95))
    axes = [coefs, exps] * k + [es]
    return np.array(list(itertools.product(*axes)), dtype=float)


def _grid_losses(grid: np.ndarray, logx: np.ndarray, logy: np.ndarray, delta: float) -> np.ndarray:
    """Objective at every grid point at once, in chunks to cap memory (~64 MB)."""
    k = logx.shape[1]
    out = np.empty(len(grid))
    chunk = max(1, 8_000_000 // max(1, logx.shape[0] * (k + 1)))
    for i in range(0, len(grid), chunk):
        g = grid[i : i + chunk]
        power = g[:, None, 0 : 2 * k : 2] - g[:, None, 1 : 2 * k : 2] * logx[None, :, :]
        e = np.broadcast_to(g[:, None, -1:], (len(g), logx.shape[0], 1))
        r = logsumexp(np.concatenate([power, e], axis=2), axis=2) - logy[None, :]
        out[i : i + chunk] = _huber_over_delta(r, delta).sum(axis=1)
    return out


def best_starts(logx: np.ndarray, logy: np.ndarray, n: int, delta: float) -> np.ndarray:
    grid = start_grid(logx, logy)
    return grid[np.argsort(_grid_losses(grid, logx, logy, delta))[:n]]


def minimise(
    logx: np.ndarray, logy: np.ndarray, starts: np.ndarray, delta: float = HUBER_DELTA
) -> tuple[np.ndarray, float]:
    """L-BFGS-B from each start; the lowest final objective wins."""
    best_theta, best_loss = starts[0], math.inf
    bounds = _bounds(logx.shape[1])
    for s in starts:
        res = minimize(
            _objective, s, args=(logx, logy, delta), jac=True, method="L-BFGS-B",
            bounds=bounds, options=_LBFGS_OPTIONS,
        )
        if np.isfinite(res.fun) and res.fun < best_loss:
            best_theta, best_loss = res.x, float(res.fun)
    return np.asarray(best_theta, dtype=float), best_loss


def theta_to_params(theta: np.ndarray) -> dict[str, float]:
    """Optimiser vector -> {E, A, alpha[, B, beta]} with coefficients exponentiated."""
    k = (len(theta) - 1) // 2
    out = {"E": math.exp(theta[-1]), "A": math.exp(theta[0]), "alpha": float(theta[1])}
    if k == 2:
        out |= {"B": math.exp(theta[2]), "beta": float(theta[3])}
    return out


def params_to_theta(params: dict[str, float]) -> np.ndarray:
    v = [math.log(params["A"]), params["alpha"]]
    if "B" in params:
        v += [math.log(params["B"]), params["beta"]]
    return np.array(v + [math.log(params["E"])])


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


def fit_arrays(
    x: np.ndarray, y: np.ndarray, *, bootstrap: int = 0, seed: int = 0,
    delta: float = HUBER_DELTA,
) -> LawFit:
    """Fit the law to positive finite x (n,) or (n, 2) and y (n,); bootstrap over rows."""
    logx = np.log(np.asarray(x, dtype=float).reshape(len(y), -1))
    logy = np.log(np.asarray(y, dtype=float))
    starts = best_starts(logx, logy, N_LOCAL_STARTS, delta)
    theta, _ = minimise(logx, logy, starts, delta)
    params = theta_to_params(theta)
    rmse = float(np.sqrt(np.mean((log_predict(theta, logx) - logy) ** 2)))
    boot = _bootstrap(logx, logy, np.vstack([theta, starts[:N_BOOT_STARTS]]), bootstrap, seed, delta)
    ci, se = _intervals(boot)
    return LawFit(params, ci, se, len(logy), rmse, len(boot), boot)


def _bootstrap(
    logx: np.ndarray, logy: np.ndarray, starts: np.ndarray, b: int, seed: int, delta: float
) -> list[dict[str, float]]:
    """Refit on `b` row resamples; resamples with < MIN_DISTINCT_X distinct x are skipped."""
    rng = np.random.default_rng(seed)
    out: list[dict[str, float]] = []
    n = len(logy)
    for _ in range(b):
        idx = rng.integers(0, n, n)
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


__all__ = [
    "HUBER_DELTA", "LawFit", "fit_arrays", "predict", "derived", "param_names", "form_text",
    "describe_params", "params_to_theta", "theta_to_params", "StudyError", "brentq", "Any",
]
