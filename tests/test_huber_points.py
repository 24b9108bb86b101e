"""huber.Points: the per-point closed form equals the Huber/delta loss summed over rows, and its gradient."""

from __future__ import annotations

import numpy as np
import pytest

from harness.analysis.huber import Points

DELTA = 1e-3


def _by_rows(p: np.ndarray, inv: np.ndarray, logy: np.ndarray) -> tuple[float, np.ndarray]:
    r = p[inv] - logy
    a = np.abs(r)
    loss = np.where(a <= DELTA, 0.5 * r * r / DELTA, a - 0.5 * DELTA).sum()
    return float(loss), np.bincount(inv, weights=np.clip(r / DELTA, -1.0, 1.0), minlength=len(p))


@pytest.mark.parametrize("k", [1, 2])
def test_points_equal_the_rowwise_loss_and_gradient(k: int) -> None:
    rng = np.random.default_rng(k)
    logx = rng.integers(0, 7, (400, k)).astype(float) * 1.3
    logy = rng.normal(0, 0.003, 400) + 0.1 * logx[:, 0]
    logy[:40] = logy[40:80]  # tied values
    pts = Points.of(logx, logy, DELTA)
    inv = np.array([np.flatnonzero((pts.x == row).all(axis=1))[0] for row in logx])
    assert pts.counts.sum() == 400 and len(pts.x) == len(np.unique(logx, axis=0))
    boundary = np.array([logy[np.flatnonzero(inv == g)[0]] + DELTA for g in range(len(pts.x))])  # a row exactly at +delta
    far = [pts.centre + 3.0, pts.centre - 40.0, pts.centre + rng.normal(0, 5.0, len(pts.x))]  # beyond every row of a point
    for p in [boundary, pts.centre, *far, *(pts.centre + rng.normal(0, 0.004, len(pts.x)) for _ in range(50))]:
        want, want_grad = _by_rows(p, inv, logy)
        got, grad = pts.huber(p)
        assert got == pytest.approx(want, rel=1e-10, abs=1e-9)
        np.testing.assert_allclose(grad, want_grad, atol=1e-7)
    many = pts.centre + rng.normal(0, 0.004, (5, len(pts.x)))  # a batch of predictions at once
    np.testing.assert_allclose(pts.huber(many)[0], [pts.huber(q)[0] for q in many])


def test_points_without_rows_contribute_nothing() -> None:
    pts = Points(np.array([0, 0, 2]), 3, np.array([0.1, 0.2, 0.3]), DELTA)
    loss, grad = pts.per_point(np.array([0.15, 5.0, 0.3]))
    assert loss[1] == 0.0 and grad[1] == 0.0 and loss[2] == 0.0 and grad[2] == 0.0
    assert loss[0] == pytest.approx(2 * (0.05 - 0.5 * DELTA))
