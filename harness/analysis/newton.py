"""Bootstrap refits of a settled one-x power law, every resample at once: damped Newton with the exact Hessian.

A settled fit (laws.settled) refits each resample from the full-data optimum alone. One L-BFGS-B run per
resample costs ~20 objective evaluations of ~0.1 ms, most of it scipy's and numpy's per-call Python (issue 27:
1,140 such runs were a third of `harness fit --by family` at 10,000 rows). Here all resamples share each
iteration's array operations, and Newton needs ~5 iterations where L-BFGS-B needs ~20:

- the summed Huber/delta loss of a point is piecewise quadratic in its prediction p; its second derivative is
  the number of the point's rows within ±delta of p, over delta (huber.Points.curved);
- p = LSE(log A − alpha·x, log E) has gradient J = (w_A, −w_A·x, w_E) and Hessian w_A·w_E·v·vᵀ with
  v = (1, −x, −1) (w: the two terms' shares of the prediction).

Each iteration takes the full Newton step where it gains at least a share of what the quadratic model promises
(H shifted to be positive definite where it is not); elsewhere, the quadratic model having held only while the
same rows stayed within ±delta, the best of 41 step lengths along the Newton direction and along steepest descent.
A step is taken only where it lowers the loss and stays inside laws.py's bounds. A resample that has not converged
after MAX_STEPS, or whose optimum is on a bound, is reported so and refitted by L-BFGS-B (lawfit.py), as before.
"""

from __future__ import annotations

import numpy as np

from harness.analysis.huber import Points

MAX_STEPS = 60
_GTOL = 1e-9  # the gradient's largest entry at convergence (as laws.py's L-BFGS-B gtol), on the summed/delta loss
_STEP_TOL = 1e-12  # or the last step, relative to the parameters
_FTOL = 1e-15  # or the last gain, relative to the loss
_ARMIJO = 1e-4  # a full Newton step is taken when it gains this share of what the quadratic model predicts
_CAP = 1.0  # else the best of these step lengths along it and along steepest descent, each capped at _CAP in
_LENGTHS = 2.0 ** np.arange(0, -41, -1)  # every parameter: 1 .. 2^-40
_DECREMENT = 1e-9  # a stop where no step length lowers the loss is convergence only if Newton predicts no more gain
_GCONV = 1e-4  # and the gradient's largest entry is under this share of the loss
_BOUND_MARGIN = 1e-6  # an optimum this close to a bound is left to L-BFGS-B (laws.on_bound's tolerance)


def refit_power(
    xs: np.ndarray, rows: list[np.ndarray], logys: list[np.ndarray], warm: np.ndarray, bounds: np.ndarray, delta: float
) -> tuple[np.ndarray, np.ndarray]:
    """Minimise each resample's Huber/delta loss of y = E + A·x^-alpha from `warm` ([log A, alpha, log E] on log x).

    `xs` (G,) are the distinct log x; resample r has rows at points `rows[r]` (indices into xs) with log y
    `logys[r]`; `bounds` (3, 2). Returns the optima (R, 3) and whether each converged inside the bounds (R,)."""
    n_res, n_pts = len(rows), len(xs)
    shift = float(xs.mean())  # optimise around the centre: log A' = log A − alpha·shift
    # each resample's rows in order of point, then log y (one small sort each: a sort of all of them costs 5x more)
    order = [np.lexsort((ly, pts)) for pts, ly in zip(rows, logys)]
    group = np.concatenate([r * n_pts + np.asarray(pts)[o] for r, (pts, o) in enumerate(zip(rows, order))])
    logy = np.concatenate([ly[o] for ly, o in zip(logys, order)])
    problem = _Problem(xs - shift, Points(group, n_res * n_pts, logy, delta), shift, np.asarray(bounds))
    theta = np.tile([warm[0] - warm[1] * shift, warm[1], warm[2]], (n_res, 1)).astype(float)
    converged = np.zeros(n_res, dtype=bool)
    active = np.arange(n_res)
    f, g, h = problem.terms(theta, active)
    finite = np.isfinite(f) & np.isfinite(g).all(axis=1) & np.isfinite(h).all(axis=(1, 2))
    active, f, g, h = active[finite], f[finite], g[finite], h[finite]  # the rest: unconverged, to L-BFGS-B
    for _ in range(MAX_STEPS):
        if not len(active):
            break
        step, f_new, better, stuck = problem.search(theta[active], active, f, g, h)
        gain = f - f_new
        moved = active[better]
        theta[moved] += step[better]
        if len(moved):
            f[better], g[better], h[better] = problem.terms(theta[moved], moved)
        small = np.abs(step).max(axis=1) <= _STEP_TOL * (1.0 + np.abs(theta[active]).max(axis=1))
        # done: no step length lowers the loss, or the last step or gain is at rounding level, or the gradient ~0
        done = ~better | small | (gain <= _FTOL * np.maximum(1.0, np.abs(f))) | (np.abs(g).max(axis=1) <= _GTOL)
        # a stop is convergence where Newton predicts no more gain and the gradient is ~0: a step stopped short by
        # a bound leaves a gradient (at convergence it is under 1e-5 of the loss: benchmarks/README.md, round 6)
        flat = np.abs(g).max(axis=1) <= _GCONV * np.maximum(1.0, np.abs(f))
        converged[active[done & ~stuck & flat]] = True
        active, f, g, h = active[~done], f[~done], g[~done], h[~done]
    out = theta.copy()
    out[:, 0] = theta[:, 0] + theta[:, 1] * shift
    return out, converged & problem.inside(theta, margin=_BOUND_MARGIN)


