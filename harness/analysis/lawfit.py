"""One law fitted to arrays: the multi-start fit, its bootstrap and percentile intervals, a holdout check.

The law and its optimiser are `laws.py`; grouping of results frames is `fits.py`.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from harness.analysis import forms, newton
from harness.analysis.laws import (
    HUBER_DELTA,
    MIN_DISTINCT_X,
    N_LOCAL_STARTS,
    POWER_BOUNDS,
    best_starts,
    derived,
    local_optima,
    minimise,
    settled,
    theta_to_params,
)

predict = forms.predict

# Bootstrap refits start from the full-data optimum and the best grid starts of the full data: a
# resample whose optimum lies in another basin is found from there (issue 23: warm starts alone
# under-covered). Two-x fits keep the warm start only (Chinchilla: same SEs, half the time).
N_BOOT_STARTS = 2
MIN_POINTS_DRAWN = 6  # fewer distinct x: the hierarchical bootstrap keeps every point, resamples seeds only
DEFAULT_BOOTSTRAP = 200  # resamples; ~2-3 s per one-x group on one core
# A settled power fit (laws.settled: every point has many rows, one optimum in sight) refits its resamples from
# the warm start alone once the first PILOT resamples showed the grid starts never beat it (issue 27: 8x fewer
# objective evaluations; on 10,000 rows the same draws to 1e-6 in alpha, benchmarks/README.md).
PILOT = 10
NEWTON_ROWS = 2_000_000  # rows of resamples refitted together by newton.py (~100 MB of its arrays)


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
    form: str = "power"
    warm_refits: int = 0  # resamples refitted from the full-data optimum alone (a settled fit, after the pilot)


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
    form: str = "power",
) -> LawFit:
    """Fit a law `form` (forms.py; not power: one x only) to positive finite x (n,) or (n, 2) and y (n,).

    The bootstrap resamples rows, or with `within_points` and repeated x (seeds) hierarchically:
    points, then the seeds within each drawn point (see `_resample`)."""
    with _one_blas_thread():
        return _Full.of(x, y, delta, form).law(bootstrap, seed, within_points)


@dataclass
class _Full:
    """One form's full-data fit, before its bootstrap (`compare_forms` keeps them: `auto_fit` bootstraps the winner's)."""

    refit: _refitter
    theta: np.ndarray
    logx: np.ndarray
    logy: np.ndarray

    @classmethod
    def of(cls, x: np.ndarray, y: np.ndarray, delta: float, form: str) -> _Full:
        logx = np.log(np.asarray(x, dtype=float).reshape(len(y), -1))
        logy = np.log(np.asarray(y, dtype=float))
        refit = _refitter(form, logx, logy, delta)
        return cls(refit, refit.first(logx, logy), logx, logy)

    def law(self, bootstrap: int, seed: int, within_points: bool) -> LawFit:
        refit, theta, logx, logy = self.refit, self.theta, self.logx, self.logy
        params = refit.params(theta)
        rmse = float(np.sqrt(np.mean((np.log(predict(params, np.exp(logx))) - logy) ** 2)))
        rng = np.random.default_rng(seed)
        points = _points(logx)
        boot, warm_draws = [], []
        for _ in range(bootstrap):
            idx, ys = _resample(points, logy, rng, within_points)
            if any(len(np.unique(logx[idx, j])) < MIN_DISTINCT_X for j in range(logx.shape[1])):
                continue
            if len(boot) >= PILOT and refit.settled:  # after the pilot: refitted together from the warm start below
                warm_draws.append((idx, ys))
                continue
            p = refit.params(refit(logx[idx], ys, theta))
            boot.append(p | derived(p))
        boot += [p | derived(p) for p in map(refit.params, refit.warm_batch(logx, warm_draws, theta))]
        ci, se = _intervals(boot)
        return LawFit(params, ci, se, len(logy), rmse, len(boot), boot, refit.form, refit.warm_refits)


class _refitter:
    """Fits one form to (log x, log y), from the data's own best starts plus a warm start.

    A power fit whose full-data optimum is `settled` (laws.py) stays so as long as every refit from all starts so
    far (the pilot) ended where the warm start did; `_Full.law` then refits the rest from the warm start alone
    (`warm_batch`)."""

    def __init__(self, form: str, logx: np.ndarray, logy: np.ndarray, delta: float) -> None:
        self.form, self.delta = form, delta
        self.shift = float(logx[:, 0].mean())
        self.settled = False
        self.warm_refits = 0  # refits from the warm start alone
        self.bounds = np.array(POWER_BOUNDS)  # warm_batch's (power only)
        if form == "power":
            self.starts = best_starts(logx, logy, N_LOCAL_STARTS, delta)
        elif logx.shape[1] != 1:
            raise ValueError(f"form {form!r} takes one x")
        else:
            self.starts = forms.grid_starts(form, logx[:, 0] - self.shift, logy)

    def first(self, logx: np.ndarray, logy: np.ndarray) -> np.ndarray:
        """The full-data fit from every start; notes whether it is settled."""
        if self.form != "power":
            return forms.fit_form(self.form, logx[:, 0] - self.shift, logy, self.starts)
        thetas, losses = local_optima(logx, logy, self.starts, self.delta)
        best = int(np.argmin(losses))
        self.settled = logx.shape[1] == 1 and settled(logx, thetas[best], thetas[:N_BOOT_STARTS])
        return thetas[best]

    def __call__(self, logx: np.ndarray, logy: np.ndarray, warm: np.ndarray) -> np.ndarray:
        if self.form == "power":
            extra = self.starts[: N_BOOT_STARTS if logx.shape[1] == 1 else 0]
            thetas, losses = local_optima(logx, logy, np.vstack([warm, extra]), self.delta)
            best = int(np.argmin(losses))
            # the pilot: a grid start that ends lower than the warm start unsettles the rest of the bootstrap
            self.settled &= bool(losses[0] <= losses[best] + 1e-9 * max(1.0, abs(losses[best])))
            return thetas[best]
        # one grid start besides the warm one: finite-difference refits cost ~10x an analytic one
        return forms.fit_form(self.form, logx[:, 0] - self.shift, logy, np.vstack([warm, self.starts[:1]]))

    def warm_batch(self, logx: np.ndarray, draws: list[tuple[np.ndarray, np.ndarray]], warm: np.ndarray) -> list[np.ndarray]:
        """A settled power fit's resamples (row indices into logx (n, 1), their log y) refitted from the warm start
        alone, all at once by newton.py; one that Newton leaves unconverged or on a bound is refitted by L-BFGS-B."""
        if not draws:
            return []
        self.warm_refits += len(draws)
        xs, point = np.unique(logx[:, 0], return_inverse=True)
        per = max(1, NEWTON_ROWS // len(logx))
        batches = [draws[i : i + per] for i in range(0, len(draws), per)]
        fitted = [
            newton.refit_power(xs, [point[i] for i, _ in b], [y for _, y in b], warm, self.bounds, self.delta) for b in batches
        ]
        thetas, ok = np.vstack([t for t, _ in fitted]), np.concatenate([o for _, o in fitted])
        for i in np.flatnonzero(~ok):
            idx, ys = draws[i]
            thetas[i] = minimise(logx[idx], ys, np.vstack([warm, thetas[i]]), self.delta)[0]
        return list(thetas)

    def params(self, theta: np.ndarray) -> dict[str, float]:
        return theta_to_params(theta) if self.form == "power" else forms.to_params(self.form, theta, self.shift)


def _points(logx: np.ndarray) -> list[np.ndarray]:
    """The row indices of each distinct x (a point), in order of x."""
    if not len(logx):
        return []
    inv = np.unique(logx, axis=0, return_inverse=True)[1].ravel()
    order = np.argsort(inv, kind="stable")
    return np.split(order, np.cumsum(np.bincount(inv))[:-1])


def _resample(
    points: list[np.ndarray], logy: np.ndarray, rng: np.random.Generator, hierarchical: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Row indices and log y of one resample; `points` are the row indices of each distinct x (`_points`).

    Hierarchical (issue 23): draw points (distinct x) with replacement, then each drawn point's seeds
    with replacement, their deviations from the point's mean widened by sqrt(k/(k−1)) — a k-seed
    resample otherwise has (k−1)/k of the seed variance (half with 2 seeds), which is what made
    within-point intervals under-cover (benchmarks/fit_coverage.py). Under MIN_POINTS_DRAWN points every
    point is kept (seeds only). Without repeats: rows.
    """
    n = len(logy)
    if not (hierarchical and any(len(p) > 1 for p in points)):
        idx = rng.integers(0, n, n)
        return idx, logy[idx]
    idx_parts, y_parts = [], []
    # points are drawn only where enough remain distinct: with 3 points, 7 of 9 draws lose one
    drawn = rng.integers(0, len(points), len(points)) if len(points) >= MIN_POINTS_DRAWN else range(len(points))
    for i in drawn:
        p = points[i]
        take = p[rng.integers(0, len(p), len(p))]
        mean = logy[p].mean()
        widen = math.sqrt(len(p) / (len(p) - 1)) if len(p) > 1 else 1.0
        idx_parts.append(take)
        y_parts.append(mean + widen * (logy[take] - mean))
    return np.concatenate(idx_parts), np.concatenate(y_parts)


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


