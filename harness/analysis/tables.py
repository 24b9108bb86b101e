"""Comparison tables: one row per model, one column per data size (or any pivot).

`build_table` turns trial rows into a `Table` (display strings plus a machine-readable
frame); `render` writes it as Markdown, LaTeX (booktabs) or CSV. Cells aggregate seeds as
"mean ± std (n)"; a cell whose trials all failed says `failed: <reason>` instead of going
blank, so a missing number is never mistaken for "not run".
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import sys
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from harness.analysis.io import as_fraction, is_accuracy, load_results, require_columns
from harness.errors import StudyError

# Fixed family order so tables, plots and reports list families the same way.
FAMILY_ORDER = ("resnet", "vit", "mixer", "convnext", "swin", "linear", "mlp", "r3d", "r2plus1d", "vivit", "vivit_fact")
# Per-model attributes shown next to the row keys: (column, header, kind).
MODEL_ATTRS = (
    ("params", "params", "count"),
    ("fwd_gmacs", "GMACs", "sig"),
    ("infer_img_s", "infer img/s", "sig"),
    ("train_img_s", "train img/s", "sig"),
)
INPUT_AXES = ("image_size", "frames", "frame_stride")  # input-shape columns: GMACs and img/s change along them
NOT_RUN = "—"  # no trial exists for this cell (distinct from failed)
FORMATS = ("md", "latex", "csv")
AGGS = ("mean", "max")
_REASON_WIDTH = 32  # characters of a failure reason kept in a cell (~ a column width)
_ERROR_ALIASES = {"OutOfMemoryError": "OOM"}  # torch.cuda.OutOfMemoryError et al.


# ----------------------------------------------------------------------------- numbers


def fmt_sig(v: float, sig: int = 3) -> str:
    """3 significant figures without scientific notation: 0.0123, 4.41, 17.6, 1,234."""
    if v is None or not math.isfinite(v):
        return NOT_RUN
    if v == 0:
        return "0"
    decimals = max(0, sig - 1 - math.floor(math.log10(abs(v))))
    return f"{v:,.{decimals}f}"


def fmt_count(v: float) -> str:
    """Parameter-style counts: 950, 11.7k, 1.2M, 86.6M, 1.35B (3 significant figures)."""
    if v is None or not math.isfinite(v):
        return NOT_RUN
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= scale:
            text = f"{v / scale:.3g}"
            return text + suffix
    return f"{v:.0f}"


def short_reason(error: str, width: int = _REASON_WIDTH) -> str:
    """'OutOfMemoryError: CUDA out of memory. Tried…' -> 'OOM: CUDA out of memory. Tried…'."""
    kind, _, msg = (error or "unknown error").partition(":")
    kind = kind.strip().split(".")[-1]  # torch.cuda.OutOfMemoryError -> OutOfMemoryError
    kind = _ERROR_ALIASES.get(kind, kind)
    text = f"{kind}: {' '.join(msg.split())}" if msg.strip() else kind
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"


# ----------------------------------------------------------------------------- the table


@dataclass
class Table:
    """Display cells (`rows`, strings) and the same content as numbers (`frame`, for CSV)."""

    title: str
    columns: list[str]
    rows: list[list[str]]
    align: list[str]  # "l" or "r" per column
    frame: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    tune_notes: list[str] = field(default_factory=list)  # which swept value won where (also in notes)

    def to_dict(self) -> dict:
        """The table as JSON-ready data: headers, display cells, notes and the numbers (one record per row)."""
        records = json.loads(self.frame.to_json(orient="records"))  # NaN -> null, numpy -> Python
        return {"title": self.title, "columns": self.columns, "rows": self.rows, "notes": self.notes, "records": records}

    def _repr_markdown_(self) -> str:  # a notebook shows the table as `harness table` prints it
        return to_markdown(self)

    def __str__(self) -> str:
        return to_markdown(self)


@dataclass(frozen=True)
class _ValueSpec:
    column: str
    agg: str
    percent: bool  # accuracy shown as % with one decimal

    def fmt(self, v: float) -> str:
        return f"{100 * v:.1f}" if self.percent else fmt_sig(v)

    def label(self) -> str:
        unit = " (%)" if self.percent else ""
        how = "mean ± std (n seeds)" if self.agg == "mean" else "max over seeds"
        return f"{self.column}{unit}, {how}"


def default_rows(df: pd.DataFrame) -> list[str]:
    """family, model, plus data_size/image_size/frames/frame_stride/dataset when they vary (else cells would
    mix them: `--cols frames` must not average different data sizes as if they were seeds)."""
    keys = [c for c in ("family", "model") if c in df]
    varying = ("data_size", "image_size", "frames", "frame_stride", "dataset")
    keys += [c for c in varying if c in df and df[c].nunique(dropna=True) > 1]
    if not keys:
        raise StudyError(
            "results have neither a family nor a model column", key="--rows", fix="name the row columns with --rows COL1,COL2"
        )
    return keys


def build_table(
    df: pd.DataFrame,
    rows: list[str] | None = None,
    cols: str = "data_size",
    value: str = "test_acc",
    agg: str = "mean",
) -> Table:
    """Pivot trial rows: `rows` keys × distinct `cols` values, cells aggregate `value`."""
    if agg not in AGGS:
        raise StudyError(f"unknown aggregation {agg!r}", key="--agg", fix=f"use one of {', '.join(AGGS)}")
    rows = list(rows) if rows else [r for r in default_rows(df) if r != cols] or default_rows(df)  # cols is no row key
    if "variant" in df and "variant" not in rows and cols != "variant":
        rows.append("variant")  # rows of different configurations are never averaged as seeds (analysis/io.py)
    require_columns(df, [*rows, cols, value], key="table")
    df = df.copy()
    for col in rows:  # a missing key becomes a visible "n/a" row, not a NaN no lookup matches
        if df[col].isna().any():
            df[col] = df[col].astype(object).where(df[col].notna(), "n/a").astype(str)
    if is_accuracy(value):
        df[value], _ = as_fraction(df[value])
    spec = _ValueSpec(value, agg, percent=is_accuracy(value))
    # a column no trial measured (throughput with profiling off) is left out, not shown as all "—"
    attrs = [a for a in MODEL_ATTRS if "model" in rows and a[0] in df and df[a[0]].notna().any()]
    if cols in INPUT_AXES:  # per-sample cost varies along these columns: one median per model would mislead
        attrs = [a for a in attrs if a[0] == "params"]
    keys = _ordered_keys(df, rows)
    col_values = sorted(df[cols].dropna().unique().tolist())
    groups = {k: g for k, g in df.groupby(rows, sort=False, dropna=False)}

    display, records = [], []
    for key in keys:
        g = groups[key]
        rec = dict(zip(rows, key))
        line = [_fmt_key(v) for v in key]
        for col, _, kind in attrs:
            v = _attr_value(g, col)
            rec[col] = v
            line.append(fmt_count(v) if kind == "count" else fmt_sig(v))
        for cv in col_values:
            text, numbers = _cell(g[g[cols] == cv], spec)
            line.append(text)
            rec |= {f"{value}@{cols}={_fmt_key(cv)}{suffix}": n for suffix, n in numbers.items()}
        display.append(line)
        records.append(rec)

    clips = "sample_unit" in df and len(df) > 0 and bool((df["sample_unit"] == "clip").all())  # video rows count clips
    heads = [h.replace("img/s", "clips/s") if clips else h for _, h, _ in attrs]
    headers = [*rows, *heads, *(f"{cols}={_fmt_header(v)}" for v in col_values)]
    align = ["l"] * len(rows) + ["r"] * (len(headers) - len(rows))
    title = f"{spec.label()} by {cols}"
    notes = [f"{NOT_RUN} = no trial; failed: <reason> = every trial of that cell failed"]
    return Table(title, headers, display, align, _typed(pd.DataFrame(records)), notes)


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """Counts as integers in the CSV (a NaN would otherwise turn 2 into 2.0)."""
    for col in frame.columns:
        if col == "params" or col.endswith("_n"):
            numeric = pd.to_numeric(frame[col], errors="coerce").astype(float)
            if (numeric.dropna() % 1 == 0).all():
                frame[col] = numeric.round().astype("Int64")
    return frame


def _ordered_keys(df: pd.DataFrame, rows: list[str]) -> list[tuple]:
    """Families in FAMILY_ORDER, then models by parameter count, then by name."""
    keyframe = df[rows].drop_duplicates().copy()
    helper = {}
    if "family" in rows:
        rank = {f: i for i, f in enumerate(FAMILY_ORDER)}
        helper["_fam"] = keyframe["family"].map(lambda f: rank.get(f, len(rank)))
    if "model" in rows and "params" in df:
        med = df.groupby("model")["params"].median()
        helper["_par"] = keyframe["model"].map(med).fillna(np.inf)
    keyframe = keyframe.assign(**helper)
    sort_cols = [*helper, *rows]
    keyframe = keyframe.sort_values(sort_cols, kind="stable", key=_sortable)
    return [tuple(r) for r in keyframe[rows].itertuples(index=False, name=None)]


def _sortable(s: pd.Series) -> pd.Series:
    """Numbers sort numerically, everything else as text (mixed keys must not raise)."""
    return s if pd.api.types.is_numeric_dtype(s) else s.astype(str)


def _attr_value(g: pd.DataFrame, col: str) -> float:
    """Median over the model's ok trials (speeds vary run to run; params/GMACs do not)."""
    ok = pd.to_numeric(g.loc[g["status"] == "ok", col], errors="coerce").dropna()
    if ok.empty:  # all failed: config-derived columns such as params may still be filled
        ok = pd.to_numeric(g[col], errors="coerce").dropna()
    return float(ok.median()) if not ok.empty else math.nan


