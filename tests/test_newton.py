"""newton.py: a settled power fit's bootstrap refits, all resamples at once by damped Newton, held to the
L-BFGS-B refit from the same warm start that they replace (laws.minimise)."""

from __future__ import annotations

import numpy as np
import pytest

from harness.analysis import forms, lawfit, laws, newton
from harness.analysis.huber import Points

SIZES = np.geomspace(500, 60_000, 7)
LAW = {"E": 0.05, "A": 0.35 * 500**0.3, "alpha": 0.3}


def _setup(seeds: int = 40, draws: int = 40, seed: int = 0):  # noqa: ANN202
    rng = np.random.default_rng(seed)
    x = np.repeat(SIZES, seeds)
    y = forms.predict(LAW, x) * np.exp(0.03 * rng.standard_normal(len(x)))
    logx, logy = np.log(x)[:, None], np.log(y)
    refit = lawfit._refitter("power", logx, logy, laws.HUBER_DELTA)
    warm = refit.first(logx, logy)
    points = lawfit._points(logx)
    return logx, refit, warm, [lawfit._resample(points, logy, rng, True) for _ in range(draws)]


def _loss(logx: np.ndarray, idx: np.ndarray, ys: np.ndarray, theta: np.ndarray) -> float:
    pts = Points.of(logx[idx], ys, laws.HUBER_DELTA)
    return float(pts.huber(laws.log_predict(theta, pts.x))[0])


def _newton(logx: np.ndarray, draws: list, warm: np.ndarray, bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    xs, point = np.unique(logx[:, 0], return_inverse=True)
    return newton.refit_power(xs, [point[i] for i, _ in draws], [ys for _, ys in draws], warm, bounds, laws.HUBER_DELTA)


def test_newton_reaches_the_lbfgsb_optimum_of_every_resample() -> None:
    logx, refit, warm, draws = _setup()
    thetas, ok = _newton(logx, draws, warm, refit.bounds)
    assert ok.all()
    same = 0
    for (idx, ys), theta in zip(draws, thetas):
        scipy_theta, scipy_loss = laws.minimise(logx[idx], ys, warm[None, :])
        assert _loss(logx, idx, ys, theta) <= scipy_loss * (1 + 1e-12) + 1e-12  # as low, or lower (a tighter stop)
        same += bool(np.abs(theta - scipy_theta).max() < 1e-5)
    # the rest lie where an L1-like loss is flat: as good a fit, elsewhere on the ridge
    assert same >= 0.9 * len(draws)


def test_an_optimum_on_a_bound_is_left_to_lbfgsb() -> None:
    """Newton knows no bounds but refuses to cross them: a resample whose optimum needs one is reported
    unconverged, and warm_batch refits it by L-BFGS-B, which handles bounds."""
    logx, refit, warm, draws = _setup(draws=10)
    tight = refit.bounds.copy()
    tight[1] = (0.0, warm[1] + 1e-3)  # alpha capped just above the full-data optimum: some resamples need more
    thetas, ok = _newton(logx, draws, warm, tight)
    want = [laws.minimise(logx[i], ys, warm[None, :]) for i, ys in draws]
    # L-BFGS-B's own answers under the real bounds; where Newton says converged, the cap did not bind
    for k in np.flatnonzero(ok):
        assert thetas[k][1] < tight[1][1] and _loss(logx, *draws[k], thetas[k]) <= want[k][1] * (1 + 1e-12) + 1e-12
    assert (~ok).sum() >= 2 and np.all(thetas[~ok][:, 1] <= tight[1][1])


def test_warm_batch_falls_back_to_lbfgsb_where_newton_stops_short(monkeypatch: pytest.MonkeyPatch) -> None:
    logx, refit, warm, draws = _setup(draws=12)
    monkeypatch.setattr(newton, "MAX_STEPS", 1)  # one Newton step: nothing has converged
    fallbacks = []
    real = lawfit.minimise
    monkeypatch.setattr(lawfit, "minimise", lambda *a: fallbacks.append(1) or real(*a))
    thetas = refit.warm_batch(logx, draws, warm)
    assert len(fallbacks) == len(draws) and refit.warm_refits == len(draws)
    for (idx, ys), theta in zip(draws, thetas):
        assert _loss(logx, idx, ys, theta) <= laws.minimise(logx[idx], ys, warm[None, :])[1] * (1 + 1e-9)


def test_warm_batch_in_several_batches_gives_the_same_draws(monkeypatch: pytest.MonkeyPatch) -> None:
    logx, refit, warm, draws = _setup(draws=9)
    whole = refit.warm_batch(logx, draws, warm)
    monkeypatch.setattr(lawfit, "NEWTON_ROWS", 2 * len(logx))  # two resamples a batch: five batches
    calls = []
    real = newton.refit_power
    monkeypatch.setattr(newton, "refit_power", lambda *a: calls.append(len(a[1])) or real(*a))
    parts = refit.warm_batch(logx, draws, warm)
    assert calls == [2, 2, 2, 2, 1]
    # the same optima; a batch's arrays (its points side by side on one axis) round differently, and Newton
    # stops where its steps reach rounding: ~1e-8 apart, far inside any interval
    np.testing.assert_allclose(np.array(parts), np.array(whole), rtol=0, atol=1e-6)


def test_a_resample_newton_cannot_evaluate_is_left_to_lbfgsb(monkeypatch: pytest.MonkeyPatch) -> None:
    """A non-finite loss, gradient or Hessian at the start (none occurs inside the bounds; guarded all the same)
    takes no Newton step and is reported unconverged, the others unaffected."""
    logx, refit, warm, draws = _setup(draws=3)
    real = newton._Problem.terms

    def poisoned(self, theta, which):  # noqa: ANN001, ANN202
        f, g, h = real(self, theta, which)
        h[which == 1] = np.nan
        return f, g, h

    monkeypatch.setattr(newton._Problem, "terms", poisoned)
    thetas, ok = _newton(logx, draws, warm, refit.bounds)
    assert ok.tolist() == [True, False, True]
    monkeypatch.setattr(newton._Problem, "terms", real)
    good, _ = _newton(logx, draws, warm, refit.bounds)
    np.testing.assert_allclose(thetas[[0, 2]], good[[0, 2]], atol=1e-6)