def holdout_check(X: np.ndarray, Y: np.ndarray, n_hold: int, form: str = "power") -> tuple[dict[str, Any] | None, str]:
    """Refit without the `n_hold` largest distinct first-x values; errors on those rows."""
    values = np.unique(X[:, 0])
    if len(values) - n_hold < MIN_DISTINCT_X:
        return None, (f"holdout of {n_hold} skipped: needs >= {n_hold + MIN_DISTINCT_X} distinct x values, has {len(values)}")
    cut = values[-n_hold]
    train = X[:, 0] < cut
    if any(len(np.unique(X[train, j])) < MIN_DISTINCT_X for j in range(X.shape[1])):
        return None, f"holdout of {n_hold} skipped: the remaining rows have < {MIN_DISTINCT_X} distinct x2"
    law = fit_arrays(X[train], Y[train], form=form)
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


def compare_forms(X: np.ndarray, Y: np.ndarray, candidates: tuple[str, ...] = forms.FORMS) -> list[dict[str, Any]]:
    """Each form fitted without the largest x values (2 of >= 6 distinct, else 1) and scored by its
    mean relative error on the held-out seed means (`extrapolation_error`), then refitted on all rows
    (`params`). A form with more parameters than training x values is not scored (None)."""
    with _one_blas_thread():
        return _compare(X, Y, candidates)[0]