def _cell(g: pd.DataFrame, spec: _ValueSpec) -> tuple[str, dict[str, float | str]]:
    """Display text and CSV numbers ('' mean/max, _std, _n) of one pivot cell."""
    if g.empty:
        return NOT_RUN, {"": NOT_RUN}
    ok = g[g["status"] == "ok"]
    vals = pd.to_numeric(ok[spec.column], errors="coerce").dropna().to_numpy(dtype=float)
    n_pruned = int((g["status"] == "pruned").sum())  # successive halving stopped them: counted apart, never averaged
    n_failed = int((g["status"] != "ok").sum()) - n_pruned
    if vals.size == 0:
        if n_failed:
            reason = f"failed: {short_reason(_common_error(g))}"
            return reason, {"": reason}
        if n_pruned:
            return f"pruned ({n_pruned})", {"": "pruned"}
        return "n/a", {"": "n/a"}  # ok trials that did not record this value
    centre = float(vals.mean() if spec.agg == "mean" else vals.max())
    std = float(vals.std(ddof=1)) if vals.size > 1 else math.nan
    text = spec.fmt(centre)
    if spec.agg == "mean" and vals.size > 1:
        text += f" ± {spec.fmt(std)} ({vals.size})"
    if n_failed:
        text += f" (+{n_failed} failed)"
    if n_pruned:
        text += f" (+{n_pruned} pruned)"
    return text, {"": round(centre, 6), "_std": round(std, 6), "_n": int(vals.size)}


