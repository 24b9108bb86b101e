"""Where two groups' fitted one-x curves cross, with bootstrap intervals of the crossing."""

from __future__ import annotations

import itertools
import math

import numpy as np
from scipy.optimize import brentq

from harness.analysis.fit_records import Crossover, GroupFit, PairFilter
from harness.analysis.forms import predict
from harness.analysis.lawfit import LawFit

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