def auto_fit(
    X: np.ndarray, Y: np.ndarray, *, bootstrap: int, seed: int, form_params: bool = True
) -> tuple[list[dict[str, Any]], LawFit]:
    """`compare_forms`, and the `best_form` bootstrapped (hierarchically: points, then seeds), its full-data fit
    reused; without `form_params` the forms not chosen are not refitted on all rows (their `params` None)."""
    with _one_blas_thread():
        table, full = _compare(X, Y, forms.FORMS, form_params)
        return table, full[best_form(table)].law(bootstrap, seed, within_points=True)


def _compare(
    X: np.ndarray, Y: np.ndarray, candidates: tuple[str, ...], form_params: bool = True
) -> tuple[list[dict[str, Any]], dict[str, _Full]]:
    """The rows of `compare_forms`, and the full-data fits made for them (every form's, or the best one's)."""
    x = X[:, 0]
    values = np.unique(x)
    n_hold = 2 if len(values) >= 6 else 1
    train = x < values[-n_hold]
    out = []
    for form in candidates:
        row: dict[str, Any] = {"form": form, "params": None, "extrapolation_error": None}
        if len(values) - n_hold >= max(MIN_DISTINCT_X, forms.n_params(form)):
            law = _Full.of(X[train], Y[train], HUBER_DELTA, form).law(0, 0, False)
            errs = [abs(float(predict(law.params, np.array([v]))[0]) / float(Y[x == v].mean()) - 1) for v in values[-n_hold:]]
            row["extrapolation_error"] = float(np.mean(errs))
        out.append(row)
    chosen = best_form(out)
    full = {r["form"]: _Full.of(X, Y, HUBER_DELTA, r["form"]) for r in out if form_params or r["form"] == chosen}
    for r in out:
        if r["form"] in full:
            r["params"] = full[r["form"]].refit.params(full[r["form"]].theta)
    return out, full


# Extrapolation errors within this much (relative error, 1 point) of the best are a tie, and the simplest
# form among them wins: on 10,000 rows of a clean power law, errors of 0.08-0.66% picked `broken` and
# `saturating` by noise, and `broken`'s intervals under-cover (benchmarks/README.md, fit_coverage).
FORM_TIE = 0.01


def best_form(table: list[dict[str, Any]]) -> str:
    """The simplest form (listed first) whose extrapolation error is within FORM_TIE of the lowest; power if none scored."""
    scored = [r for r in table if r["extrapolation_error"] is not None]
    if not scored:
        return "power"
    best = min(r["extrapolation_error"] for r in scored)
    return next(r["form"] for r in scored if r["extrapolation_error"] <= best + FORM_TIE)
