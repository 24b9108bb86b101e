"""Coverage of `harness fit`'s 95% bootstrap intervals on simulated data with a known law (issue 23).

Each replication draws y = law(x)·exp(noise·N(0,1)) at 7 data sizes 500–60k with 2 or 4 seeds,
fits the same form with the hierarchical multi-start bootstrap `harness fit` uses
(lawfit.fit_arrays, within_points=True) and asks whether the interval of the large-x exponent
(alpha; alpha + alpha2 for `broken`) contains the truth. Coverage = share of replications that do;
its binomial SE is printed next to it. Goal (issue 23): >= 90% with 2 seeds, >= 93% with 4.

    python benchmarks/fit_coverage.py                          # 200 replications per case, B = 200
    python benchmarks/fit_coverage.py --forms power --reps 200 # one form
    python benchmarks/fit_coverage.py --smoke                  # seconds; run by tests/test_fit_coverage.py

Not a test of speed; results: benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np

from harness.analysis.forms import FORMS, asymptotic_exponent, predict
from harness.analysis.lawfit import fit_arrays

SIZES = np.geomspace(500, 60_000, 7)
# true alpha 0.3 as in the simulation; coefficients put y near 0.4 at n = 500
TRUTH = {
    "power": {"E": 0.05, "A": 0.35 * 500**0.3, "alpha": 0.3},
    "saturating": {"E": 0.05, "A": 0.4 * 1000**0.3, "alpha": 0.3, "d": 500.0},
    "m4": {"E": 0.05, "E0": 0.9, "A": 0.5 * 500**0.3, "alpha": 0.3, "gamma": 0.5},
    "broken": {"E": 0.05, "A": 0.35 * 500**0.5, "alpha": 0.5, "alpha2": -0.2, "x_break": 5000.0, "f": 0.3},
}


def covered(form: str, seeds: int, noise: float, bootstrap: int, rng: np.random.Generator) -> bool | None:
    truth = TRUTH[form]
    x = np.repeat(SIZES, seeds)
    y = predict(truth, x) * np.exp(noise * rng.standard_normal(len(x)))
    f = fit_arrays(x, y, bootstrap=bootstrap, seed=int(rng.integers(1 << 31)), within_points=True, form=form)
    if not f.boot:
        return None
    draws = [asymptotic_exponent(p) for p in f.boot]
    lo, hi = np.percentile(draws, [2.5, 97.5])
    return bool(lo <= asymptotic_exponent(truth) <= hi)


def run(forms: list[str], seeds: list[int], reps: int, bootstrap: int, noise: float) -> list[dict]:
    rows = []
    for form in forms:
        for k in seeds:
            rng = np.random.default_rng(1000 * k + len(form))
            t0 = time.perf_counter()
            hits = [covered(form, k, noise, bootstrap, rng) for _ in range(reps)]
            ok = [h for h in hits if h is not None]
            cov = sum(ok) / len(ok) if ok else math.nan
            se = math.sqrt(cov * (1 - cov) / len(ok)) if ok else math.nan
            rows.append({"form": form, "seeds": k, "reps": len(ok), "coverage": cov, "se": se, "s": time.perf_counter() - t0})
            print(f"| {form} | {k} | {len(ok)} | {cov:.1%} ± {se:.1%} | {rows[-1]['s']:.0f} s |", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--forms", default=",".join(FORMS))
    p.add_argument("--seeds", default="2,4")
    p.add_argument("--reps", type=int, default=200)
    p.add_argument("--bootstrap", type=int, default=200)
    p.add_argument("--noise", type=float, default=0.03, help="log-normal noise per trial (3%%, as in the issue)")
    p.add_argument("--smoke", action="store_true", help="power, 2 seeds, 3 replications, B = 8")
    a = p.parse_args(argv)
    if a.smoke:
        a.forms, a.seeds, a.reps, a.bootstrap = "power", "2", 3, 8
    print(f"noise {a.noise:.0%}, sizes 500–60k (7), B = {a.bootstrap}, nominal 95%\n")
    print("| form | seeds | replications | coverage ± SE | time |\n|---|---|---|---|---|")
    rows = run(a.forms.split(","), [int(s) for s in a.seeds.split(",")], a.reps, a.bootstrap, a.noise)
    return 0 if all(r["reps"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
