"""Figures and the report section for compute-optimal allocation (harness/analysis/optimal.py).

- `plot_isoflop`: IsoFLOP profiles, the metric against N, one curve (fitted parabola in ln N) per
  compute budget, each minimum marked with its bootstrap 95% interval; one panel per group.
- `plot_n_opt`: N_opt against C, the joint fit's (approach 3) line with its bootstrap band, the
  IsoFLOP minima (approach 2) as measured points with their intervals, and the best trial of each
  budget; one panel per group.

Same conventions as plots.py: matplotlib's object API, seaborn's whitegrid style, PNG + SVG.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes

from harness.analysis.fmt import fmt_x
from harness.analysis.isoflops import IsoflopGroup, IsoflopReport, isoflop_results
from harness.analysis.laws import MIN_DISTINCT_X
from harness.analysis.optimal import (
    DEFAULT_COMPUTE,
    OptimalGroup,
    OptimalReport,
    n_opt_closed_form,
    optimal_results,
)
from harness.analysis.plot_style import (
    PlotOutcome,
    error_label,
    family_colour,
    family_order,
    figure_style,
    log_axis,
    new_figure,
    save_figure,
)
from harness.errors import StudyError

_MIN_BAND = 10  # bootstrap fits before a band means anything (as plots.py)


def _panels(groups: list[str]) -> tuple[list[str], int, int]:
    names = family_order(groups) if all(g != "all" for g in groups) else groups
    ncols = min(len(names), 2)
    return names, ncols, math.ceil(len(names) / ncols)


def _budget_colours(budgets: list[float]) -> dict[float, tuple]:
    """Light (small budget) to dark (large budget), one sequential palette for every panel."""
    pal = sns.color_palette("viridis_r", n_colors=max(len(budgets), 2) + 1)[1:]
    return {b: pal[i] for i, b in enumerate(sorted(budgets))}


def plot_isoflop(rep: IsoflopReport, out_dir: Path) -> PlotOutcome:
    out = PlotOutcome("isoflop")
    groups = [g for g in rep.groups if any(p.coef is not None for p in g.profiles)]
    if not groups:
        out.skipped.append(f"isoflop: no budget has >= {MIN_DISTINCT_X} model sizes")
        return out
    names, ncols, nrows = _panels([g.group for g in groups])
    by_name = {g.group: g for g in groups}
    colours = _budget_colours(sorted({p.budget for g in groups for p in g.profiles}))
    with figure_style():
        fig, axes = new_figure(ncols, nrows, width=5.8, height=4.4)  # own y range: families differ
        for ax, name in zip(axes.flat, names):
            g = by_name[name]
            fitted = [p for p in g.profiles if p.coef is not None]  # budgets with < 3 sizes are not profiles
            shown = g.points[g.points["_budget"].isin([p.budget for p in fitted])]
            for p in fitted:
                c = colours[p.budget]
                pts = shown[shown["_budget"] == p.budget]
                ax.scatter(pts["_n"], pts["_y"], s=18, color=c, alpha=0.8, linewidths=0, zorder=3)
                label = f"C = {p.budget:.3g}"
                lo, hi = p.n_range
                t = np.linspace(math.log(lo / 1.3), math.log(hi * 1.3), 100)
                ax.plot(np.exp(t), np.polyval(p.coef, t), "-" if math.isfinite(p.n_opt) else ":", color=c, lw=1.4)
                if math.isfinite(p.n_opt) and p.bracketed:
                    err = None
                    if p.n_opt_ci95:
                        err = [[p.n_opt - p.n_opt_ci95[0]], [p.n_opt_ci95[1] - p.n_opt]]
                    ax.errorbar(
                        [p.n_opt],
                        [p.metric_opt],
                        xerr=err,
                        fmt="*",
                        ms=12,
                        color=c,
                        mec="black",
                        mew=0.6,
                        capsize=3,
                        elinewidth=1,
                        zorder=4,
                    )
                    label += f": min {fmt_x(p.n_opt)}"
                elif math.isfinite(p.n_opt):
                    label += f": min {fmt_x(p.n_opt)} outside the sizes run"
                else:
                    label += ": not convex, no minimum"
                ax.plot([], [], "-" if math.isfinite(p.n_opt) else ":", marker="o", color=c, label=label, ms=4)
            log_axis(ax, "x", shown["_n"].to_numpy())
            ax.set_xlabel(f"model size N ({rep.x})")
            ax.set_ylabel(error_label(rep.y))
            ax.set_title(name if name != "all" else "")
            ax.legend(fontsize=7.5, frameon=True)
            ys = np.r_[shown["_y"].to_numpy(float), [p.metric_opt for p in fitted if p.bracketed]]
            ylo, yhi = float(np.nanmin(ys)), float(np.nanmax(ys))
            pad = 0.08 * (yhi - ylo or abs(yhi) or 1.0)
            ax.set_ylim(ylo - pad, yhi + pad)  # the data, not a parabola's extrapolated arms
        for ax in list(axes.flat)[len(names) :]:
            ax.set_visible(False)
        fig.suptitle(
            "IsoFLOP profiles (Chinchilla approach 2), one curve per training-compute budget\n"
            "lines: parabola in ln N (dotted: no minimum); stars: minima, 95% bootstrap interval",
            fontsize=10.5,
        )
        out.paths = save_figure(fig, out_dir, f"isoflop_{rep.y}")
    return out


def plot_n_opt(
    opt: OptimalReport, out_dir: Path, iso: IsoflopReport | None = None, points: pd.DataFrame | None = None
) -> PlotOutcome:
    """`points`: measured trials with columns _group, _c, _n, _y (the best per budget is marked)."""
    out = PlotOutcome("n_opt")
    groups = [g for g in opt.groups if g.allocations and g.fit.law is not None and g.compute_range]
    if not groups:
        out.skipped.append("n_opt: no group has a joint fit with a finite optimum")
        return out
    out.skipped += [
        f"n_opt: {g.fit.group} not drawn, no compute-optimal allocation (see the table's notes)"
        for g in opt.groups
        if g not in groups
    ]
    names, ncols, nrows = _panels([g.fit.group for g in groups])
    by_name = {g.fit.group: g for g in groups}
    iso_by = {g.group: g for g in iso.groups} if iso else {}
    with figure_style():
        fig, axes = new_figure(ncols, nrows, width=5.8 if len(names) > 1 else 7.4, height=4.4)
        for ax, name in zip(axes.flat, names):
            _draw_n_opt_panel(ax, opt, by_name[name], iso_by.get(name), points)
        for ax in list(axes.flat)[len(names) :]:
            ax.set_visible(False)
        fig.suptitle(
            "Compute-optimal model size N_opt(C): the joint fit E + A/N^α + B/D^β\n"
            "minimised under C = f(N)·D; diamonds: the budgets asked for",
            fontsize=10,
        )
        out.paths = save_figure(fig, out_dir, f"n_opt_{opt.y}")
    return out


def _draw_n_opt_panel(
    ax: Axes, opt: OptimalReport, g: OptimalGroup, ig: IsoflopGroup | None, points: pd.DataFrame | None
) -> None:
    """One group's N_opt(C): the joint fit with its band, the IsoFLOP minima, the trials, the budgets."""
    name = g.fit.group
    colour = family_colour(name)
    lo = g.compute_range[0]
    hi = max([g.compute_range[1], *(a.budget for a in g.allocations)])
    cs = np.geomspace(lo, hi, 60)
    law, fm = g.fit.law, g.flops_model
    ax.plot(
        cs,
        n_opt_closed_form(law.params, fm, cs),
        "-",
        color=colour,
        lw=1.8,
        label=f"joint fit (approach 3): a = {g.allocations[0].a:.2f}",
    )
    if len(law.boot) >= _MIN_BAND:
        band = np.array([n_opt_closed_form(p, fm, cs) for p in law.boot if p["alpha"] > 0 and p["beta"] > 0])
        ax.fill_between(
            cs,
            np.nanpercentile(band, 2.5, axis=0),
            np.nanpercentile(band, 97.5, axis=0),
            color=colour,
            alpha=0.18,
            lw=0,
            label="95% bootstrap band",
        )
    ax.axvspan(g.compute_range[1], hi, color="0.85", alpha=0.5, lw=0, label="beyond the largest run") if hi > g.compute_range[
        1
    ] * 1.01 else None
    if ig is not None:
        _draw_isoflop_minima(ax, ig)
    if points is not None:
        _draw_trials(ax, points[points["_group"] == name], ig, colour)
    for a in g.allocations:
        ax.plot([a.budget], [a.n_opt], "D", color=colour, mec="black", mew=0.6, ms=6)
    log_axis(ax, "x", cs)
    log_axis(ax, "y", np.array([g.fit.x_range[0] / 10, g.fit.x_range[1] * 10]))
    ax.set_xlabel(
        "training compute C ("
        + ("6ND FLOPs" if opt.flops == "6N" else opt.compute + (", MACs" if opt.compute == DEFAULT_COMPUTE else ""))
        + ")"
    )
    ax.set_ylabel(f"compute-optimal N ({opt.x[0]})")
    ax.set_title(name if name != "all" else "")
    ax.legend(fontsize=7.5, frameon=True, loc="upper left")


