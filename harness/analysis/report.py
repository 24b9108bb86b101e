"""The study report: RESULTS/report/index.md and index.html, with its figures beside them.

One document structure (`Doc`, a list of blocks) renders to both Markdown and HTML, so the
two never drift apart and no Markdown library is needed. `write_report` runs after every
study (`harness run` calls it), so every section copes with small or odd results: a section
that cannot be computed says why instead of failing the run.
"""

from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from harness.analysis.fit_records import FitReport, GroupFit
from harness.analysis.fits import fit_results, fit_view
from harness.analysis.fmt import fmt_x
from harness.analysis.io import is_accuracy, load_results
from harness.analysis.laws import MIN_DISTINCT_X, derived, on_bound
from harness.analysis.pareto_plots import plot_pareto
from harness.analysis.plot_style import PlotOutcome
from harness.analysis.plots import plot_cost, plot_curves, plot_scaling
from harness.analysis.tables import Table, build_table, fmt_sig, short_reason, to_markdown
from harness.errors import StudyError
from harness.store import ResultsDir
from harness.version import __version__

LOSS = "test_loss"  # fitted beside the error wherever both exist
REPORT_BOOTSTRAP = 200  # resamples per curve, as fit and plot (lawfit.DEFAULT_BOOTSTRAP): one default across the verbs
PROVENANCE_COLUMNS = (
    "study",
    "device",
    "dtype",
    "torch_version",
    "timm_version",
    "harness_version",
    "git_sha",
    "host",
    "study_hash",
    "schema_version",
)


# ----------------------------------------------------------------------------- document model


@dataclass
class Block:
    kind: str  # h1 h2 h3 p ul table img
    text: str = ""
    items: list[str] = field(default_factory=list)
    table: Table | None = None


@dataclass
class Doc:
    blocks: list[Block] = field(default_factory=list)

    def h(self, level: int, text: str) -> None:
        self.blocks.append(Block(f"h{level}", text))

    def p(self, text: str) -> None:
        self.blocks.append(Block("p", text))

    def ul(self, items: list[str]) -> None:
        if items:
            self.blocks.append(Block("ul", items=list(items)))

    def table(self, table: Table) -> None:
        self.blocks.append(Block("table", table=table))

    def img(self, src: str, alt: str) -> None:
        self.blocks.append(Block("img", text=alt, items=[src]))


def to_md(doc: Doc) -> str:
    out: list[str] = []
    for b in doc.blocks:
        if b.kind.startswith("h"):
            out.append("#" * int(b.kind[1]) + " " + b.text)
        elif b.kind == "p":
            out.append(b.text)
        elif b.kind == "ul":
            out.append("\n".join(f"- {i}" for i in b.items))
        elif b.kind == "table":
            out.append(to_markdown(b.table, title=False).rstrip())
        elif b.kind == "img":
            out.append(f"![{b.text}]({b.items[0]})")
        out.append("")
    return "\n".join(out)