def _common_error(g: pd.DataFrame) -> str:
    errors = g.loc[~g["status"].isin(["ok", "pruned"]), "error"].astype(str)
    return errors.value_counts().index[0] if not errors.empty else ""


def _fmt_key(v: object) -> str:
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)


def _fmt_header(v: object) -> str:
    """data_size=1000 reads better as 1k; non-numeric pivot values stay as they are."""
    if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool):
        return fmt_count(float(v)) if abs(float(v)) >= 1000 else _fmt_key(v)
    return str(v)


# ----------------------------------------------------------------------------- rendering


def render(table: Table, fmt: str = "md") -> str:
    if fmt == "md":
        return to_markdown(table)
    if fmt == "latex":
        return to_latex(table)
    if fmt == "csv":
        return to_csv(table)
    raise StudyError(f"unknown table format {fmt!r}", key="--format", fix=f"use one of {', '.join(FORMATS)}")


def to_markdown(table: Table, title: bool = True) -> str:
    def esc(s: str) -> str:
        return s.replace("|", "\\|")

    out = [f"**{esc(table.title)}**", ""] if title else []
    out.append("| " + " | ".join(esc(c) for c in table.columns) + " |")
    out.append("|" + "|".join("---:" if a == "r" else ":---" for a in table.align) + "|")
    out += ["| " + " | ".join(esc(c) for c in row) + " |" for row in table.rows]
    out += ["", *(f"_{esc(n)}_" for n in table.notes)] if table.notes else []
    return "\n".join(out) + "\n"