def _draw_isoflop_minima(ax: Axes, ig: IsoflopGroup) -> None:
    pr = [p for p in ig.profiles if p.bracketed]
    if pr:
        lo_hi = np.array([p.n_opt_ci95 or (p.n_opt, p.n_opt) for p in pr])
        n = np.array([p.n_opt for p in pr])
        ax.errorbar(
            [p.budget for p in pr],
            n,
            yerr=[n - lo_hi[:, 0], lo_hi[:, 1] - n],
            fmt="s",
            color="black",
            ms=6,
            capsize=3,
            lw=1,
            label="IsoFLOP minima (approach 2)" + (f": a = {ig.a:.2f}" if math.isfinite(ig.a) else ""),
        )


def _draw_trials(ax: Axes, sub: pd.DataFrame, ig: IsoflopGroup | None, colour: str) -> None:
    """The group's trials in grey, the best trial of each profiled budget ringed."""
    if len(sub):
        ax.scatter(sub["_c"], sub["_n"], s=10, color="0.55", alpha=0.6, lw=0, label="trials")
        profiled = [p.budget for p in (ig.profiles if ig else []) if p.coef is not None]
        sub = sub[sub["_budget"].isin(profiled)]  # a 'best' of one or two sizes says nothing
        best = sub.loc[sub.groupby("_budget")["_y"].idxmin()]
        ax.scatter(best["_c"], best["_n"], s=40, facecolor="none", edgecolor=colour, lw=1.3, label="best trial per budget")


