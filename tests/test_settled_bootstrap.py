"""Issue 27's faster fits: a settled power fit refits its resamples from the warm start alone (lawfit,
laws.settled), and m4's root is found by Newton's method on its logit (forms._m4_root).

Each is held to the slower method it replaces: the same bootstrap draws, the same root."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.analysis import forms, lawfit, laws, newton
from harness.analysis.forms import predict
from harness.analysis.huber import Points

SIZES = np.geomspace(500, 60_000, 7)
LAW = {"E": 0.05, "A": 0.35 * 500**0.3, "alpha": 0.3}


def _data(seeds: int, law: dict = LAW, noise: float = 0.03, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.repeat(SIZES, seeds)
    return x, predict(law, x) * np.exp(noise * rng.standard_normal(len(x)))


class _Starts:
    """Counts the starts every L-BFGS-B call of laws.local_optima was given."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sizes: list[int] = []
        real = laws.local_optima

        def counted(logx, logy, starts, delta=laws.HUBER_DELTA):  # noqa: ANN001, ANN202
            self.sizes.append(len(starts))
            return real(logx, logy, starts, delta)

        monkeypatch.setattr(laws, "local_optima", counted)
        monkeypatch.setattr(lawfit, "local_optima", counted)


def _draw_losses(x: np.ndarray, y: np.ndarray, fit: lawfit.LawFit, seed: int) -> np.ndarray:
    """Each bootstrap draw's objective on its own resample (the resamples fit_arrays drew, redrawn)."""
    logx, logy = np.log(x)[:, None], np.log(y)
    rng, points, out = np.random.default_rng(seed), lawfit._points(logx), []
    for p in fit.boot:
        idx, ys = lawfit._resample(points, logy, rng, True)
        pts = Points.of(logx[idx], ys, laws.HUBER_DELTA)
        out.append(pts.huber(laws.log_predict(np.array([math.log(p["A"]), p["alpha"], math.log(p["E"])]), pts.x))[0])
    return np.array(out)


def test_a_settled_fit_gives_the_multi_start_bootstrap_draws(monkeypatch: pytest.MonkeyPatch) -> None:
    """40 seeds at each of 7 sizes: settled. After the pilot every refit starts from the warm start only
    (newton.py, all resamples at once), and each of the 60 draws is as good a fit of its resample as the multi-start refit it replaces (forced
    by unsettling every fit): the same objective to 1e-9. Nearly all are the same point; an L1-like
    objective can be flat along a ridge, where equally good draws differ (here one, by 0.002 in alpha)."""
    x, y = _data(40)
    starts, batches = _Starts(monkeypatch), []
    real = newton.refit_power
    monkeypatch.setattr(newton, "refit_power", lambda *a: batches.append(len(a[1])) or real(*a))
    fast = lawfit.fit_arrays(x, y, bootstrap=60, seed=3, within_points=True)
    assert starts.sizes[0] == laws.N_LOCAL_STARTS  # the full-data fit
    assert starts.sizes[1:] == [1 + lawfit.N_BOOT_STARTS] * lawfit.PILOT  # the pilot; Newton converged on every other
    assert batches == [60 - lawfit.PILOT] and fast.warm_refits == 60 - lawfit.PILOT  # the rest: from the warm start, at once
    monkeypatch.setattr(lawfit, "settled", lambda *a: False)
    slow = lawfit.fit_arrays(x, y, bootstrap=60, seed=3, within_points=True)
    assert fast.params == slow.params and fast.n_boot == slow.n_boot == 60
    np.testing.assert_allclose(_draw_losses(x, y, fast, 3), _draw_losses(x, y, slow, 3), rtol=1e-9)
    same = [abs(a["alpha"] - b["alpha"]) < 1e-6 for a, b in zip(fast.boot, slow.boot)]
    assert sum(same) >= 57
    for end in (0, 1):
        assert fast.ci95["alpha"][end] == pytest.approx(slow.ci95["alpha"][end], abs=2e-3)


