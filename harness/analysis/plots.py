"""Figures: scaling laws, Pareto frontiers, cost vs resolution, learning curves.

Built on matplotlib's object API (`Figure`, no pyplot), so plotting never touches global
backend state and works headless; seaborn supplies the style. Every figure is written as
PNG (150 dpi) and SVG. Each family has one colour everywhere (`FAMILY_COLOURS`); models of
one family are shades of it, small to large. A kind with nothing to show returns a
`PlotOutcome` with `skipped` set instead of drawing an empty figure.
"""

from __future__ import annotations

import colorsys
import contextlib
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.colors as mcolors
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Annotation, Text
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
from matplotlib.transforms import Bbox

from harness.analysis.fits import (
    DEFAULT_BOOTSTRAP,
    MIN_DISTINCT_X,
    FitReport,
    GroupFit,
    ScalingView,
    fit_view,
    fmt_x,
    on_bound,
    predict,
)
from harness.analysis.io import as_fraction, is_accuracy, load_results, require_columns
from harness.analysis.tables import FAMILY_ORDER, fmt_count
from harness.errors import StudyError, did_you_mean
from harness.store import ResultsDir

# Okabe–Ito colour-blind-safe palette; baselines (linear, mlp) get the neutral colours.
FAMILY_COLOURS = {
    "resnet": "#0072B2",  # blue
    "vit": "#D55E00",  # vermillion
    "mixer": "#009E73",  # bluish green
    "convnext": "#CC79A7",  # reddish purple
    "swin": "#E69F00",  # orange
    "linear": "#7F7F7F",  # grey
    "mlp": "#8C564B",  # brown
    "r3d": "#56B4E9",  # sky blue (video CNNs: blues, like resnet)
    "r2plus1d": "#332288",  # indigo (told apart from r3d's sky blue in one figure)
    "vivit": "#9E2A2B",  # dark red (video transformers: reds, like vit)
    "vivit_fact": "#F28E2B",  # light orange
}
_EXTRA_COLOURS = ("#56B4E9", "#F0E442", "#000000", "#17BECF", "#BCBD22")  # unknown families
KINDS = ("scaling", "pareto", "cost", "curves")
DPI = 150
AXIS_LABELS = {
    "data_size": "training set size (images)",
    "params": "parameters (count)",
    "fwd_gmacs": "forward compute (GMACs per image)",
    "train_flops": "training compute (FLOPs)",
    "image_size": "input resolution (px)",
    "frames": "clip length (frames)",
    "frame_stride": "frame stride",
    "infer_img_s": "inference throughput (img/s)",
    "train_img_s": "training throughput (img/s)",
    "latency_ms_p50": "latency p50 (ms)",
    "peak_mem_mb": "peak memory (MB)",
    "samples_seen": "samples seen (images)",
    "epochs": "epochs",
    "test_loss": "test loss (nats)",
    "train_loss": "training loss (nats)",
}


@dataclass
class PlotOutcome:
    kind: str
    paths: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # one line per figure not drawn, with why


# ----------------------------------------------------------------------------- colours, labels


def family_colour(family: str) -> str:
    """Fixed colour of a family; unknown names get a stable colour from their name."""
    if family in FAMILY_COLOURS:
        return FAMILY_COLOURS[family]
    return _EXTRA_COLOURS[sum(map(ord, family)) % len(_EXTRA_COLOURS)]


def shade(colour: str, i: int, n: int) -> str:
    """i-th of n shades of a colour, light (small model) to dark (large model)."""
    if n <= 1:
        return colour
    hue, base, sat = colorsys.rgb_to_hls(*mcolors.to_rgb(colour))
    light = np.linspace(min(0.78, base + 0.25), max(0.18, base - 0.2), n)[i]
    return mcolors.to_hex(colorsys.hls_to_rgb(hue, light, sat))


def axis_label(col: str) -> str:
    if col in AXIS_LABELS:
        return AXIS_LABELS[col]
    if is_accuracy(col):
        return f"{col.replace('_', ' ')} (%)"
    return col.replace("_", " ")


def error_label(col: str) -> str:
    return f"error, 1 − {col}" if is_accuracy(col) else axis_label(col)


def _family_order(families: list[str]) -> list[str]:
    rank = {f: i for i, f in enumerate(FAMILY_ORDER)}
    return sorted(set(families), key=lambda f: (rank.get(f, len(rank)), f))


def _new_figure(
    ncols: int = 1, nrows: int = 1, width: float = 6.4, height: float = 4.6, sharey: bool = False
) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    FigureCanvasAgg(fig)  # an Agg canvas of its own: text extents for label placement, no pyplot
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=sharey)
    return fig, axes


