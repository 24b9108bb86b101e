"""The Huber-on-log objective of every law form, evaluated per distinct x instead of per row.

A law predicts one log y per distinct x (a point); the rows at that x are its seeds (or, in a
10,000-trial study, its models and seeds: 1,000 rows per x). The summed Huber/delta loss of a point's
residuals is a function of that one prediction p, and with the point's log y sorted and their prefix
sums kept it is exact in closed form: rows with log y < p − delta contribute r − delta/2 each, rows
above p + delta contribute −r − delta/2, and the rows inside ±delta r²/(2·delta), where r = p − log y.
Two binary searches find the three ranges. One evaluation then costs O(G log n) for G points instead
of O(n) rows: at 10,000 rows and 10 points that is the difference between a fit in seconds and one in
minutes (benchmarks/bookkeeping.py), with the same objective value and gradient up to rounding.

`Points` holds one data set; `huber(p)` returns the loss and its derivative by each point's p, and the
forms (laws.py, forms.py) chain that through their own d p / d theta.
"""

from __future__ import annotations

import numpy as np


class Points:
    """Rows grouped into points: per point its rows' sorted log y and their prefix sums. `of` groups rows by
    distinct log x (then `x` (G, k) holds them); the constructor takes any grouping (a point id per row,
    points without rows allowed: the bootstrap stacks many resamples into one `Points`)."""

    x: np.ndarray  # (G, k) distinct log x, when built by `of`

    def __init__(self, group: np.ndarray, n_points: int, logy: np.ndarray, delta: float) -> None:
        group = np.asarray(group, dtype=np.int64)
        logy = np.asarray(logy, dtype=float)
        self.delta = delta
        if len(group) > 1 and not _sorted(group, logy):
            order = np.lexsort((logy, group))  # by point, then by log y within it
            group, logy = group[order], logy[order]
        ly = logy
        self.counts = np.bincount(group, minlength=n_points)
        self.start = np.concatenate([[0], np.cumsum(self.counts)[:-1]])
        self.end = self.start + self.counts
        # centred per point, so that the prefix sums of squares cancel little (their differences are ~delta^2)
        self.centre = np.bincount(group, weights=ly, minlength=n_points) / np.maximum(self.counts, 1)
        d = ly - self.centre[group]
        # the points' values side by side on one increasing axis, `span` apart: one searchsorted serves all
        self.span = float(np.ptp(d)) + 4.0 * delta + 1.0 if len(d) else 1.0
        self.offset = np.arange(n_points) * self.span
        self.key = d + self.offset[group]
        self.s1 = np.concatenate([[0.0], np.cumsum(d)])
        self.s2 = np.concatenate([[0.0], np.cumsum(d * d)])
        # constant per point: the search offsets and the prefix sums at each point's ends (per call they cost time)
        self.lo_offset, self.hi_offset = self.offset - delta, self.offset + delta
        self.s1_start, self.s1_end = self.s1[self.start], self.s1[self.end]

    @classmethod
    def of(cls, logx: np.ndarray, logy: np.ndarray, delta: float) -> Points:
        """Rows grouped by distinct log x (n,) or (n, k)."""
        logx = np.asarray(logx, dtype=float).reshape(len(logy), -1)
        if logx.shape[1] == 1:
            ux, inv = np.unique(logx[:, 0], return_inverse=True)
            ux = ux[:, None]
        else:
            ux, inv = np.unique(logx, axis=0, return_inverse=True)
        points = cls(inv.ravel(), len(ux), logy, delta)
        points.x = ux
        return points

    def huber(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Summed Huber(r)/delta over the rows at predictions p (..., G), and its derivative by each p.

        The loss is summed over the last axis (a scalar for p of shape (G,))."""
        loss, grad, _ = self.curved(p)
        return loss.sum(axis=-1), grad

    def per_point(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each point's summed Huber(r)/delta at its prediction p (..., G), and the derivative by p."""
        return self.curved(p)[:2]

    def curved(self, p: np.ndarray, at: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`per_point`, and the second derivative by p: the point's rows within ±delta of p, / delta (the loss
        is quadratic there and linear outside; newton.py's Hessian). With `at`, p (..., len(at)) are the
        predictions of those points only."""
        delta = self.delta
        centre, s, e, lo_offset, hi_offset, s1_start, s1_end = (
            (self.centre, self.start, self.end, self.lo_offset, self.hi_offset, self.s1_start, self.s1_end)
            if at is None
            else (a[at] for a in (self.centre, self.start, self.end, self.lo_offset, self.hi_offset, self.s1_start, self.s1_end))
        )
        q = p - centre
        # first row with r <= delta, first with r < -delta; a prediction beyond a point's rows would land
        # among its neighbour's, hence the clamp to the point's own range
        lo = np.minimum(np.maximum(self.key.searchsorted(q + lo_offset, side="left"), s), e)
        hi = np.minimum(np.maximum(self.key.searchsorted(q + hi_offset, side="right"), s), e)
        n_below, n_in, n_above = lo - s, hi - lo, e - hi
        s1_lo, s1_hi = self.s1[lo], self.s1[hi]
        sum_in = s1_hi - s1_lo
        loss = (
            n_below * (q - 0.5 * delta)
            - (s1_lo - s1_start)
            + (n_in * q * q - 2.0 * q * sum_in + (self.s2[hi] - self.s2[lo])) * (0.5 / delta)
            + (s1_end - s1_hi)
            - n_above * (q + 0.5 * delta)
        )
        grad = (n_below - n_above) + (n_in * q - sum_in) * (1.0 / delta)
        return loss, grad, n_in * (1.0 / delta)


def _sorted(group: np.ndarray, logy: np.ndarray) -> bool:
    """Whether rows are already in order of point, then log y (newton.py sorts each resample so: no second sort)."""
    step = np.diff(group)
    return bool((step >= 0).all() and ((step > 0) | (logy[1:] >= logy[:-1])).all())