@pytest.mark.parametrize(
    ("seeds", "law", "why"),
    [
        (10, LAW, "10 seeds a point: warm starts alone ended higher in 1-7% of resamples"),
        (40, {"E": 1e-9, "A": LAW["A"], "alpha": 0.3}, "no floor: E is a plateau a warm start cannot leave"),
    ],
)
def test_sparse_or_plateau_fits_keep_every_start(seeds: int, law: dict, why: str, monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = _data(seeds, law)
    starts = _Starts(monkeypatch)
    lawfit.fit_arrays(x, y, bootstrap=15, seed=1, within_points=True)
    assert all(n == 1 + lawfit.N_BOOT_STARTS for n in starts.sizes[1:]), why


def test_a_grid_start_that_beats_the_warm_start_in_the_pilot_unsettles_the_fit() -> None:
    x, y = _data(40)
    logx, logy = np.log(x)[:, None], np.log(y)
    refit = lawfit._refitter("power", logx, logy, laws.HUBER_DELTA)
    theta = refit.first(logx, logy)
    assert refit.settled
    refit(logx, logy, theta)  # the warm start wins on its own data: still settled
    assert refit.settled
    bad = np.array([theta[0], theta[1], -25.0])  # a warm start on the E ~ 0 plateau: it cannot leave it, a grid start can
    refit(logx, logy, bad)
    assert refit.settled is False  # and stays so: fit_arrays refits the rest from all starts
    refit(logx, logy, theta)
    assert refit.settled is False


def _bisection_root(c: np.ndarray, gamma: float) -> np.ndarray:
    """forms._m4's root as it was before issue 27: 32 bisection steps on u, then one Newton step."""
    lo, hi = np.zeros_like(c), np.ones_like(c)
    for _ in range(32):
        u = 0.5 * (lo + hi)
        g = np.log(u) - gamma * np.log(1 - u) - c
        hi, lo = np.where(g > 0, u, hi), np.where(g > 0, lo, u)
    u = 0.5 * (lo + hi)
    g = np.log(u) - gamma * np.log(1 - u) - c
    return np.clip(u - g / (1 / u + gamma / (1 - u)), lo, hi)


@pytest.mark.parametrize("gamma", [0.0, 1e-6, 0.3, 1.0, 1.7, 5.0])
def test_m4_newton_root_is_the_bisection_root(gamma: float) -> None:
    c = np.concatenate([np.random.default_rng(0).normal(0.0, 6.0, 500), [-60.0, -23.0, 0.0, 23.0, 60.0]])
    with np.errstate(all="ignore"):
        u, one_minus_u = forms._m4_root(c, gamma)
        want = _bisection_root(c, gamma)
    assert np.all(np.isfinite(u)) and np.all(u > 0) and np.all(one_minus_u > 0)
    inside = (u > 2.0**-32) & (u < 1 - 2.0**-32)  # a root bisection on u could resolve
    np.testing.assert_allclose(u[inside], want[inside], rtol=1e-9, atol=1e-12)  # bisection: ~1e-13 absolute at small u
    g = np.log(u[inside]) - gamma * np.log(one_minus_u[inside]) - c[inside]
    assert np.abs(g).max() < 1e-12 * max(1.0, float(np.abs(c).max()))
    # beyond it both stop at the edge; bisection's last Newton step could land on u = 0 (log y = -inf)
    assert np.all(np.isclose(u[~inside], 2.0**-33, rtol=1e-6) | np.isclose(one_minus_u[~inside], 2.0**-33, rtol=1e-6))
    assert np.all(np.abs(u[~inside] - want[~inside]) <= 2.0**-32)
    assert math.isclose(float(np.max(np.abs(u + one_minus_u - 1))), 0.0, abs_tol=1e-15)


def test_a_settled_group_says_so_in_its_notes_and_json() -> None:
    """The summary line says multi-start refits; a settled group's note says how many were not."""
    import pandas as pd

    from harness.analysis.fits import fit_results

    x, y = _data(40)
    rows = pd.DataFrame(
        {"status": "ok", "data_size": x, "test_acc": 1 - y, "family": "vit", "seed": np.tile(np.arange(40), len(SIZES))}
    )
    xs, ys = _data(2, seed=1)  # 2 seeds a point: not settled
    sparse = pd.DataFrame(
        {"status": "ok", "data_size": xs, "test_acc": 1 - ys, "family": "mlp", "seed": np.tile([0, 1], len(SIZES))}
    )
    rep = fit_results(pd.concat([rows, sparse]), "test_acc", ["data_size"], by="family", bootstrap=30, form="power")
    fits = {f.group: f for f in rep.fits}
    assert fits["vit"].law.warm_refits == 30 - lawfit.PILOT and fits["mlp"].law.warm_refits == 0
    assert any(
        n.startswith(f"{30 - lawfit.PILOT} of 30 resamples were refitted from the full-data optimum") for n in fits["vit"].notes
    )
    assert not any("full-data optimum alone" in n for n in fits["mlp"].notes)
    assert fits["vit"].to_json()["warm_refits"] == 20
