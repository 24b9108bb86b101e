"""Pareto figures: accuracy vs cost, the frontier drawn and points labelled without overlaps."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.text import Annotation, Text
from matplotlib.transforms import Bbox

from harness.analysis.fmt import fmt_x
from harness.analysis.io import as_fraction, is_accuracy, require_columns
from harness.analysis.plot_style import (
    PlotOutcome,
    axis_label,
    family_colour,
    family_order,
    figure_style,
    log_axis,
    lower_is_better,
    new_figure,
    save_figure,
)
from harness.analysis.tables import fmt_count

# ----------------------------------------------------------------------------- pareto

_MAX_LABELS = 30  # more points than this: label only the frontier, the rest is unreadable
PARETO_X = (  # column, higher-is-better, file suffix
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
    for col, higher, suffix in PARETO_X:
        if xs and col not in xs:
            continue
        if col not in df:
            out.skipped.append(f"pareto vs {col}: the results have no {col} column")
            continue
        pts, note = _pareto_points(df, col, y)
        if len(pts) < 2:
            out.skipped.append(f"pareto vs {col}: fewer than 2 models with finite {col} and {y}")
            continue
        with figure_style():
            fig, axes = new_figure(width=7.2, height=5.2)
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
            out.paths += save_figure(fig, out_dir, f"pareto_{y}_vs_{suffix}")
    if xs and not out.paths and not out.skipped:
        out.skipped.append(f"pareto: --x must be one of {', '.join(c for c, _, _ in PARETO_X)}")
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
    for fam in family_order(pts["_family"].tolist()):
        m = (pts["_family"] == fam).to_numpy()
        ax.scatter(x[m], yv[m], s=36, color=family_colour(fam), label=fam, zorder=2, edgecolors="white", linewidths=0.6)
    ax.scatter(x[front], yv[front], s=80, facecolors="none", edgecolors="#333333", lw=1.0, zorder=3)
    log_axis(ax, "x", x)
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