def measured_points(iso: IsoflopReport | None) -> pd.DataFrame:
    """The trials behind the figure: group, compute, N, metric and budget."""
    rows = []
    for g in iso.groups if iso else []:
        rows.append(g.points.assign(_group=g.group))
    return pd.concat(rows) if rows else pd.DataFrame(columns=["_group", "_c", "_n", "_y", "_budget"])


# ----------------------------------------------------------------------------- report section


def report_section(doc: object, df: pd.DataFrame, y: str | None, out: Path, bootstrap: int) -> None:
    """'Compute-optimal allocation' in `harness report`, when the rows allow it: per family >= 3
    model sizes and >= 3 sample counts (the joint fit), and the counted compute column."""
    doc.h(2, "Compute-optimal allocation")
    why = _cannot(df, y)
    if why:
        doc.p(f"Not computed: {why}.")
        return
    by = "family" if "family" in df else None
    try:
        iso = isoflop_results(df, y=y, by=by, bootstrap=bootstrap)
        budgets = sorted({p.budget for g in iso.groups for p in g.profiles if p.coef is not None})
        top = float(pd.to_numeric(df.loc[df["status"] == "ok", DEFAULT_COMPUTE], errors="coerce").max())
        opt = optimal_results(df, (budgets or [top]) + [10 * top], y=y, by=by, bootstrap=bootstrap)
    except StudyError as e:  # the report runs after every study: say why, never fail it
        doc.p(f"Not computed: {e.what}.")
        return
    doc.p(
        f"Approach 3: `{opt.target} = E + A·N^-alpha + B·D^-beta` (N = params, D = samples seen) per "
        f"{by or 'study'}, minimised under C = f(N)·D with f the counted training compute per sample "
        f"(a power law in N fitted to the rows); C in {DEFAULT_COMPUTE} units (MACs). Budgets: the trials' "
        f"compute clusters and 10x the largest run (extrapolated)."
    )
    from harness.analysis.tables import Table

    rows = []
    for g in opt.groups:
        for a in g.allocations:
            ci = lambda t: f" [{fmt_x(t[0])}, {fmt_x(t[1])}]" if t else ""
            rows.append(
                [
                    a.group,
                    f"{a.budget:.3g}",
                    fmt_x(a.n_opt) + ci(a.n_opt_ci95),
                    fmt_x(a.d_opt) + ci(a.d_opt_ci95),
                    f"{a.metric_opt:.4g}",
                    f"{a.a:.2f}" + (f" [{a.a_ci95[0]:.2f}, {a.a_ci95[1]:.2f}]" if a.a_ci95 else ""),
                    a.note or "—",
                ]
            )
        if not g.allocations:
            rows.append([g.fit.group, "—", "—", "—", "—", "—", "; ".join(g.notes + g.fit.notes) or "not fitted"])
    doc.table(
        Table(
            "optimal",
            ["group", "budget C", "N_opt", "D_opt", opt.target, "a", "note"],
            rows,
            ["l", "r", "r", "r", "r", "r", "l"],
            pd.DataFrame(),
        )
    )
    if budgets:
        doc.p("Approach 2 (IsoFLOP profiles) against approach 3, per group:")
        doc.ul([f"{g.group}: {g.verdict}" for g in iso.groups])
        _figure(doc, plot_isoflop(iso, out), "IsoFLOP profiles")
    _figure(
        doc, plot_n_opt(opt, out, iso if budgets else None, measured_points(iso) if budgets else None), "compute-optimal N vs C"
    )


def _figure(doc: object, outcome: PlotOutcome, alt: str) -> None:
    for p in outcome.paths:
        if p.suffix == ".png":
            doc.img(p.name, alt)
    for why in outcome.skipped:
        doc.p(f"Figure skipped: {why}.")


def _cannot(df: pd.DataFrame, y: str | None) -> str:
    if y is None:
        return "no quality column"
    need = ["params", "samples_seen", DEFAULT_COMPUTE]
    missing = [c for c in need if c not in df]
    if missing:
        return f"the results have no {', '.join(missing)} column"
    ok = df[df["status"] == "ok"]
    key = ok["family"].astype(str) if "family" in ok else pd.Series("all", index=ok.index)
    n = ok.groupby(key)[["params", "samples_seen"]].nunique()
    if n.empty or not ((n["params"] >= MIN_DISTINCT_X) & (n["samples_seen"] >= MIN_DISTINCT_X)).any():
        return (
            f"the joint fit needs >= {MIN_DISTINCT_X} model sizes and >= {MIN_DISTINCT_X} sample counts "
            f"(samples_seen) in a family; a fixed train.steps gives every trial the same samples"
        )
    return ""
