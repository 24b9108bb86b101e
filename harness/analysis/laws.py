"""Scaling-law forms and their optimiser: `y = E + A·x^-alpha` (one x) and `y = E + A·x1^-alpha + B·x2^-beta`.

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

This module is the home of law forms: a form is its `form_text`, its log-space terms and
objective, bounds and start grid. Further forms (saturating, M4, broken power law) go here.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from scipy.optimize import minimize

from harness.analysis.huber import Points

HUBER_DELTA = 1e-3  # Hoffmann et al. 2022; larger deltas turn the fit into least squares
# ftol is relative: the summed/delta objective is O(n) so 1e-12 means ~1e-10 absolute,
# far below one data point's contribution; gtol 1e-9 on gradients that are O(n) at a start.
_LBFGS_OPTIONS = {"ftol": 1e-12, "gtol": 1e-9, "maxiter": 5000, "maxfun": 20000}
N_LOCAL_STARTS = 6  # best grid points polished by L-BFGS-B (the grid itself is scored exactly)
MIN_DISTINCT_X = 3  # a 3-parameter curve through 2 distinct x values is not identified


# Bounds keep the search in physically meaningful territory: exponents in [0, 5]
# (published ones are 0.05–1); log-coefficients are bounded at the data's centre x (see
# `_centre`), where a term above e^30 or below e^-30 times any plausible y is meaningless.
EXP_BOUNDS = (0.0, 5.0)
_LOGCOEF_BOUNDS = (-30.0, 30.0)
_LOGE_BOUNDS = (-25.0, 10.0)
POWER_BOUNDS = (_LOGCOEF_BOUNDS, EXP_BOUNDS, _LOGE_BOUNDS)  # of [log A, alpha, log E], one x


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


def _objective(theta: np.ndarray, logx: np.ndarray, points: Points) -> tuple[float, np.ndarray]:
    """Summed Huber/delta loss of the log residuals and its analytic gradient; `logx` are the points'
    (distinct, centred) log x, `points` their rows (huber.py: O(points), not O(rows), per call).

    logsumexp/softmax are written out: scipy's versions cost ~4x more per call here and
    this function runs ~10^5 times per bootstrap.
    """
    k = logx.shape[1]
    power = theta[0 : 2 * k : 2] - theta[1 : 2 * k : 2] * logx  # (G, k); the floor term is theta[-1]
    top = np.maximum(power.max(axis=1), theta[-1])
    ex, ex_floor = np.exp(power - top[:, None]), np.exp(theta[-1] - top)
    total = ex.sum(axis=1) + ex_floor
    loss, dp = points.huber(top + np.log(total))
    scale = dp / total  # d loss / d term = softmax · d loss / d p
    w = ex * scale[:, None]
    grad = np.empty_like(theta)
    grad[0 : 2 * k : 2] = w.sum(axis=0)
    grad[1 : 2 * k : 2] = -(w * logx).sum(axis=0)
    grad[-1] = (ex_floor * scale).sum()
    return float(loss), grad


def _bounds(k: int) -> list[tuple[float, float]]:
    return [_LOGCOEF_BOUNDS, EXP_BOUNDS] * k + [_LOGE_BOUNDS]


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


def _grid_losses(grid: np.ndarray, points: Points) -> np.ndarray:
    """Objective at every grid point at once, in chunks of ~8M terms (~64 MB) each."""
    logx = points.x
    k, n = logx.shape[1], logx.shape[0]
    out = np.empty(len(grid))
    chunk = max(1, 8_000_000 // (n * (k + 1)))
    for i in range(0, len(grid), chunk):
        g = grid[i : i + chunk]
        power = g[:, None, 0 : 2 * k : 2] - g[:, None, 1 : 2 * k : 2] * logx[None, :, :]
        terms = np.concatenate([power, np.broadcast_to(g[:, None, -1:], (len(g), n, 1))], axis=2)
        top = terms.max(axis=2)
        out[i : i + chunk] = points.huber(top + np.log(np.exp(terms - top[:, :, None]).sum(axis=2)))[0]
    return out


def best_starts(logx: np.ndarray, logy: np.ndarray, n: int, delta: float) -> np.ndarray:
    grid = start_grid(logx, logy)
    return grid[np.argsort(_grid_losses(grid, Points.of(logx, logy, delta)))[:n]]


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
    thetas, losses = local_optima(logx, logy, starts, delta)
    best = int(np.argmin(losses))
    return (thetas[best], float(losses[best])) if np.isfinite(losses[best]) else (np.asarray(starts[0], dtype=float), math.inf)


def local_optima(
    logx: np.ndarray, logy: np.ndarray, starts: np.ndarray, delta: float = HUBER_DELTA
) -> tuple[np.ndarray, np.ndarray]:
    """L-BFGS-B from each start: the optimum each one reached (S, p) and its objective (S,; inf where it failed)."""
    shift = logx.mean(axis=0)
    points = Points.of(logx, logy, delta)
    centred = points.x - shift
    bounds = _bounds(logx.shape[1])
    thetas, losses = np.array(starts, dtype=float), np.full(len(starts), math.inf)
    for i, s in enumerate(starts):
        res = minimize(
            _objective,
            _centre(s, shift, 1.0),
            args=(centred, points),
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options=_LBFGS_OPTIONS,
        )
        if np.isfinite(res.fun):
            thetas[i], losses[i] = _centre(res.x, shift, -1.0), float(res.fun)
    return thetas, losses


# A one-x fit is settled when nothing suggests a second optimum for a resample to fall into: every point holds
# at least this many rows (with 10 seeds a point, refits from the warm start alone ended above the multi-start
# refit in 1-7% of resamples; with 30 and 100, in none of 1,400: issue 27, benchmarks/README.md), the best grid
# starts all reach the same optimum, and no term is a plateau (E or A too small to matter anywhere: its gradient
# vanishes, so a warm start there cannot leave it) and no exponent sits on its bound.
MIN_ROWS_SETTLED = 30
_SAME_OPTIMUM = 1e-4  # max abs difference of the optimiser's vectors
_PLATEAU = 0.01  # a term that is under this share of the prediction at every point


def settled(logx: np.ndarray, theta: np.ndarray, others: np.ndarray) -> bool:
    """Whether the power fit `theta` on (log x (n, 1), ...) is settled (see MIN_ROWS_SETTLED); `others`
    are the optima the best grid starts reached on the same data."""
    xs, rows = np.unique(logx[:, 0], return_counts=True)
    if rows.min() < MIN_ROWS_SETTLED or any(np.max(np.abs(t - theta)) > _SAME_OPTIMUM for t in others):
        return False
    terms = _terms(theta, xs[:, None])
    share = np.exp(terms - log_predict(theta, xs[:, None])[:, None])
    return bool(share.max(axis=0).min() >= _PLATEAU) and not on_bound(float(theta[1]))


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


def on_bound(exponent: float) -> bool:
    """The fitted exponent sits on the search range's edge: not determined by the data."""
    return exponent <= EXP_BOUNDS[0] + 1e-6 or exponent >= EXP_BOUNDS[1] - 1e-6
