"""Scaling-law fits of results frames: `y = E + A·x^-alpha` (one x) and `y = E + A·x1^-alpha + B·x2^-beta`.

Rows are grouped (per family, model or `--by`), checked, fitted and compared for crossovers here;
the law, its objective and the multi-start optimiser are `laws.py` (method and its numerical trap
in that docstring), one fit with its bootstrap `lawfit.py`, the records `fit_records.py`,
crossings `crossovers.py`. Uncertainty is a bootstrap with percentile 95% intervals: `harness fit`
resamples the seeds within each x where an x has several (issue 11), else the trials (rows).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from harness.analysis import fitwarnings
from harness.analysis.crossovers import crossovers
from harness.analysis.fit_records import FitReport, GroupFit, PairFilter
from harness.analysis.fmt import fmt_x
from harness.analysis.forms import FORMS
from harness.analysis.io import as_fraction, is_accuracy, load_results, require_columns
from harness.analysis.lawfit import DEFAULT_BOOTSTRAP, PILOT, LawFit, auto_fit, fit_arrays, holdout_check
from harness.analysis.laws import EXP_BOUNDS, MIN_DISTINCT_X, MIN_ROWS_SETTLED, on_bound
from harness.analysis.tables import FAMILY_ORDER
from harness.errors import StudyError

# ----------------------------------------------------------------------------- results frames

# Columns that, if they vary inside a group but are neither x nor the grouping, mean the
# group pools different experiments (e.g. error vs data_size pooled over model sizes).
_CONTROL_COLUMNS = ("model", "data_size", "image_size", "frames", "frame_stride", "dataset")
BROKEN_CI_NOTE = (
    "broken-form intervals under-cover: ~55% of nominal 95% held the true exponent in simulation "
    "(benchmarks/fit_coverage.py, 7 sizes); do not quote them as 95% intervals"
)
_SIZE_LIKE = ("params", "fwd_gmacs", "train_flops")  # an x that *is* the model size


def fit_results(
    df: pd.DataFrame,
    y: str,
    x: list[str],
    *,
    by: str | None = None,
    holdout: int = 0,
    bootstrap: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
    pairs: PairFilter | None = None,
    form: str = "power",
    form_params: bool = True,
) -> FitReport:
    """Fit `y` against one or two `x` columns, per `by` group; see the module docstring and `laws.py`.

    `pairs` limits which groups are compared for crossovers (default: every pair); `form` is a law
    shape of forms.py, or `auto` (chosen per group by extrapolation to the largest x, one x only).
    `form_params` False: under `auto`, the forms not chosen are fitted without the largest x only (their
    extrapolation errors), not again on all rows (their `params` in `forms`, which only --json prints, are None).
    """
    _check_request(df, y, x, by, holdout, bootstrap)
    _check_form(form, x)
    if "variant" in df:  # different configurations are fitted apart, never pooled as seeds (analysis/io.py)
        by = by or "variant"
        df = df.assign(**{by: df[by].astype(str) + " [" + df["variant"].astype(str) + "]"}) if by != "variant" else df
    data, target, dropped, notes = _usable(df, y, x)
    groups = (
        [("all", data)]
        if by is None
        else sorted(((str(k), g) for k, g in data.groupby(by, sort=False)), key=lambda kg: _group_rank(*kg))
    )
    dropped_by_group = _dropped_per_group(df, data, by)
    fits = [
        _fit_group(name, g, y, target, x, by, holdout, bootstrap, seed, dropped_by_group.get(name, 0), form, form_params)
        for name, g in groups
    ]
    if by is not None:  # groups whose rows were all dropped still get a line saying so
        fitted_names = {name for name, _ in groups}
        for name in sorted(set(dropped_by_group) - fitted_names, key=lambda n: _group_rank(n, None)):
            fits.append(
                GroupFit(
                    name,
                    y,
                    target,
                    list(x),
                    0,
                    dropped_by_group[name],
                    None,
                    None,
                    notes=[
                        f"no usable rows (failed, or {y} missing or non-positive: e.g. a SimCLR or untrained backbone has no test_acc; fit --y probe_acc)"
                    ],
                )
            )
    cross = crossovers(fits, x[0], pairs) if len(x) == 1 else []
    if len(x) == 2 and by is not None:
        notes.append("crossovers are computed for one-x fits only")
    return FitReport(y, target, list(x), by, bootstrap, fits, cross, dropped, len(df), notes, form)


def _group_rank(name: str, rows: pd.DataFrame | None) -> tuple[int, float, float, str]:
    """Families in FAMILY_ORDER, then small to large models, then low to high resolution."""
    fam = re.split(r"[@ ]", name)[0]  # "vit", "vit@s", "vit@s 64px", "vit 64px"
    rank = FAMILY_ORDER.index(fam) if fam in FAMILY_ORDER else len(FAMILY_ORDER)

    def median(col: str) -> float:
        if rows is None or col not in rows:
            return math.inf
        v = pd.to_numeric(rows[col], errors="coerce").median()
        return float(v) if pd.notna(v) else math.inf

    return (rank, median("params"), median("image_size"), name)


_FIT_COLUMNS = (
    "data_size",
    "params",
    "fwd_gmacs",
    "train_flops",
    "image_size",
    "frames",
    "test_acc",
    "test_loss",
    "probe_acc",
    "fewshot_10_acc",
)  # named in errors


def _check_request(df: pd.DataFrame, y: str, x: list[str], by: str | None, holdout: int, bootstrap: int) -> None:
    if len(x) not in (1, 2):
        raise StudyError(
            f"got {len(x)} x columns", key="--x", fix="give one --x (E + A·x^-alpha) or two (E + A·x1^-alpha + B·x2^-beta)"
        )
    require_columns(df, [y, *x], key="--y/--x")
    if by is not None:
        require_columns(df, [by], key="--by")
    for flag, col in [("--y", y)] + [("--x", c) for c in x]:
        values = df[col].dropna()
        if len(values) and pd.to_numeric(values, errors="coerce").isna().all():  # a label column: nothing to fit
            numeric = [c for c in _FIT_COLUMNS if c in df and c != col]
            raise StudyError(
                f"column {col!r} holds labels (e.g. {str(values.iloc[0])!r}), not numbers",
                key=flag,
                fix=f"use a numeric column ({', '.join(numeric)}); to fit per {col}, pass --by {col}",
            )
    if holdout < 0 or bootstrap < 0:
        raise StudyError(
            "--holdout and --bootstrap must be >= 0", key="--holdout/--bootstrap", fix="pass a non-negative count (0 disables)"
        )


def _usable(df: pd.DataFrame, y: str, x: list[str]) -> tuple[pd.DataFrame, str, dict[str, int], list[str]]:
    """Rows with status ok and finite positive target and x; `_y`, `_x0`, `_x1` hold them."""
    notes: list[str] = []
    out = df.copy()
    if is_accuracy(y):
        frac, percent = as_fraction(out[y])
        out["_y"] = 1.0 - frac
        target = f"1 - {y}"
        notes.append(
            f"{y} is an accuracy: fitting the error 1 - {y}" + (" (values were percentages, divided by 100)" if percent else "")
        )
    else:
        out["_y"] = pd.to_numeric(out[y], errors="coerce").astype(float)
        target = y
    for i, col in enumerate(x):
        out[f"_x{i}"] = pd.to_numeric(out[col], errors="coerce").astype(float)
    failed = out["status"] != "ok"  # pruned rows (successive halving) never enter a fit either; counted apart
    pruned = out["status"] == "pruned"
    vals = out[["_y", *(f"_x{i}" for i in range(len(x)))]].to_numpy(dtype=float)
    bad = ~(np.isfinite(vals) & (vals > 0)).all(axis=1) & ~failed
    counts = (("failed", (failed & ~pruned).sum()), ("pruned", pruned.sum()), ("non-finite or non-positive", bad.sum()))
    dropped = {k: int(v) for k, v in counts if v}
    return out[~failed & ~bad], target, dropped, notes


def _dropped_per_group(df: pd.DataFrame, used: pd.DataFrame, by: str | None) -> dict[str, int]:
    if by is None:
        return {"all": len(df) - len(used)}
    total = df[by].astype(str).value_counts()
    kept = used[by].astype(str).value_counts()
    return {str(k): int(total[k] - kept.get(k, 0)) for k in total.index}


def _fit_group(
    name: str,
    g: pd.DataFrame,
    y: str,
    target: str,
    x: list[str],
    by: str | None,
    holdout: int,
    bootstrap: int,
    seed: int,
    n_dropped: int,
    form: str = "power",
    form_params: bool = True,
) -> GroupFit:
    X = g[[f"_x{i}" for i in range(len(x))]].to_numpy(dtype=float)
    Y = g["_y"].to_numpy(dtype=float)
    xr = (float(X[:, 0].min()), float(X[:, 0].max())) if len(Y) else None
    fit = GroupFit(name, y, target, list(x), len(Y), n_dropped, None, xr, notes=_pooling_notes(g, x, by), meta=_group_meta(g))
    short = [c for i, c in enumerate(x) if len(np.unique(X[:, i])) < MIN_DISTINCT_X]
    if short:
        have = ", ".join(f"{len(np.unique(X[:, x.index(c)]))} {c}" for c in short)
        fit.notes.append(f"not fitted: needs >= {MIN_DISTINCT_X} distinct values of each x, has {have}")
        return fit
    n_params = 1 + 2 * len(x)
    if bootstrap and len(Y) <= n_params:
        fit.notes.append(f"no intervals: {len(Y)} trials for {n_params} parameters is an exact fit (add seeds or x values)")
        bootstrap = 0
    if form == "auto":
        fit.forms, fit.law = auto_fit(X, Y, bootstrap=bootstrap, seed=seed, form_params=form_params)
        form = fit.law.form
    else:
        fit.law = fit_arrays(X, Y, bootstrap=bootstrap, seed=seed, within_points=True, form=form)  # points, then seeds
    fit.notes += _bound_notes(fit.law.params, x, float(Y.min()))
    if bootstrap:
        _check_bootstrap(fit.law, bootstrap, fit.notes)
    if fit.law.warm_refits:
        fit.notes.append(
            f"{fit.law.warm_refits} of {fit.law.n_boot} resamples were refitted from the full-data optimum alone: "
            f"settled (>= {MIN_ROWS_SETTLED} rows at every x, one optimum, no plateau) and in the first {PILOT} "
            "refits from every start the optimum was never beaten (benchmarks/README.md, issue 27 round 5)"
        )
    if form == "broken" and fit.law.ci95:
        fit.notes.append(BROKEN_CI_NOTE)
    if len(x) == 1:
        _warn(fit, g, X, Y)
    if holdout:
        fit.holdout, note = holdout_check(X, Y, holdout, form)
        if note:
            fit.notes.append(note)
    return fit


def _warn(fit: GroupFit, g: pd.DataFrame, X: np.ndarray, Y: np.ndarray) -> None:
    """The coded warnings of fitwarnings.py that apply to this group."""
    assert fit.law is not None
    pre, fit.asymptotic = fitwarnings.pre_asymptotic(fit.law, X, Y, fit.x[0])
    found = [
        pre,
        fitwarnings.budget_confounded(g, fit.x[0]),
        fitwarnings.edge_winner(g),
        fitwarnings.few_seeds(X, Y, bool(fit.law.ci95)),
    ]
    fit.warnings += [w for w in found if w is not None]


def _check_form(form: str, x: list[str]) -> None:
    if form not in ("auto", *FORMS):
        raise StudyError(f"unknown law form {form!r}", key="--form", fix=f"use one of auto, {', '.join(FORMS)}")
    if form not in ("auto", "power") and len(x) != 1:
        raise StudyError(f"form {form!r} takes one --x", key="--form", fix="use --form power with two --x")


def _bound_notes(params: dict[str, float], x: list[str], y_min: float) -> list[str]:
    """A best fit with an exponent on its search bound, or a floor E that is ~0, did not measure it."""
    notes = []
    lo, hi = EXP_BOUNDS
    for name, col in zip(("alpha", "beta"), x):
        v = params.get(name)
        if v is not None and on_bound(v):
            notes.append(
                f"{name} = {v:g} sits on its search bound [{lo:g}, {hi:g}]: these data do not determine it "
                f"(y does not fall like a power law in {col}: flat, non-monotonic or a step)"
            )
    if params["E"] < 0.01 * y_min:
        notes.append(f"E = {params['E']:.3g} is ~0 (under 1% of the smallest y): no floor is visible in these data")
    return notes


def _check_bootstrap(law: LawFit, requested: int, notes: list[str]) -> None:
    """Resamples missing a distinct x are skipped; if most were, the survivors are a biased
    conditional sample (all near-permutations of the data), so no intervals are given."""
    skipped = requested - law.n_boot
    if law.n_boot < requested / 2:
        notes.append(
            f"no intervals: {skipped} of {requested} bootstrap resamples lacked "
            f"{MIN_DISTINCT_X} distinct x values (too few trials per x)"
        )
        law.ci95, law.se, law.boot = {}, {}, []
    elif skipped:
        notes.append(f"{skipped} of {requested} bootstrap resamples lacked {MIN_DISTINCT_X} distinct x values and were skipped")


def _group_meta(g: pd.DataFrame) -> dict[str, Any]:
    meta: dict[str, Any] = {c: g[c].iloc[0] for c in ("family", "image_size") if c in g and len(g) and g[c].nunique() == 1}
    if "params" in g and len(g):
        meta["params"] = float(pd.to_numeric(g["params"], errors="coerce").median())
    return meta


def comparable_models(f: GroupFit, g: GroupFit) -> bool:
    """Crossovers worth reporting between per-model curves: different families, same
    resolution, parameter counts within 2x (a 5M ViT overtaking a 0.3M ResNet says little)."""
    a, b = f.meta, g.meta
    if a.get("family") == b.get("family") or a.get("image_size") != b.get("image_size"):
        return False
    pa, pb = a.get("params", math.nan), b.get("params", math.nan)
    return bool(math.isfinite(pa) and math.isfinite(pb) and max(pa, pb) <= 2 * min(pa, pb))


def _pooling_notes(g: pd.DataFrame, x: list[str], by: str | None) -> list[str]:
    """Warn when a group mixes experiments that the law does not model."""
    skip = set(x) | {by}
    if any(c in _SIZE_LIKE for c in x):
        skip |= {"model"}  # the model varies *because* x is its size
    if "train_flops" in x:
        skip |= {"data_size"}  # compute bundles data
    notes = []
    for col in _CONTROL_COLUMNS:
        if col in g and col not in skip and g[col].nunique() > 1:
            notes.append(f"pools {g[col].nunique()} {col} values; consider --by {col} or filtering")
    return notes


# ----------------------------------------------------------------------------- curves to fit


@dataclass
class ScalingView:
    """Rows to fit `y vs x`, one curve per `_group` (coloured by `_family`), and why."""

    frame: pd.DataFrame
    note: str
    per_model: bool  # curves are models (several per family), not families


def scaling_view(df: pd.DataFrame, x: str) -> ScalingView:
    """Choose the curves a 'y vs x' study means, so fits do not pool unlike experiments.

    - x = data_size (or any non-size x): one curve per model when a family has several
      sizes, else per family.
    - x = params / fwd_gmacs: one curve per family at the largest data_size (smaller data
      sizes would mix data-limited points into a model-size law).
    - x = train_flops: per family over all trials (compute bundles model and data).
    - several image sizes: curves are further split by resolution (unless x is image_size).
    """
    d = df.copy()
    fam = d["family"].astype(str) if "family" in d else pd.Series("all", index=d.index)
    d["_family"] = fam
    notes = []
    if x in ("params", "fwd_gmacs") and "data_size" in d and d["data_size"].nunique() > 1:
        top = d["data_size"].max()
        d = d[d["data_size"] == top]
        notes.append(f"at the largest data_size, {fmt_x(float(top))}")
    per_model = x not in _SIZE_LIKE and "model" in d and d.groupby("_family")["model"].nunique().max() > 1
    group = d["model"].astype(str) if per_model else d["_family"]
    if "image_size" in d and d["image_size"].nunique() > 1 and x != "image_size":
        group = group + " " + d["image_size"].astype(str) + "px"
        notes.append("one curve per resolution")
    if "frames" in d and d["frames"].nunique() > 1 and x != "frames":  # video: one curve per clip length
        group = group + " " + d["frames"].astype("string").fillna("-") + "f"
        notes.append("one curve per clip length")
    if "variant" in d:  # one curve per configuration; fit_results must not append it again
        group = group + " [" + d["variant"].astype(str) + "]"
        d = d.drop(columns="variant")
    d["_group"] = group
    return ScalingView(d, "; ".join(notes), bool(per_model))


def fit_view(
    df: pd.DataFrame,
    y: str,
    x: str,
    *,
    holdout: int = 0,
    bootstrap: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
    form: str = "power",
) -> tuple[FitReport, ScalingView]:
    """`fit_results` over the curves `scaling_view` picks (used by plots and the report)."""
    view = scaling_view(df, x)
    pairs = comparable_models if view.per_model else None
    rep = fit_results(view.frame, y, [x], by="_group", holdout=holdout, bootstrap=bootstrap, seed=seed, pairs=pairs, form=form)
    return rep, view


def fit_path(
    path: str,
    y: str,
    x: list[str],
    *,
    by: str | None = None,
    holdout: int = 0,
    bootstrap: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
    include_all: bool = False,
    tune: list[str] | None = None,
    form: str = "auto",
    form_params: bool = True,
) -> FitReport:
    """`harness fit`: load a results path and fit (`tune`: first the best-val envelope over those keys)."""
    df, _ = load_results(path, include_all=include_all, curves=False)  # the rows only: curves are 10x as many
    return tuned_fit(
        df, y, x, by=by, holdout=holdout, bootstrap=bootstrap, seed=seed, tune=tune, form=form, form_params=form_params
    )


def tuned_fit(
    df: pd.DataFrame,
    y: str,
    x: list[str],
    *,
    by: str | None = None,
    holdout: int = 0,
    bootstrap: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
    tune: list[str] | None = None,
    form: str = "auto",
    form_params: bool = True,
) -> FitReport:
    """`fit_results`, of the best-val envelope over `tune` first (`harness fit` and `harness.fit` both come here).
    `form` "auto" chooses each group's law by extrapolation when there is one x; two x are fitted as `power`."""
    if form == "auto" and len(x) > 1:
        form = "power"
    env = None
    if tune:
        from harness.analysis.tune import envelope

        env = envelope(df, tune)
        df = env.rows
    report = fit_results(df, y, x, by=by, holdout=holdout, bootstrap=bootstrap, seed=seed, form=form, form_params=form_params)
    if env is not None:
        report.notes = env.lines() + report.notes
    return report