_LATEX_SPECIAL = re.compile(r"([&%$#_{}])")


def _latex_escape(s: str) -> str:
    s = s.replace("\\", r"\textbackslash{}")
    s = _LATEX_SPECIAL.sub(r"\\\1", s)
    return s.replace("±", r"$\pm$").replace("—", "---").replace("…", r"\ldots{}").replace("~", r"\~{}")


def to_latex(table: Table) -> str:
    """booktabs tabular (needs \\usepackage{booktabs}); the title becomes a comment + caption."""
    out = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{_latex_escape(table.title)}}}",
        rf"\begin{{tabular}}{{{''.join(table.align)}}}",
        r"\toprule",
        " & ".join(_latex_escape(c) for c in table.columns) + r" \\",
        r"\midrule",
    ]
    out += [" & ".join(_latex_escape(c) for c in row) + r" \\" for row in table.rows]
    out += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(out) + "\n"


def to_csv(table: Table) -> str:
    """Numbers stay numbers: one value, _std and _n column per pivot value."""
    buf = io.StringIO()
    # 6 significant digits: more than any measurement here carries, and stable for golden files
    table.frame.to_csv(buf, index=False, lineterminator="\n", quoting=csv.QUOTE_MINIMAL, float_format="%.6g")
    return buf.getvalue()


def table_path(
    path: str,
    *,
    rows: list[str] | None = None,
    cols: str = "data_size",
    value: str = "test_acc",
    agg: str = "mean",
    fmt: str = "md",
    include_all: bool = False,
    tune: list[str] | None = None,
) -> str:
    """`harness table`: load a results path, build and render the table (`tune`: of the best-val
    envelope over those keys; which value won where is a note under a markdown table, else on stderr)."""
    df, _ = load_results(path, include_all=include_all)
    table = tuned_table(df, rows=rows, cols=cols, value=value, agg=agg, tune=tune)
    if fmt != "md" and table.tune_notes:
        print("\n".join(table.tune_notes), file=sys.stderr)
    return render(table, fmt)


def tuned_table(
    df: pd.DataFrame,
    *,
    rows: list[str] | None = None,
    cols: str = "data_size",
    value: str = "test_acc",
    agg: str = "mean",
    tune: list[str] | None = None,
) -> Table:
    """`build_table`, of the best-val envelope over `tune` first (its lines become notes; the CLI and
    `harness.load(...).table()` both come here)."""
    lines: list[str] = []
    if tune:
        from harness.analysis.tune import envelope

        env = envelope(df, tune)
        df, lines = env.rows, env.lines()
    table = build_table(df, rows=rows, cols=cols, value=value, agg=agg)
    table.notes += lines
    table.tune_notes = lines
    return table