class _Problem:
    """Every resample's loss on centred log x (`x`), with its gradient and Hessian; `which` picks resamples."""

    def __init__(self, x: np.ndarray, points: Points, shift: float, bounds: np.ndarray) -> None:
        self.x, self.points, self.shift, self.bounds = x, points, shift, bounds
        self.v = np.stack([np.ones_like(x), -x, -np.ones_like(x)], axis=-1)  # (G, 3): d(power − floor)/d theta

    def _predict(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """log y (..., G) at thetas (..., 3) and the two terms' shares."""
        power = theta[..., :1] - theta[..., 1:2] * self.x
        floor = theta[..., 2:3]
        top = np.maximum(power, floor)
        ea, ee = np.exp(power - top), np.exp(floor - top)
        total = ea + ee
        return top + np.log(total), ea / total, ee / total

    def _at(self, which: np.ndarray) -> np.ndarray:
        return which[:, None] * len(self.x) + np.arange(len(self.x))

    def loss(self, theta: np.ndarray, which: np.ndarray) -> np.ndarray:
        """Loss (..., m) at thetas (..., m, 3) of resamples `which` (m,)."""
        return self.points.curved(self._predict(theta)[0], self._at(which))[0].sum(axis=-1)

    def terms(self, theta: np.ndarray, which: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Loss (m,), gradient (m, 3) and Hessian (m, 3, 3) at thetas (m, 3) of resamples `which`."""
        p, wa, we = self._predict(theta)
        loss, dl, d2l = self.points.curved(p, self._at(which))
        jac = np.stack([wa, -wa * self.x, we], axis=-1)  # (m, G, 3)
        grad = np.einsum("rg,rgi->ri", dl, jac)
        hess = np.einsum("rg,rgi,rgj->rij", d2l, jac, jac) + np.einsum("rg,gi,gj->rij", dl * wa * we, self.v, self.v)
        return loss.sum(axis=1), grad, hess

    def search(
        self, theta: np.ndarray, which: np.ndarray, f: np.ndarray, g: np.ndarray, h: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """One damped Newton step per resample: (step, loss after it, whether it lowered the loss, whether no
        step did although Newton predicts a gain)."""
        direction = _newton_direction(g, h)
        slope = (g * direction).sum(axis=1)  # < 0
        f_full = self.loss(theta + direction, which)
        full = self.inside(theta + direction) & (f_full <= f + _ARMIJO * slope)
        step, f_new = direction.copy(), np.where(full, f_full, f)
        rest = np.flatnonzero(~full)
        if len(rest):
            # the quadratic model holds only while the rows within ±delta stay the same: the best length may be
            # far from 1, and where few rows are within ±delta (an L1-like loss) H is near-singular and its
            # direction poor, so the steepest descent is searched too; one grid of lengths for all at once
            ways = np.stack([_capped(direction[rest]), _capped(-g[rest])])  # (2, m, 3)
            steps = (_LENGTHS[:, None, None, None] * ways[None]).reshape(-1, len(rest), 3)  # (2L, m, 3)
            cand = theta[rest] + steps
            losses = np.where(self.inside(cand), self.loss(cand, which[rest]), np.inf)
            best = np.argmin(losses, axis=0)
            step[rest] = steps[best, np.arange(len(rest))]
            f_new[rest] = losses[best, np.arange(len(rest))]
        better = f_new < f
        stuck = ~better & (-0.5 * slope > _DECREMENT * np.maximum(1.0, np.abs(f)))
        return step, np.where(better, f_new, f), better, stuck

    def inside(self, theta: np.ndarray, margin: float = 0.0) -> np.ndarray:
        """Whether centred thetas (..., 3) are within laws.py's bounds (at least `margin` inside them)."""
        vals = np.stack([theta[..., 0] + theta[..., 1] * self.shift, theta[..., 1], theta[..., 2]], axis=-1)
        return np.all((vals >= self.bounds[:, 0] + margin) & (vals <= self.bounds[:, 1] - margin), axis=-1)


def _capped(d: np.ndarray) -> np.ndarray:
    """Directions (m, 3) scaled to at most _CAP in every parameter."""
    top = np.abs(d).max(axis=1, keepdims=True)
    return d * np.minimum(1.0, _CAP / np.maximum(top, 1e-300))


def _newton_direction(g: np.ndarray, h: np.ndarray) -> np.ndarray:
    """−H⁻¹g per resample, H shifted to be positive definite where it is not (Levenberg)."""
    h = np.where(np.isfinite(h).all(axis=(1, 2))[:, None, None], h, np.eye(3))  # eigvalsh raises on NaN; no step there
    eig = np.linalg.eigvalsh(h)
    scale = np.abs(eig).max(axis=1) + 1e-300
    shift = np.maximum(0.0, 1e-10 * scale - eig[:, 0])
    with np.errstate(all="ignore"):
        d = -np.linalg.solve(h + shift[:, None, None] * np.eye(3), g[..., None])[..., 0]
    d[~np.isfinite(d).all(axis=1)] = 0.0
    return d