def _save(fig: Figure, out_dir: Path, name: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.svg"]
    fig.savefig(paths[0], dpi=DPI)
    fig.set_layout_engine("none")  # keep the layout just computed: the SVG saves ~30% faster
    fig.savefig(paths[1])
    return paths


def _log_axis(ax: Axes, which: str, values: np.ndarray) -> None:
    """Log scale with plain tick labels (1k, 10k) rather than 10^3 when the span is small."""
    axis = ax.xaxis if which == "x" else ax.yaxis
    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    span = np.nanmax(values) / np.nanmin(values) if len(values) else 1.0
    if span < 1e4:  # few decades: label 1-2-5 ticks, within one decade 1-1.5-2-3-5-7
        subs = (1.0, 1.5, 2.0, 3.0, 5.0, 7.0) if span < 12 else (1.0, 2.0, 5.0)
        axis.set_major_locator(LogLocator(base=10, subs=subs))
        axis.set_minor_formatter(NullFormatter())
    big = len(values) and np.nanmax(values) >= 1e12  # FLOPs: one notation for every tick
    axis.set_major_formatter(FuncFormatter(lambda v, _: _fmt_sci(v) if big else fmt_x(v)))


def _fmt_sci(v: float) -> str:
    mant, exp = f"{v:.1e}".split("e")
    m = float(mant)
    return f"{m:g}e{int(exp)}"


def _style() -> contextlib.AbstractContextManager:
    return sns.axes_style("whitegrid")


def lower_is_better(y: str) -> bool:
    """Losses and errors are minimised, accuracies and everything else maximised."""
    return not is_accuracy(y) and any(k in y.lower() for k in ("loss", "err"))


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
    if tune:
        from harness.analysis.tune import envelope

        env = envelope(df, tune)
        df = env.rows
        print("\n".join(env.lines()), file=sys.stderr)
    p = Path(path)
    out_dir = Path(out) if out else ResultsDir(p if p.is_dir() else p.parent).plots
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
    if kind == "pareto" and x is not None and x not in (cols := [c for c, _, _ in _PARETO_X]):
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
    families = _family_order(pts["_family"].tolist())
    by_model = pts.groupby("_family")["_group"].nunique().max() > 1
    panels = families if by_model else ["all"]
    ncols = min(len(panels), 2)
    nrows = math.ceil(len(panels) / ncols)
    fits = {f.group: f for f in fit.fits}
    with _style():
        width = 5.6 if len(panels) > 1 else 7.4  # one panel: room for the two-line title
        fig, axes = _new_figure(ncols, nrows, width=width, height=4.6, sharey=True)
        for ax, panel in zip(axes.flat, panels):
            sub = pts if panel == "all" else pts[pts["_family"] == panel]
            _draw_scaling_panel(ax, sub, fits, x)
            ax.set_title(panel if panel != "all" else "")
        for ax in list(axes.flat)[len(panels) :]:
            ax.set_visible(False)
        for ax in axes.flat:
            if ax.get_visible():
                _log_axis(ax, "x", pts[x].to_numpy())
                _log_axis(ax, "y", pts["_y"].to_numpy())
                # the axis follows the data, not a wide bootstrap band (which may run past error 1)
                ylo, yhi = float(pts["_y"].min()), float(pts["_y"].max())
                ax.set_ylim(ylo / 1.6, min(yhi * 1.6, 1.0) if is_accuracy(y) else yhi * 1.6)
                ax.set_xlabel(per_sample_label(axis_label(x), pts))
                ax.set_ylabel(error_label(y))
        what = error_label(y).split(",")[0].capitalize()
        extra = f", {view.note}" if view.note else ""
        if any(f.law is not None and len(f.law.boot) >= _MIN_BAND for f in fit.fits):
            how = r"lines: fit $E + A\,x^{-\alpha}$ with 95% bootstrap band"
        elif any(f.law is not None for f in fit.fits):
            how = r"lines: fit $E + A\,x^{-\alpha}$ (no band: too few trials to bootstrap)"
        else:
            how = f"no fit: a curve needs >= {MIN_DISTINCT_X} distinct {x} values"
        fig.suptitle(
            f"{what} vs {axis_label(x).split(' (')[0]}{extra}\n{how}; dots: trials; markers: seed means (bars: ± std over seeds)",
            fontsize=10.5,
        )
        out.paths = _save(fig, out_dir, f"scaling_{y}_vs_{x}")
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
    for fam in _family_order(pts["_family"].tolist()):
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


# ----------------------------------------------------------------------------- pareto

_MAX_LABELS = 30  # more points than this: label only the frontier, the rest is unreadable
_PARETO_X = (  # column, higher-is-better, file suffix
    ("fwd_gmacs", False, "gmacs"),
    ("train_flops", False, "compute"),
    ("infer_img_s", True, "throughput"),
)


def plot_pareto(df: pd.DataFrame, out_dir: Path, *, y: str = "test_acc", xs: list[str] | None = None) -> PlotOutcome:
    """Accuracy vs cost, one figure per cost axis, Pareto frontier drawn and points labelled.

    Points are models (seed means) at the largest data size, except for training compute,
    where every (model, data size) is a point: compute is spent on parameters *and* data.
    """
    out = PlotOutcome("pareto")
    require_columns(df, [y], key="plot pareto")
    for col, higher, suffix in _PARETO_X:
        if xs and col not in xs:
            continue
        if col not in df:
            out.skipped.append(f"pareto vs {col}: the results have no {col} column")
            continue
        pts, note = _pareto_points(df, col, y)
        if len(pts) < 2:
            out.skipped.append(f"pareto vs {col}: fewer than 2 models with finite {col} and {y}")
            continue
        with _style():
            fig, axes = _new_figure(width=7.2, height=5.2)
            front = _draw_pareto(axes[0, 0], pts, col, y, higher)
            label_all = len(pts) <= _MAX_LABELS
            which = "" if label_all else f"; {len(pts)} points, frontier labelled"
            fig.suptitle(f"Pareto frontier: {y} vs {axis_label(col).split(' (')[0]}\n({note}{which})", fontsize=11)
            shown = np.arange(len(pts)) if label_all else front
            # last: labels are placed in final display coordinates, after every layout change
            _place_labels(
                axes[0, 0],
                pts["_x"].to_numpy(float),
                pts["_y"].to_numpy(float),
                shown,
                pts["_label"].to_numpy()[shown].tolist(),
                [family_colour(f) for f in pts["_family"].to_numpy()[shown]],
            )
            out.paths += _save(fig, out_dir, f"pareto_{y}_vs_{suffix}")
    if xs and not out.paths and not out.skipped:
        out.skipped.append(f"pareto: --x must be one of {', '.join(c for c, _, _ in _PARETO_X)}")
    return out


def _pareto_points(df: pd.DataFrame, col: str, y: str) -> tuple[pd.DataFrame, str]:
    if col not in df:
        return pd.DataFrame(), ""
    d = df[df["status"] == "ok"].copy()
    d["_y"] = as_fraction(d[y])[0] * 100 if is_accuracy(y) else pd.to_numeric(d[y], errors="coerce")
    d["_x"] = pd.to_numeric(d[col], errors="coerce")
    d = d[np.isfinite(d["_y"]) & np.isfinite(d["_x"]) & (d["_x"] > 0)]
    keys = [c for c in ("family", "model") if c in d] or ["_none"]
    if "variant" in d:  # configurations apart, never averaged as seeds
        keys.append("variant")
    if "image_size" in d and d["image_size"].nunique() > 1:
        keys.append("image_size")
    if "frames" in d and d["frames"].nunique() > 1:
        keys.append("frames")
    note = "seed means"
    if col == "train_flops" and "data_size" in d:
        keys.append("data_size")
        note = "every model × data size, seed means"
    elif "data_size" in d and d["data_size"].nunique() > 1:
        top = d["data_size"].max()
        d = d[d["data_size"] == top]
        note = f"data_size={fmt_x(float(top))}, seed means"
    if d.empty:
        return d, note
    aggs = {"_x": ("_x", "median"), "_y": ("_y", "mean")}
    if "params" in d:
        aggs["_params"] = ("params", "median")
    pts = d.assign(_none="").groupby(keys, as_index=False).agg(**aggs)
    one_d = "data_size" in keys and d["data_size"].nunique() == 1  # the same D on every label says nothing
    pts["_label"] = pts.apply(lambda r: _point_label(r, [k for k in keys if not (one_d and k == "data_size")]), axis=1)
    pts["_family"] = pts["family"].astype(str) if "family" in pts else "all"
    return pts, note


def _point_label(row: pd.Series, keys: list[str]) -> str:
    model = str(row.get("model", ""))
    params = row.get("_params", math.nan)
    if "{" in model and "family" in row and pd.notna(params):  # a custom shape: its spec is a line long
        model = f"{row['family']} {fmt_count(float(params))}"
    parts = [model]
    if "image_size" in keys:
        parts.append(f"{row['image_size']}px")
    if "frames" in keys:
        parts.append(f"{row['frames']}f")
    if "data_size" in keys:
        parts.append(f"D={fmt_x(float(row['data_size']))}")
    if "variant" in keys:
        parts.append(f"[{row['variant']}]")
    return " ".join(p for p in parts if p)


def pareto_front(x: np.ndarray, y: np.ndarray, higher_x_better: bool, higher_y_better: bool = True) -> np.ndarray:
    """Indices of non-dominated points: walk from the best x, keep each strict y record.

    Ties in x are walked best y first, so a point that only matches another's cost but not
    its accuracy is dominated.
    """
    score = y if higher_y_better else -y
    order = np.lexsort((-score, -x if higher_x_better else x))
    best, front = -np.inf, []
    for i in order:
        if score[i] > best:
            front.append(i)
            best = score[i]
    return np.array(front, dtype=int)


def _draw_pareto(ax: Axes, pts: pd.DataFrame, col: str, y: str, higher: bool) -> np.ndarray:
    """Points by family, frontier as a staircase; returns the frontier's indices."""
    x, yv = pts["_x"].to_numpy(float), pts["_y"].to_numpy(float)
    front = pareto_front(x, yv, higher, not lower_is_better(y))
    f = front[np.argsort(x[front])]
    # Staircase of "best y reachable": for a cost (lower x better) a point's y holds to its
    # right; for a speed (higher x better) it holds to its left.
    ax.plot(
        x[f],
        yv[f],
        "-",
        color="#333333",
        lw=1.2,
        zorder=1,
        drawstyle="steps-pre" if higher else "steps-post",
        label="Pareto frontier",
    )
    for fam in _family_order(pts["_family"].tolist()):
        m = (pts["_family"] == fam).to_numpy()
        ax.scatter(x[m], yv[m], s=36, color=family_colour(fam), label=fam, zorder=2, edgecolors="white", linewidths=0.6)
    ax.scatter(x[front], yv[front], s=80, facecolors="none", edgecolors="#333333", lw=1.0, zorder=3)
    _log_axis(ax, "x", x)
    ax.set_xlabel(axis_label(col) + ("  → better" if higher else "  ← better"))
    ax.set_ylabel(axis_label(y))
    ax.legend(fontsize=8, loc="best")  # "best" avoids the points
    return front


def _label_offsets() -> list[tuple[float, float, str, str]]:
    """Candidate (dx, dy, ha, va) in points: 8 directions at 3 distances, nearest first."""
    out = []
    for r in (7.0, 18.0, 32.0):
        for deg in (45, -45, 135, -135, 90, -90, 0, 180):
            dx, dy = r * math.cos(math.radians(deg)), r * math.sin(math.radians(deg))
            ha = "left" if dx > 1 else "right" if dx < -1 else "center"
            va = "bottom" if dy > 1 else "top" if dy < -1 else "center"
            out.append((dx, dy, ha, va))
    return out


def _place_labels(ax: Axes, x: np.ndarray, y: np.ndarray, shown: np.ndarray, texts: list[str], colours: list[str]) -> None:
    """Label points `shown` without overlaps; the nearest free candidate position wins.

    Greedy search in display space; every point (labelled or not), earlier labels and the
    legend are obstacles. Far positions get a leader line. When no position is free the one
    with the fewest overlaps is used, so every labelled point stays identified. Labels are
    kept out of constrained layout, which would otherwise move the axes after placement.
    """
    renderer = ax.figure.canvas.get_renderer()
    ax.figure.draw_without_rendering()
    points = [_point_box(ax.transData.transform((xi, yi)), 5) for xi, yi in zip(x, y)]
    labels = [ax.get_legend().get_window_extent(renderer)] if ax.get_legend() is not None else []
    for i, text, colour in zip(shown, texts, colours):
        best: tuple[int, tuple] | None = None
        for cand in _label_offsets():
            box = _text_box(_annotate(ax, text, (x[i], y[i]), cand, colour), renderer, remove=True)
            if not _inside(ax, box, renderer):
                continue
            # covering text is far worse than covering a dot
            cost = 10 * sum(box.overlaps(b) for b in labels) + sum(box.overlaps(b) for b in points)
            if best is None or cost < best[0]:
                best = (cost, cand)
            if cost == 0:
                break
        t = _annotate(ax, text, (x[i], y[i]), best[1] if best else _label_offsets()[0], colour)
        labels.append(_text_box(t, renderer))


def _text_box(t: Annotation, renderer: object, remove: bool = False) -> Bbox:
    """The text's own extent (an annotation's includes its leader line), ~1 px air added."""
    t.update_positions(renderer)
    box = Text.get_window_extent(t, renderer).expanded(1.0, 1.15)
    if remove:
        t.remove()
    return box


def _annotate(ax: Axes, text: str, xy: tuple[float, float], cand: tuple[float, float, str, str], colour: str) -> Annotation:
    dx, dy, ha, va = cand
    far = math.hypot(dx, dy) > 10
    t = ax.annotate(
        text,
        xy,
        xytext=(dx, dy),
        textcoords="offset points",
        ha=ha,
        va=va,
        fontsize=7.5,
        color=colour,
        arrowprops={"arrowstyle": "-", "color": colour, "lw": 0.5, "shrinkA": 0, "shrinkB": 3} if far else None,
    )
    t.set_in_layout(False)
    return t


def _point_box(p: np.ndarray, r: float) -> Bbox:
    return Bbox([[p[0] - r, p[1] - r], [p[0] + r, p[1] + r]])


def _inside(ax: Axes, box: Bbox, renderer: object) -> bool:
    frame = ax.get_window_extent(renderer)
    return frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1


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
    with _style():
        fig, axes = _new_figure(len(cols), 1, width=5.8, height=4.4)
        for ax, col in zip(axes.flat, cols):
            _draw_cost(ax, d, col, x)
        handles, labels = axes.flat[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside right upper", fontsize=8, title="model")
        fig.suptitle(f"Cost vs {what} (per model; medians over trials)", fontsize=11)
        out.paths = _save(fig, out_dir, "cost_vs_resolution" if x == "image_size" else f"cost_vs_{x}")
    return out


def _draw_cost(ax: Axes, d: pd.DataFrame, col: str, x: str = "image_size") -> None:
    key = "model" if "model" in d else "family"
    if "variant" in d:  # one line per configuration
        d = d.assign(**{key: d[key].astype(str) + " [" + d["variant"].astype(str) + "]"})
    pts = d.assign(_v=pd.to_numeric(d[col], errors="coerce")).dropna(subset=["_v"])
    pts = pts.dropna(subset=[x]).groupby(["family", key, x], as_index=False).agg(_v=("_v", "median"), params=("params", "median"))
    for fam in _family_order(pts["family"].tolist()):
        sub = pts[pts["family"] == fam]
        models = sub.groupby(key)["params"].median().sort_values(kind="stable").index.tolist()
        for i, m in enumerate(models):
            g = sub[sub[key] == m].sort_values(x)
            ax.plot(g[x].astype(float), g["_v"], "-o", ms=4, color=shade(family_colour(fam), i, len(models)), label=str(m))
    if not pts.empty:
        _log_axis(ax, "x", pts[x].to_numpy(float))
        _log_axis(ax, "y", pts["_v"].to_numpy(float))
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
    with _style():
        fig, axes = _new_figure(ncols, nrows, width=4.2, height=3.4, sharey=True)
        for ax, panel in zip(axes.flat, panels):
            sub = c if panel is None else c[c["data_size"] == panel]
            _draw_curves(ax, sub, x, y)
            ax.set_title(f"data_size={fmt_x(float(panel))}" if panel is not None else "", fontsize=10)
            ax.set_xlabel(per_sample_label(axis_label(x), sub))
            ax.set_ylabel(axis_label(y) if ax.get_subplotspec().is_first_col() else "")
        for ax in list(axes.flat)[len(panels) :]:
            ax.set_visible(False)
        handles = [
            axes.flat[0].plot([], [], "-", color=family_colour(f), label=f)[0] for f in _family_order(c["family"].tolist())
        ]
        fig.legend(handles=handles, loc="outside right upper", fontsize=9, title="family")
        fig.suptitle(f"Learning curves: {y} vs {x}, one line per trial", fontsize=11)
        out.paths = _save(fig, out_dir, f"curves_{y}_vs_{x}")
    return out


def _draw_curves(ax: Axes, sub: pd.DataFrame, x: str, y: str) -> None:
    for (fam, _), g in sub.groupby(["family", "trial_id"], sort=False):
        g = g.sort_values(x)
        ax.plot(g[x], g[y], "-", color=family_colour(str(fam)), alpha=0.55, lw=1.0)
    xs = sub[x].to_numpy(float)
    if len(xs) and np.nanmin(xs) > 0 and np.nanmax(xs) / np.nanmin(xs) > 30:  # >1.5 decades
        _log_axis(ax, "x", xs)
    else:
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt_x(v) if v else "0"))
