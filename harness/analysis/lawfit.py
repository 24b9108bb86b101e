"""One law fitted to arrays: the multi-start fit, its bootstrap and percentile intervals, a holdout check.

The law and its optimiser are `laws.py`; grouping of results frames is `fits.py`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from harness.analysis.laws import (
    HUBER_DELTA,
    MIN_DISTINCT_X,
    N_LOCAL_STARTS,
    best_starts,
    derived,
    log_predict,
    minimise,
    predict,
    theta_to_params,
)

# Bootstrap resamples start from the full-data optimum only (a warm start): on the Chinchilla
# data adding the best grid start changed no SE in the 4th digit and doubled the run time.
N_BOOT_STARTS = 0
DEFAULT_BOOTSTRAP = 200  # resamples; ~2-3 s per one-x group on one core


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