_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}table{border-collapse:collapse;margin:.5em 0 1em;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em}th{background:#f3f3f3}td.r,th.r{text-align:right}
img{max-width:100%;border:1px solid #eee;margin:.5em 0}code{background:#f4f4f4;padding:0 .2em}
em{color:#555}"""


def _inline(text: str) -> str:
    """Escape, then `code` and **bold**: the only inline Markdown the report emits."""
    t = html.escape(text, quote=False)
    t = re.sub(r"`([^`]+)`", r"<code>\1</code>", t)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", t)


def _html_table(t: Table) -> str:
    cls = [' class="r"' if a == "r" else "" for a in t.align]
    head = "".join(f"<th{c}>{html.escape(h)}</th>" for h, c in zip(t.columns, cls))
    rows = "".join("<tr>" + "".join(f"<td{c}>{html.escape(v)}</td>" for v, c in zip(r, cls)) + "</tr>" for r in t.rows)
    notes = "".join(f"<p><em>{html.escape(n)}</em></p>" for n in t.notes)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>{notes}"


def to_html(doc: Doc, title: str) -> str:
    body: list[str] = []
    for b in doc.blocks:
        if b.kind.startswith("h"):
            body.append(f"<{b.kind}>{_inline(b.text)}</{b.kind}>")
        elif b.kind == "p":
            body.append(f"<p>{_inline(b.text)}</p>")
        elif b.kind == "ul":
            body.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in b.items) + "</ul>")
        elif b.kind == "table":
            body.append(_html_table(b.table))
        elif b.kind == "img":
            src = html.escape(b.items[0], quote=True)
            body.append(f'<p><a href="{src}"><img src="{src}" alt="{html.escape(b.text)}"></a></p>')
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


# ----------------------------------------------------------------------------- entry point


def write_report(
    results_dir: str | Path, *, bootstrap: int = REPORT_BOOTSTRAP, include_all: bool = False, out: str | Path | None = None
) -> Path:
    """Write OUT/index.md (+ index.html and figures; OUT default RESULTS/report); returns the index.md path."""
    root = Path(results_dir)
    df, curves = load_results(root, include_all=include_all)
    out = Path(out) if out else ResultsDir(root if root.is_dir() else root.parent).report
    out.mkdir(parents=True, exist_ok=True)
    doc = build_report(df, curves, out, bootstrap=bootstrap, source=str(root))
    title = doc.blocks[0].text if doc.blocks else "harness report"
    md = out / "index.md"
    md.write_text(to_md(doc), encoding="utf-8")
    (out / "index.html").write_text(to_html(doc, title), encoding="utf-8")
    return md


def build_report(df: pd.DataFrame, curves: pd.DataFrame, out: Path, *, bootstrap: int, source: str) -> Doc:
    doc = Doc()
    studies = ", ".join(sorted(df["study"].astype(str).unique())) if "study" in df else Path(source).name
    n_ok = int((df["status"] == "ok").sum())
    doc.h(1, f"Results: {studies}")
    doc.p(
        f"{len(df)} trials ({n_ok} ok, {len(df) - n_ok} failed) from `{source}`; "
        f"report by harness {__version__}. Intervals are 95% percentile bootstrap intervals "
        f"over trials ({bootstrap} resamples); lower error is better."
    )
    y = _quality_column(df)
    _table_section(doc, df)
    _probe_section(doc, df)
    _data_section(doc, df, y, out, bootstrap)
    _model_section(doc, df, y, out, bootstrap)
    _optimal_section(doc, df, y, out, bootstrap)
    _plots_section(doc, df, curves, y, out)
    _provenance_section(doc, df)
    return doc


def _quality_column(df: pd.DataFrame) -> str | None:
    """test_acc when any ok trial has it, else best_test_acc, else test_loss."""
    ok = df[df["status"] == "ok"]
    for col in ("test_acc", "best_test_acc", "test_loss"):
        if col in ok and pd.to_numeric(ok[col], errors="coerce").notna().any():
            return col
    return None


# ----------------------------------------------------------------------------- sections


def _table_section(doc: Doc, df: pd.DataFrame) -> None:
    doc.h(2, "Comparison")
    try:
        value = "test_acc" if "test_acc" in df else _quality_column(df) or "test_acc"
        table = build_table(df, value=value)
    except StudyError as exc:
        doc.p(f"Not computed: {exc.what}.")
        return
    doc.p(f"Cells: {table.title}; one row per model, one column per data size.")
    doc.table(table)


PROBE_COLUMNS = ("probe_acc", "fewshot_1_acc", "fewshot_5_acc", "fewshot_10_acc", "fewshot_25_acc")


def _probe_section(doc: Doc, df: pd.DataFrame) -> None:
    """The eval: section's probes (harness/evals.py), one table each, when any ok row has them."""
    ok = df[df["status"] == "ok"]
    cols = [c for c in PROBE_COLUMNS if c in ok and pd.to_numeric(ok[c], errors="coerce").notna().any()]
    if not cols:
        return
    doc.h(2, "Probes of the frozen backbone")
    doc.p(
        "Accuracy of fits on the backbone's pooled features, the classifier head left out (the study's `eval:` "
        "section): a linear probe fitted on the trial's training subset, few-shot ridge regression on k images "
        "per class; both scored on the test split. A self-supervised or untrained backbone has only these."
    )
    for col in cols:
        try:
            table = build_table(df, value=col)
        except StudyError as exc:
            doc.p(f"{col}: not computed: {exc.what}.")
            continue
        doc.p(f"Cells: {table.title}.")
        doc.table(table)


def _data_section(doc: Doc, df: pd.DataFrame, y: str | None, out: Path, bootstrap: int) -> None:
    doc.h(2, "Scaling with data size")
    why = _cannot_fit(df, y, "data_size")
    if why:
        doc.p(f"Not computed: {why}.")
        return
    n_d = _ok_distinct(df, "data_size")
    holdout = 2 if n_d >= 6 else 1 if n_d >= 4 else 0  # keep >= 3 sizes to fit (+1 held out)
    report, view = fit_view(df, y, "data_size", holdout=holdout, bootstrap=bootstrap)
    doc.p(
        _fit_intro(report, "data_size", view.note)
        + ("" if holdout else f" No holdout check: needs >= 4 distinct data sizes, results have {n_d}.")
    )
    _fit_tables(doc, report)
    _crossovers(
        doc, report, "comparable models (other family, same resolution, params within 2x)" if view.per_model else "families"
    )
    _figure(doc, plot_scaling(df, out, x="data_size", y=y, fitted=(report, view)), f"{_target(y)} vs data size")
    _loss_fit(doc, df, y, "data_size", bootstrap)


def _model_section(doc: Doc, df: pd.DataFrame, y: str | None, out: Path, bootstrap: int) -> None:
    doc.h(2, "Scaling with model size")
    why = _cannot_fit(df, y, "params")
    if why:
        doc.p(f"Not computed: {why}.")
        return
    ok = df[df["status"] == "ok"]
    sizes = ok.groupby("family")["params"].nunique() if "family" in df else pd.Series(dtype=int)
    if sizes.empty or sizes.max() < MIN_DISTINCT_X:
        most = int(sizes.max()) if not sizes.empty else 0
        doc.p(f"Not computed: needs >= {MIN_DISTINCT_X} model sizes in a family, the most any family has is {most}.")
        return
    report, view = fit_view(df, y, "params", bootstrap=bootstrap)
    doc.p(_fit_intro(report, "params", view.note))
    _fit_tables(doc, report)
    _crossovers(doc, report, "families")
    _figure(doc, plot_scaling(df, out, x="params", y=y, fitted=(report, view)), f"{_target(y)} vs parameters")
    _loss_fit(doc, df, y, "params", bootstrap)
    _joint_fit(doc, df, y, bootstrap)


def _loss_fit(doc: Doc, df: pd.DataFrame, y: str, x: str, bootstrap: int) -> None:
    """The same curves fitted on test_loss when the error was fitted and the rows also have a loss
    (issue 23: Chinchilla-style laws are on loss; an error saturates at chance)."""
    ok = df[df["status"] == "ok"]
    if y == LOSS or LOSS not in ok or not pd.to_numeric(ok[LOSS], errors="coerce").notna().any() or _cannot_fit(df, LOSS, x):
        return
    doc.h(3, f"{LOSS} vs {x}")
    report, view = fit_view(df, LOSS, x, bootstrap=bootstrap)
    doc.p(_fit_intro(report, x, view.note))
    _fit_tables(doc, report)


def _joint_fit(doc: Doc, df: pd.DataFrame, y: str, bootstrap: int) -> None:
    """Chinchilla-style E + A·N^-alpha + B·D^-beta per family when both axes vary enough."""
    doc.h(3, "Joint fit over parameters and data size")
    if _ok_distinct(df, "data_size") < MIN_DISTINCT_X:
        doc.p(f"Not computed: needs >= {MIN_DISTINCT_X} distinct data sizes.")
        return
    report = fit_results(df, y, ["params", "data_size"], by="family", bootstrap=bootstrap)
    doc.p(
        f"`{report.target} = E + A·N^-alpha + B·D^-beta` per family (N = params, "
        f"D = data_size); a = beta/(alpha+beta) is the share of extra compute that should go "
        f"to model size (Hoffmann et al. 2022)."
    )
    _fit_tables(doc, report)


def _optimal_section(doc: Doc, df: pd.DataFrame, y: str | None, out: Path, bootstrap: int) -> None:
    """Compute-optimal N and D per budget, IsoFLOP profiles (harness/analysis/optimal_plots.py)."""
    from harness.analysis.optimal_plots import report_section

    report_section(doc, df, y, out, bootstrap)


def _plots_section(doc: Doc, df: pd.DataFrame, curves: pd.DataFrame, y: str | None, out: Path) -> None:
    doc.h(2, "Cost and efficiency")
    if y is None:
        doc.p("Pareto plots not drawn: no ok trial has a quality column (test_acc, best_test_acc, test_loss).")
    else:
        _figure(doc, plot_pareto(df, out, y=y), "Pareto frontier")
    _figure(doc, plot_cost(df, out), "cost vs resolution")
    if "frames" in df and df["frames"].nunique() > 1:  # video: cost vs clip length too
        _figure(doc, plot_cost(df, out, x="frames"), "cost vs clip length")
    doc.h(2, "Learning curves")
    _figure(doc, plot_curves(df, curves, out), "learning curves")


def _provenance_section(doc: Doc, df: pd.DataFrame) -> None:
    doc.h(2, "Provenance")
    items = []
    for col in PROVENANCE_COLUMNS:
        if col in df:
            counts = df[col].astype(str).replace("", "(empty)").value_counts()
            items.append(f"{col}: " + ", ".join(f"`{v}` ({n})" for v, n in counts.items()))
    if "started_at" in df and df["started_at"].notna().any():
        started = df["started_at"].dropna().astype(str)
        items.append(f"started: {started.min()} to {started.max()}")
    if "duration_s" in df:
        total = pd.to_numeric(df["duration_s"], errors="coerce").sum()
        items.append(f"total trial time: {total / 3600:.2f} h ({total:.0f} s)")
    n_ok, n_pruned = int((df["status"] == "ok").sum()), int((df["status"] == "pruned").sum())
    cut = f", {n_pruned} pruned by successive halving" if n_pruned else ""
    items.append(f"trials: {n_ok} ok, {len(df) - n_ok - n_pruned} failed{cut}")
    doc.ul(items)
    _failures(doc, df)


def _failures(doc: Doc, df: pd.DataFrame) -> None:
    failed = df[~df["status"].isin(["ok", "pruned"])]
    if failed.empty:
        doc.p("No trial failed.")
        return
    doc.h(3, "Failures")
    rows = []
    for reason, g in failed.groupby(failed["error"].astype(str).map(lambda e: short_reason(e, 80))):
        which = ", ".join(_trial_name(r) for _, r in g.head(6).iterrows())
        rows.append([reason, str(len(g)), which + (", …" if len(g) > 6 else "")])
    rows.sort(key=lambda r: -int(r[1]))
    doc.table(Table("failures", ["reason", "trials", "which"], rows, ["l", "r", "l"], pd.DataFrame()))


def _trial_name(r: pd.Series) -> str:
    parts = [str(r.get("model", r.get("trial_id", "?")))]
    if "data_size" in r and pd.notna(r["data_size"]):
        parts.append(f"D={fmt_x(float(r['data_size']))}")
    if "image_size" in r and pd.notna(r["image_size"]):
        parts.append(f"{int(r['image_size'])}px")
    if "seed" in r and pd.notna(r["seed"]):
        parts.append(f"seed {int(r['seed'])}")
    return " ".join(parts)


# ----------------------------------------------------------------------------- fit helpers


def _ok_distinct(df: pd.DataFrame, col: str) -> int:
    return int(df.loc[df["status"] == "ok", col].nunique()) if col in df else 0


def _cannot_fit(df: pd.DataFrame, y: str | None, x: str) -> str:
    """Why y-vs-x fits are impossible here, or '' when they can be tried."""
    if y is None:
        return "no ok trial has a quality column (test_acc, best_test_acc or test_loss)"
    if x not in df:
        return f"the results have no {x} column"
    n = _ok_distinct(df, x)
    if n < MIN_DISTINCT_X:
        return f"a fit of E + A·{x}^-alpha needs >= {MIN_DISTINCT_X} distinct {x} values among ok trials, results have {n}"
    return ""


def _target(y: str) -> str:
    return f"error (1 − {y})" if is_accuracy(y) else y


def _fit_intro(report: FitReport, x: str, note: str) -> str:
    dropped = ", ".join(f"{v} {k}" for k, v in report.dropped.items())
    used = report.n_rows - sum(report.dropped.values())
    text = (
        f"`{report.target} = E + A·{x}^-alpha`, fitted per curve"
        + (f", {note}," if note else "")
        + f" on {used} trials"
        + (f" (dropped: {dropped})" if dropped else "")
        + "."
    )
    return " ".join([text, *(f"Note: {n}." for n in report.notes)])


def _fmt_param(v: float) -> str:
    """3 significant figures (scientific past 1e6); E pinned at its lower bound (e^-25) is a pure power law: ~0."""
    if 0 <= v < 1e-6:
        return "~0"
    return f"{v:.3g}" if math.isfinite(v) and abs(v) >= 1e6 else fmt_sig(v)


def _fmt_ci(f: GroupFit, name: str) -> str:
    v = (f.law.params | derived(f.law.params)).get(name, math.nan)
    ci = f.law.ci95.get(name)
    bound = " (bound)" if name in ("alpha", "beta") and on_bound(v) else ""  # not measured: see the notes
    return _fmt_param(v) + bound + (f" [{_fmt_param(ci[0])}, {_fmt_param(ci[1])}]" if ci else "")


def _fit_tables(doc: Doc, report: FitReport) -> None:
    two = len(report.x) == 2
    names = ["E", "A", "alpha", "B", "beta", "a"] if two else ["E", "A", "alpha"]
    has_holdout = any(f.holdout for f in report.fits)
    cols = ["curve", "n", *names, "rmse(log)"]
    cols += ["held out", "holdout log-RMSE", "worst rel. error"] if has_holdout else []
    rows, notes = [], []
    for f in report.fits:
        if f.law is None:
            rows.append([f.group, str(f.n), *(["—"] * (len(cols) - 2))])
        else:
            row = [f.group, str(f.n), *(_fmt_ci(f, n) for n in names), f"{f.law.rmse_log:.3f}"]
            if has_holdout:
                row += _holdout_cells(f)
            rows.append(row)
        notes += [f"{f.group}: warning [{w['code']}]: {w['message']}" for w in f.warnings]
        notes += [f"{f.group}: {n}" for n in f.notes]
    align = ["l"] + ["r"] * (len(cols) - 1)
    doc.table(Table("fits", cols, rows, align, pd.DataFrame()))
    doc.ul(notes)


def _holdout_cells(f: GroupFit) -> list[str]:
    h = f.holdout
    if not h:
        return ["—", "—", "—"]
    held = ", ".join(fmt_x(v) for v in h["held_out_x"])
    return [held, f"{h['log_rmse']:.3f}", f"{h['max_rel_error']:.1%}"]


def _crossovers(doc: Doc, report: FitReport, among: str) -> None:
    if len([f for f in report.fits if f.law]) < 2:
        return
    if not report.crossovers:
        doc.p(f"Crossovers: no pair of {among} to compare.")
        return
    doc.p(f"Crossovers between {among}; fitted curves, searched within 2x of the data range:")
    doc.ul([c.text() for c in report.crossovers])


def _figure(doc: Doc, outcome: PlotOutcome, alt: str) -> None:
    for p in outcome.paths:
        if p.suffix == ".png":
            doc.img(p.name, alt)
    for why in outcome.skipped:
        doc.p(f"Figure skipped: {why}.")
