"""One-x law shapes besides `power` (laws.py), fitted with the same Huber-on-log objective.

- `power`: E + A·x^-alpha (laws.py; analytic gradient).
- `saturating`: E + A·(x + d)^-alpha, Zhai et al. 2022 ("Scaling vision transformers", eq. 1:
  err = c + a·(n + d)^-b): a plateau below x ~ d, as chance-level points make.
- `m4`: (y − E)/(E0 − y)^gamma = A·x^-alpha, Alabdulmohsin et al. 2022 ("Revisiting neural scaling
  laws", M4): y falls from the chance level E0 to the floor E; gamma = 0 is `power`. y is the root
  of a monotone equation, found by Newton's method on its logit (`_m4_root`).
- `broken`: E + A·x^-alpha·(1 + (x/x_break)^(1/f))^(-alpha2·f), Caballero et al. 2022 (broken
  neural scaling laws, one break): exponent alpha below x_break, alpha + alpha2 above it.

Every form is fitted on x scaled by the data's geometric-mean x (so coefficients stay O(1)), then its
parameters are scaled back (`to_params`). Each form returns log y and its Jacobian by theta (m4's by
implicit differentiation of its equation), so L-BFGS-B gets the objective's analytic gradient, as
laws.py's `power` does; starts are the best few points of a start grid. `predict` tells the form
from the parameter names.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from harness.analysis import laws
from harness.analysis.huber import Points

FORMS = ("power", "saturating", "m4", "broken")
TEXT = {
    "power": "E + A*x^-alpha",
    "saturating": "E + A*(x + d)^-alpha",
    "m4": "(y - E)/(E0 - y)^gamma = A*x^-alpha",
    "broken": "E + A*x^-alpha*(1 + (x/x_break)^(1/f))^(-alpha2*f)",
}
N_STARTS = 4  # grid points polished per fit
_OPTIONS = {"ftol": 1e-10, "gtol": 1e-6, "maxiter": 400}  # on the summed / delta objective (laws.py): O(n)
_NEWTON_STEPS = 60  # at most; m4's root is found to rounding in ~5-10 (`_m4_root`)
_M4_LOGIT = math.log((1 - 2.0**-33) / 2.0**-33)  # u in [2^-33, 1 − 2^-33]: the range 32 bisection steps reached


@dataclass(frozen=True)
class _Form:
    names: tuple[str, ...]  # theta order; names starting with "log" are exponentiated
    log_predict: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]  # theta, log x' -> log y, d log y/d theta


def _lse_w(a: np.ndarray, b: np.ndarray | float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """log(e^a + e^b) and the weights e^a/(e^a + e^b), e^b/(...): the derivatives of it by a and b."""
    m = np.logaddexp(a, b)
    return m, np.exp(a - m), np.exp(b - m)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -z))


def _sat(t: np.ndarray, lx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    log_a, alpha, log_d, log_e = t
    s = np.logaddexp(lx, log_d)  # log(x + d)
    out, w, we = _lse_w(log_a - alpha * s, log_e)
    jac = np.stack([w, -w * s, -alpha * w * _sigmoid(log_d - lx), we], axis=1)
    return out, jac


def _broken(t: np.ndarray, lx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    log_a, alpha, alpha2, log_xb, log_f, log_e = t
    f = math.exp(log_f) if np.ndim(log_f) == 0 else np.exp(log_f)  # arrays: a whole start grid at once
    z = (lx - log_xb) / f
    sp, sg = np.logaddexp(0.0, z), _sigmoid(z)  # (1 + (x/xb)^(1/f))^(-alpha2·f) in logs: −alpha2·f·softplus(z)
    out, w, we = _lse_w(log_a - alpha * lx - alpha2 * f * sp, log_e)
    # d(f·softplus(z))/d log f = f·(softplus(z) − z·sigmoid(z)), since dz/d log f = −z
    jac = np.stack([w, -w * lx, -w * f * sp, w * alpha2 * sg, -w * alpha2 * f * (sp - z * sg), we], axis=1)
    return out, jac


def _m4_root(c: np.ndarray, gamma: float) -> tuple[np.ndarray, np.ndarray]:
    """u and 1 − u where log u − gamma·log(1 − u) = c, for u in (0, 1).

    Newton's method on s = logit(u): h(s) = −softplus(−s) + gamma·softplus(s) − c is increasing
    (h' = (1 − u) + gamma·u > 0) and concave for gamma < 1, convex above, linear at 1; on such a function
    every Newton step after the first approaches the root from one side, so it converges from any
    start. Bisection on u took 32 steps to 2e-10 (~60% of an m4 fit's time); this takes ~5-10 to rounding."""
    s = np.clip(np.where(c < 0, c, c / np.maximum(gamma, 1.0)), -_M4_LOGIT, _M4_LOGIT)
    # many thetas (c: (P, G), the start grid): each row steps until it is done, as if alone (the same root, bit for
    # bit); a row without a root to find (NaN: E0 <= E) does not step
    live = None if c.ndim == 1 else np.isfinite(c).all(axis=-1, keepdims=True)
    for _ in range(_NEWTON_STEPS):
        h = -np.logaddexp(0.0, -s) + gamma * np.logaddexp(0.0, s) - c
        u = _sigmoid(s)
        # clipped to what bisection reached: with no root (gamma ~0, y above E0) u stops at 1 − 2^-33, as before
        nxt = np.clip(s - h / ((1.0 - u) + gamma * u), -_M4_LOGIT, _M4_LOGIT)
        done = np.abs(nxt - s) <= 1e-13 * np.maximum(1.0, np.abs(s))
        if live is None:
            s = nxt
            if done.all():
                break
        else:
            s = np.where(live, nxt, s)
            live &= ~done.all(axis=-1, keepdims=True)
            if not live.any():
                break
    return _sigmoid(s), _sigmoid(-s)


def _m4(t: np.ndarray, lx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    log_a, alpha, gamma, log_e, log_e0 = t
    e, e0 = math.exp(log_e), math.exp(log_e0)
    if e0 <= e:
        nan = np.full_like(lx, np.nan)
        return nan, np.full((len(lx), len(t)), np.nan)
    span = e0 - e
    # log(u·span) − gamma·log((1−u)·span) = log A − alpha·log x, with y = E + u·span
    u, one_minus_u = _m4_root(log_a - alpha * lx - (1.0 - gamma) * math.log(span), gamma)
    below, above = u * span, one_minus_u * span  # y − E, E0 − y
    y = e + below
    # implicit derivative of G = log(y − E) − gamma·log(E0 − y) − log A + alpha·log x = 0: dy = −G_theta/G_y
    g_y = 1 / below + gamma / above
    g_theta = np.stack([-np.ones_like(lx), lx, -np.log(above), -e / below, -gamma * e0 / above], axis=1)
    return np.log(y), -g_theta / (g_y * y)[:, None]


def _m4_grid(t: np.ndarray, lx: np.ndarray) -> tuple[np.ndarray, None]:
    """`_m4`'s log y for many thetas at once (t: (5, P, 1)), NaN where E0 <= E; no Jacobian (grid scores)."""
    log_a, alpha, gamma, log_e, log_e0 = t

    def each(f: Callable[[float], float], v: np.ndarray) -> np.ndarray:  # math's, as `_m4` (numpy's may differ by an ulp)
        return np.array([f(a) if a == a else math.nan for a in v.ravel().tolist()]).reshape(v.shape)

    e, e0 = each(math.exp, log_e), each(math.exp, log_e0)
    span = np.where(e0 > e, e0 - e, np.nan)
    u, _ = _m4_root(log_a - alpha * lx - (1.0 - gamma) * each(math.log, span), gamma)
    return np.log(e + u * span), None


_FORMS = {
    "saturating": _Form(("logA", "alpha", "logd", "logE"), _sat),
    "m4": _Form(("logA", "alpha", "gamma", "logE", "logE0"), _m4),
    "broken": _Form(("logA", "alpha", "alpha2", "logx_break", "logf", "logE"), _broken),
}


def _bounds(form: str, lx: np.ndarray, ly: np.ndarray) -> list[tuple[float, float]]:
    lo_x, hi_x = float(lx.min()), float(lx.max())
    top = float(ly.max())
    coef, exp, floor = (-30.0, 30.0), laws.EXP_BOUNDS, (-25.0, float(ly.min()))
    return {
        "saturating": [coef, exp, (lo_x - 8.0, hi_x + 1.0), floor],
        "m4": [coef, exp, (0.0, 5.0), floor, (top + 1e-4, top + 3.0)],
        "broken": [coef, (-1.0, 5.0), (-5.0, 5.0), (lo_x, hi_x), (math.log(0.05), math.log(3.0)), floor],
    }[form]


def _grid(form: str, lx: np.ndarray, ly: np.ndarray) -> np.ndarray:
    med, lo_x = float(np.median(ly)), float(lx.min())
    coefs = [med + math.log(f) for f in (0.05, 0.3, 1.0)]
    floors = [float(ly.min()) + math.log(f) for f in (0.02, 0.5, 0.9)]
    exps = (0.25, 0.5, 1.0, 2.0)
    axes = {
        "saturating": [coefs, exps, [lo_x - 4.0, lo_x, lo_x + 1.5, lo_x + 3.0], floors],
        "m4": [coefs, exps, [0.0, 0.5, 2.0], floors, [float(ly.max()) + math.log(f) for f in (1.05, 2.0)]],
        "broken": [coefs, (0.25, 1.0), (-0.5, 0.0, 0.5), list(np.quantile(lx, [0.3, 0.6])), [math.log(0.3)], floors],
    }[form]
    return np.array(list(itertools.product(*axes)), dtype=float)


_OFF_DOMAIN = 1e12  # the loss of a theta whose prediction is not finite


def _loss(theta: np.ndarray, form: str, points: Points) -> tuple[float, np.ndarray]:
    """Summed Huber/delta of the log residuals (as laws.py, per distinct x: huber.py) and its analytic gradient."""
    with np.errstate(all="ignore"):  # a trial step off the law's domain: non-finite, refused below
        pred, jac = _FORMS[form].log_predict(theta, points.x[:, 0])
    if not (np.isfinite(pred).all() and np.isfinite(jac).all()):  # ndarray.all: a third of np.all per call
        return _OFF_DOMAIN, np.zeros_like(theta)
    loss, dp = points.huber(pred)
    return float(loss), jac.T @ dp


def grid_starts(form: str, logx: np.ndarray, logy: np.ndarray, n: int = N_STARTS) -> np.ndarray:
    """The `n` best points of the form's start grid on (centred) log x, all scored at once."""
    grid = _grid(form, logx, logy)
    points = Points.of(logx, logy, laws.HUBER_DELTA)
    with np.errstate(all="ignore"):  # grid points off the law's domain score as _loss scores them
        pred = (_m4_grid if form == "m4" else _FORMS[form].log_predict)(grid.T[:, :, None], points.x[:, 0])[0]
        scores = points.huber(pred)[0]
    scores[~np.isfinite(pred).all(axis=1)] = _OFF_DOMAIN
    return grid[np.argsort(scores)[:n]]


def fit_form(form: str, logx: np.ndarray, logy: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """The best theta of a non-power form on (centred) log x: L-BFGS-B from each start."""
    bounds = _bounds(form, logx, logy)
    lo, hi = [b[0] for b in bounds], [b[1] for b in bounds]
    points = Points.of(logx, logy, laws.HUBER_DELTA)
    best, best_loss = starts[0], math.inf
    for s in starts:
        res = minimize(
            _loss,
            np.clip(s, lo, hi),
            args=(form, points),
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options=_OPTIONS,
        )
        if np.isfinite(res.fun) and res.fun < best_loss:
            best, best_loss = res.x, float(res.fun)
    return np.asarray(best, dtype=float)


def to_params(form: str, theta: np.ndarray, shift: float) -> dict[str, float]:
    """Optimiser vector on x' = x/exp(shift) -> named parameters on x."""
    raw = {n.removeprefix("log"): (math.exp(v) if n.startswith("log") else float(v)) for n, v in zip(_FORMS[form].names, theta)}
    s = math.exp(shift)
    raw["A"] *= s ** raw["alpha"]  # A'·x'^-alpha = A'·s^alpha·x^-alpha
    for scale in ("d", "x_break"):
        if scale in raw:
            raw[scale] *= s
    return raw


def to_theta(form: str, params: dict[str, float], shift: float) -> np.ndarray:
    """Inverse of `to_params` (a start for bootstrap refits)."""
    s = math.exp(shift)
    p = dict(params, A=params["A"] * s ** -params["alpha"])
    for scale in ("d", "x_break"):
        if scale in p:
            p[scale] /= s
    return np.array([math.log(p[n[3:]]) if n.startswith("log") else p[n] for n in _FORMS[form].names], dtype=float)


def form_of(params: dict[str, float]) -> str:
    """Which form a parameter dict belongs to (bootstrap draws carry no label)."""
    if "E0" in params:
        return "m4"
    if "x_break" in params:
        return "broken"
    return "saturating" if "d" in params else "power"


def predict(params: dict[str, float], x: np.ndarray) -> np.ndarray:
    """y at x for any form (two-x power laws included)."""
    form = form_of(params)
    if form == "power":
        return laws.predict(params, x)
    lx = np.log(np.asarray(x, dtype=float).ravel())
    return np.exp(_FORMS[form].log_predict(to_theta(form, params, 0.0), lx)[0])


def asymptotic_exponent(params: dict[str, float]) -> float:
    """The exponent of y − E at the largest x: alpha, or alpha + alpha2 past a break."""
    return params["alpha"] + params.get("alpha2", 0.0)


def n_params(form: str) -> int:
    return 3 if form == "power" else len(_FORMS[form].names)
