"""Figures: scaling laws, Pareto frontiers, cost vs resolution, learning curves.

Built on matplotlib's object API (`Figure`, no pyplot), so plotting never touches global
backend state and works headless; seaborn supplies the style. Every figure is written as
PNG (150 dpi) and SVG. Each family has one colour everywhere (`FAMILY_COLOURS`); models of
one family are shades of it, small to large. A kind with nothing to show returns a
`PlotOutcome` with `skipped` set instead of drawing an empty figure.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.ticker import FuncFormatter, NullFormatter

from harness.analysis.fit_records import FitReport, GroupFit
from harness.analysis.fits import ScalingView, fit_view
from harness.analysis.fmt import fmt_x
from harness.analysis.forms import predict
from harness.analysis.io import as_fraction, is_accuracy, load_results, require_columns
from harness.analysis.lawfit import DEFAULT_BOOTSTRAP
from harness.analysis.laws import MIN_DISTINCT_X, on_bound
from harness.analysis.pareto_plots import PARETO_X, plot_pareto
from harness.analysis.plot_style import (
    PlotOutcome,
    axis_label,
    error_label,
    family_colour,
    family_order,
    figure_style,
    log_axis,
    new_figure,
    save_figure,
    shade,
)
from harness.errors import StudyError, did_you_mean
from harness.store import ResultsDir

KINDS = ("scaling", "pareto", "cost", "curves")

# ----------------------------------------------------------------------------- entry points


def plot_path(
    path: str | Path,
    kind: str,
    *,
    x: str | None = None,
    y: str | None = None,
    out: str | Path | None = None,
    bootstrap: int = DEFAULT_BOOTSTRAP,
    include_all: bool = False,
    tune: list[str] | None = None,
) -> PlotOutcome:
    """`harness plot`: load results, draw one kind into `out` (default RESULTS/plots); `tune`:
    the best-val envelope over those keys (which value won where goes to stderr)."""
    df, curves = load_results(path, include_all=include_all)
    p = Path(path)
    out_dir = Path(out) if out else ResultsDir(p if p.is_dir() else p.parent).plots
    return tuned_plot(df, curves, kind, out_dir, x=x, y=y, bootstrap=bootstrap, tune=tune)


def tuned_plot(
    df: pd.DataFrame,
    curves: pd.DataFrame,
    kind: str,
    out_dir: Path,
    *,
    x: str | None = None,
    y: str | None = None,
    bootstrap: int = DEFAULT_BOOTSTRAP,
    tune: list[str] | None = None,
) -> PlotOutcome:
    """`make_plot`, of the best-val envelope over `tune` first (which value won where goes to stderr)."""
    if tune:
        from harness.analysis.tune import envelope

        env = envelope(df, tune)
        df = env.rows
        print("\n".join(env.lines()), file=sys.stderr)
    return make_plot(df, curves, kind, out_dir, x=x, y=y, bootstrap=bootstrap)


def make_plot(
    df: pd.DataFrame,
    curves: pd.DataFrame,
    kind: str,
    out_dir: Path,
    *,
    x: str | None = None,
    y: str | None = None,
    bootstrap: int = DEFAULT_BOOTSTRAP,
) -> PlotOutcome:
    """Draw one kind; `x`/`y` override its default columns."""
    _check_axes(df, curves, kind, x, y)
    if kind == "scaling":
        return plot_scaling(df, out_dir, x=x or "data_size", y=y or "test_acc", bootstrap=bootstrap)
    if kind == "pareto":
        return plot_pareto(df, out_dir, y=y or "test_acc", xs=[x] if x else None)
    if kind == "cost":
        return plot_cost(df, out_dir, ys=[y] if y else None, x=x or "image_size")
    if kind == "curves":
        return plot_curves(df, curves, out_dir, x=x or "samples_seen", y=y or "test_acc")
    raise StudyError(f"unknown plot kind {kind!r}", key="--kind", fix=f"use one of {', '.join(KINDS)}")


def _check_axes(df: pd.DataFrame, curves: pd.DataFrame, kind: str, x: str | None, y: str | None) -> None:
    """A column the chosen kind cannot draw is an error naming the valid ones, not a 'skipped' line
    with exit 0 (a typo in a script would otherwise pass unnoticed)."""
    if kind == "pareto" and x is not None and x not in (cols := [c for c, _, _ in PARETO_X]):
        raise StudyError(f"pareto cannot plot against {x!r}", key="--x", fix=f"use one of {', '.join(cols)}")
    if kind == "curves" and not curves.empty:
        for flag, col in (("--x", x), ("--y", y)):
            if col is not None and col not in curves:
                have = [c for c in curves.columns if c != "trial_id"]
                raise StudyError(f"column {col!r} is not in the learning curves", key=flag, fix=did_you_mean(col, have))
    if kind in ("pareto", "cost") and y is not None:
        require_columns(df, [y], key="--y")
    if kind == "cost" and x is not None and x not in COST_X:
        raise StudyError(f"cost cannot plot against {x!r}", key="--x", fix=f"use one of {', '.join(COST_X)}")


# ----------------------------------------------------------------------------- scaling


def plot_scaling(
    df: pd.DataFrame,
    out_dir: Path,
    *,
    x: str = "data_size",
    y: str = "test_acc",
    bootstrap: int = DEFAULT_BOOTSTRAP,
    fitted: tuple[FitReport, ScalingView] | None = None,
) -> PlotOutcome:
    """log-log y (error for accuracies) vs x, one curve per family/model, fit + 95% band.

    `fitted` is `fit_view(df, y, x)` when the caller already has it (the report does).
    """
    require_columns(df, [x, y], key="plot scaling")
    out = PlotOutcome("scaling")
    fit, view = fitted or fit_view(df, y, x, bootstrap=bootstrap)
    pts = _scaling_points(view.frame, x, y)
    if pts.empty:
        out.skipped.append(f"scaling: no ok trials with positive {x} and {y}")
        return out
    families = family_order(pts["_family"].tolist())
    by_model = pts.groupby("_family")["_group"].nunique().max() > 1
    panels = families if by_model else ["all"]
    ncols = min(len(panels), 2)
    nrows = math.ceil(len(panels) / ncols)
    fits = {f.group: f for f in fit.fits}
    with figure_style():
        width = 5.6 if len(panels) > 1 else 7.4  # one panel: room for the two-line title
        fig, axes = new_figure(ncols, nrows, width=width, height=4.6, sharey=True)
        for ax, panel in zip(axes.flat, panels):
            sub = pts if panel == "all" else pts[pts["_family"] == panel]
            _draw_scaling_panel(ax, sub, fits, x)
            ax.set_title(panel if panel != "all" else "")
        for ax in list(axes.flat)[len(panels) :]:
            ax.set_visible(False)
        for ax in axes.flat:
            if ax.get_visible():
                log_axis(ax, "x", pts[x].to_numpy())
                log_axis(ax, "y", pts["_y"].to_numpy())
                # the axis follows the data, not a wide bootstrap band (which may run past error 1)
                ylo, yhi = float(pts["_y"].min()), float(pts["_y"].max())
                ax.set_ylim(ylo / 1.6, min(yhi * 1.6, 1.0) if is_accuracy(y) else yhi * 1.6)
                ax.set_xlabel(per_sample_label(axis_label(x), pts))
                ax.set_ylabel(error_label(y))
        what = error_label(y).split(",")[0].capitalize()
        extra = f", {view.note}" if view.note else ""
        forms = sorted({f.form for f in fit.fits if f.law is not None})
        law = r"fit $E + A\,x^{-\alpha}$" if forms == ["power"] else "fitted law (" + ", ".join(forms) + ": see harness fit)"
        if any(f.law is not None and len(f.law.boot) >= _MIN_BAND for f in fit.fits):
            how = f"lines: {law} with 95% bootstrap band"
        elif any(f.law is not None for f in fit.fits):
            how = f"lines: {law} (no band: too few trials to bootstrap)"
        else:
            how = f"no fit: a curve needs >= {MIN_DISTINCT_X} distinct {x} values"
        by_code: dict[str, set[str]] = {}  # one entry per code, its groups after it: the line stays figure-wide
        for f in fit.fits:
            for w in f.warnings:
                by_code.setdefault(w["code"], set()).add(str(f.group))
        warned = [f"{code} ({', '.join(sorted(groups))})" for code, groups in sorted(by_code.items())]
        warn = ("\nwarnings (see harness fit): " + "; ".join(warned)) if warned else ""
        fig.suptitle(
            f"{what} vs {axis_label(x).split(' (')[0]}{extra}\n{how}; dots: trials; markers: seed means (bars: ± std over seeds)"
            + warn,
            fontsize=10.5,
        )
        out.paths = save_figure(fig, out_dir, f"scaling_{y}_vs_{x}")
    return out


def _scaling_points(frame: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    d = frame[frame["status"] == "ok"].copy()
    if is_accuracy(y):
        frac, _ = as_fraction(d[y])
        d["_y"] = 1 - frac
    else:
        d["_y"] = pd.to_numeric(d[y], errors="coerce")
    d[x] = pd.to_numeric(d[x], errors="coerce")
    keep = np.isfinite(d["_y"]) & (d["_y"] > 0) & np.isfinite(d[x]) & (d[x] > 0)
    return d[keep]


_MIN_BAND = 10  # bootstrap fits needed before a 2.5–97.5% band means anything
_RES_STYLES = ("-", "--", ":", "-.")
_RES_MARKERS = ("o", "s", "^", "D")


def _draw_scaling_panel(ax: Axes, pts: pd.DataFrame, fits: dict[str, GroupFit], x: str) -> None:
    """Shade = model size within the family (per-model curves); line style and marker =
    resolution (when several; else clip length, for video; else the variant of one model). Curves without a fit join their seed
    means with a thin line."""
    style_col = next((c for c in ("image_size", "frames") if c in pts and c != x and pts[c].nunique() > 1), "image_size")
    resolutions = sorted(pts[style_col].dropna().unique()) if style_col in pts else []
    for fam, members in _ordered_groups(pts).items():
        per_model = "model" in pts and all(pts.loc[pts["_group"] == m, "model"].nunique() == 1 for m in members)
        model_of = {m: pts.loc[pts["_group"] == m, "model"].iloc[0] if per_model else fam for m in members}
        models = list(dict.fromkeys(model_of[m] for m in members))  # small to large
        seen: dict[str, int] = {}  # variants of one model (same colour): told apart by line style instead
        for name in members:
            g = pts[pts["_group"] == name]
            colour = shade(family_colour(fam), models.index(model_of[name]), len(models))
            variant = seen[model_of[name]] = seen.get(model_of[name], -1) + 1
            res = resolutions.index(g[style_col].iloc[0]) if len(resolutions) > 1 else variant
            style, marker = _RES_STYLES[res % 4], _RES_MARKERS[res % 4]
            ax.scatter(g[x], g["_y"], s=12, color=colour, alpha=0.35, linewidths=0)
            means, spread = g.groupby(x)["_y"].mean(), g.groupby(x)["_y"].std()  # std over seeds (NaN for one)
            if spread.notna().any():
                ax.errorbar(
                    means.index,
                    means.to_numpy(),
                    yerr=spread.fillna(0).to_numpy(),
                    fmt="none",
                    ecolor=colour,
                    elinewidth=0.8,
                    capsize=2,
                    alpha=0.8,
                )
            f = fits.get(name)
            fitted = f is not None and f.law is not None
            ax.plot(
                means.index,
                means.to_numpy(),
                marker,
                ls="none" if fitted else style,
                lw=0.8,
                color=colour,
                ms=5,
                mec="white",
                mew=0.6,
            )
            label = f"{name} (not fitted)"
            if fitted:
                a = f.law.params["alpha"]
                label = f"{name} (α={a:.2f})" if not on_bound(a) else f"{name} (α={a:g}: on its bound, undetermined)"
            if fitted:
                _draw_law(ax, f, colour, style)
            ax.plot([], [], style, marker=marker, color=colour, label=label, ms=5)
    ax.legend(fontsize=8, frameon=True)


def _ordered_groups(pts: pd.DataFrame) -> dict[str, list[str]]:
    """family -> its groups, small to large by median params, then by resolution."""
    out = {}
    for fam in family_order(pts["_family"].tolist()):
        sub = pts[pts["_family"] == fam]
        keys = [c for c in ("params", "image_size", "frames") if c in sub]
        if keys:
            order = sub.groupby("_group")[keys].median().sort_values(keys, kind="stable").index
        else:
            order = sorted(sub["_group"].unique())
        out[fam] = [str(g) for g in order]
    return out


def _draw_law(ax: Axes, f: GroupFit, colour: str, style: str = "-") -> None:
    """The fitted law over its data range extended 1.5x each way, with its 95% band."""
    lo, hi = f.x_range
    xs = np.geomspace(lo / 1.5, hi * 1.5, 120)
    ax.plot(xs, predict(f.law.params, xs), style, color=colour, lw=1.6)
    if len(f.law.boot) >= _MIN_BAND:
        band = np.array([predict(p, xs) for p in f.law.boot])
        ax.fill_between(
            xs, np.percentile(band, 2.5, axis=0), np.percentile(band, 97.5, axis=0), color=colour, alpha=0.15, linewidth=0
        )


# ----------------------------------------------------------------------------- cost


COST_X = {"image_size": ("image sizes", "resolution"), "frames": ("clip lengths", "clip length")}  # --kind cost --x


def plot_cost(df: pd.DataFrame, out_dir: Path, *, ys: list[str] | None = None, x: str = "image_size") -> PlotOutcome:
    """GMACs and throughput vs input resolution (or, x = frames, clip length), one line per model (log-log)."""
    out = PlotOutcome("cost")
    plural, what = COST_X[x]
    if x not in df or df[x].nunique() < 2:
        n = df[x].nunique() if x in df else 0
        out.skipped.append(f"cost: needs >= 2 {plural} to plot cost vs {what}, results have {n}")
        return out
    cols = [c for c in (ys or ["fwd_gmacs", "infer_img_s"]) if c in df]
    if not cols:
        out.skipped.append("cost: no fwd_gmacs or infer_img_s column")
        return out
    d = df[df["status"] == "ok"] if (df["status"] == "ok").any() else df
    d = d.assign(**{c: d.get(c, default) for c, default in (("family", "all"), ("params", 0))})
    with figure_style():
        fig, axes = new_figure(len(cols), 1, width=5.8, height=4.4)
        for ax, col in zip(axes.flat, cols):
            _draw_cost(ax, d, col, x)
        handles, labels = axes.flat[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside right upper", fontsize=8, title="model")
        fig.suptitle(f"Cost vs {what} (per model; medians over trials)", fontsize=11)
        out.paths = save_figure(fig, out_dir, "cost_vs_resolution" if x == "image_size" else f"cost_vs_{x}")
    return out


def _draw_cost(ax: Axes, d: pd.DataFrame, col: str, x: str = "image_size") -> None:
    key = "model" if "model" in d else "family"
    if "variant" in d:  # one line per configuration
        d = d.assign(**{key: d[key].astype(str) + " [" + d["variant"].astype(str) + "]"})
    pts = d.assign(_v=pd.to_numeric(d[col], errors="coerce")).dropna(subset=["_v"])
    pts = pts.dropna(subset=[x]).groupby(["family", key, x], as_index=False).agg(_v=("_v", "median"), params=("params", "median"))
    for fam in family_order(pts["family"].tolist()):
        sub = pts[pts["family"] == fam]
        models = sub.groupby(key)["params"].median().sort_values(kind="stable").index.tolist()
        for i, m in enumerate(models):
            g = sub[sub[key] == m].sort_values(x)
            ax.plot(g[x].astype(float), g["_v"], "-o", ms=4, color=shade(family_colour(fam), i, len(models)), label=str(m))
    if not pts.empty:
        log_axis(ax, "x", pts[x].to_numpy(float))
        log_axis(ax, "y", pts["_v"].to_numpy(float))
        ax.set_xticks(sorted(pts[x].astype(float).unique()))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0f}"))
    ax.set_xlabel(axis_label(x))
    ax.set_ylabel(per_sample_label(axis_label(col), d))
    ax.set_title(axis_label(col).split(" (")[0].capitalize(), fontsize=10)


def per_sample_label(label: str, d: pd.DataFrame) -> str:
    """Video rows (sample_unit "clip") count clips where image rows count images."""
    if "sample_unit" in d and len(d) and (d["sample_unit"] == "clip").all():
        return label.replace("per image", "per clip").replace("img/s", "clips/s").replace("(images)", "(clips)")
    return label


# ----------------------------------------------------------------------------- learning curves


def plot_curves(
    df: pd.DataFrame, curves: pd.DataFrame, out_dir: Path, *, x: str = "samples_seen", y: str = "test_acc"
) -> PlotOutcome:
    """y vs x per trial, one panel per data size, coloured by family."""
    out = PlotOutcome("curves")
    if curves.empty or x not in curves or y not in curves or "trial_id" not in df:
        out.skipped.append(f"curves: no learning curves with {x} and {y} (file input or no curves/ dir)")
        return out
    keep = [c for c in ("trial_id", "family", "model", "data_size", "sample_unit") if c in df]
    c = curves.merge(df[keep], on="trial_id", how="inner", suffixes=("", "_trial"))
    c = c.dropna(subset=[x, y])
    if c.empty:
        out.skipped.append("curves: no curve rows match a trial row")
        return out
    if "family" not in c:
        c["family"] = "all"
    if is_accuracy(y):
        c[y] = as_fraction(c[y])[0] * 100
    panels = sorted(c["data_size"].dropna().unique()) if "data_size" in c else [None]
    ncols = min(4, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    with figure_style():
        fig, axes = new_figure(ncols, nrows, width=4.2, height=3.4, sharey=True)
        for ax, panel in zip(axes.flat, panels):
            sub = c if panel is None else c[c["data_size"] == panel]
            _draw_curves(ax, sub, x, y)
            ax.set_title(f"data_size={fmt_x(float(panel))}" if panel is not None else "", fontsize=10)
            ax.set_xlabel(per_sample_label(axis_label(x), sub))
            ax.set_ylabel(axis_label(y) if ax.get_subplotspec().is_first_col() else "")
        for ax in list(axes.flat)[len(panels) :]:
            ax.set_visible(False)
        handles = [axes.flat[0].plot([], [], "-", color=family_colour(f), label=f)[0] for f in family_order(c["family"].tolist())]
        fig.legend(handles=handles, loc="outside right upper", fontsize=9, title="family")
        fig.suptitle(f"Learning curves: {y} vs {x}, one line per trial", fontsize=11)
        out.paths = save_figure(fig, out_dir, f"curves_{y}_vs_{x}")
    return out


def _draw_curves(ax: Axes, sub: pd.DataFrame, x: str, y: str) -> None:
    for (fam, _), g in sub.groupby(["family", "trial_id"], sort=False):
        g = g.sort_values(x)
        ax.plot(g[x], g[y], "-", color=family_colour(str(fam)), alpha=0.55, lw=1.0)
    xs = sub[x].to_numpy(float)
    if len(xs) and np.nanmin(xs) > 0 and np.nanmax(xs) / np.nanmin(xs) > 30:  # >1.5 decades
        log_axis(ax, "x", xs)
    else:
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt_x(v) if v else "0"))
