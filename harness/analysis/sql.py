"""`harness sql RESULTS QUERY`: DuckDB over the results, as views `trials` and `curves`.

The frames come from the store's readers (`harness.analysis.export.load`: the compacted read path,
the study as last run unless --all, one study directory or a root of several, a `study` column in
both), registered with DuckDB as Arrow tables: no query ever sees a file path, so a change of the
results layout changes nothing here.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

from harness.errors import StudyError
from harness.extras import require

FORMATS = ("table", "csv", "json", "parquet")
RICH_ROWS = 500  # past this many rows, aligned plain text (rich takes seconds to lay out thousands)


def query(path: str | Path, sql: str, *, include_all: bool = False) -> object:
    """The query's result as a pyarrow Table (None for a statement without one, e.g. SET)."""
    duckdb = require("duckdb", "sql", key="harness sql")
    import pyarrow as pa

    from harness.analysis.export import load

    res = load(path, include_all=include_all)
    con = duckdb.connect()
    try:
        for name, df in (("trials", res.trials), ("curves", res.curves)):
            con.register(name, pa.Table.from_pandas(df, preserve_index=False))
        try:
            rel = con.sql(sql)
            if rel is None:
                return None
            out = rel.arrow()
        except duckdb.Error as e:
            raise _sql_error(e) from None
        return out.read_all() if isinstance(out, pa.RecordBatchReader) else out  # duckdb >= 1.4 returns a reader
    finally:
        con.close()


def _sql_error(e: Exception) -> StudyError:
    lines = [x.strip() for x in str(e).splitlines() if x.strip()]
    head = [x for x in lines if not x.startswith("LINE ") and set(x) != {"^"}]
    return StudyError(
        " ".join(head[:3]) or type(e).__name__,
        key="harness sql",
        fix="the views are trials (one row per trial) and curves (study, trial_id, step, ...); "
        "'DESCRIBE trials' lists the columns",
    )


def run(path: str | Path, sql: str, *, fmt: str = "table", out: str | Path | None = None, include_all: bool = False) -> int:
    table = query(path, sql, include_all=include_all)
    if table is None:
        return 0
    if fmt == "parquet":
        import pyarrow.parquet as pq

        from harness.store import atomic_write

        atomic_write(Path(out), lambda tmp: pq.write_table(table, tmp))
        print(f"{table.num_rows} rows -> {out}", file=sys.stderr)
    elif fmt == "csv":
        table.to_pandas().to_csv(sys.stdout, index=False)
    elif fmt == "json":
        sys.stdout.write(table.to_pandas().to_json(orient="records", date_format="iso", indent=1, double_precision=15) + "\n")
    else:
        _print_table(table)
    return 0


def _cell(v: object) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, float):
        return "NaN" if math.isnan(v) else f"{v:.6g}"
    return str(v)


def _print_table(table: object) -> None:
    names = table.column_names  # type: ignore[attr-defined]
    cols = [[_cell(v) for v in table.column(i).to_pylist()] for i in range(len(names))]  # type: ignore[attr-defined]
    types = [table.schema.field(i).type for i in range(len(names))]  # type: ignore[attr-defined]
    import pyarrow.types as pt

    right = [pt.is_integer(t) or pt.is_floating(t) or pt.is_decimal(t) for t in types]
    nrows = table.num_rows  # type: ignore[attr-defined]
    if nrows <= RICH_ROWS:
        from rich.markup import escape
        from rich.table import Table

        from harness.console import out_console

        t = Table(caption=f"{nrows} row{'s' if nrows != 1 else ''}")
        for n, r in zip(names, right):
            t.add_column(escape(n), justify="right" if r else "left")
        for i in range(nrows):
            t.add_row(*(escape(c[i]) for c in cols))
        out_console().print(t)
        return
    widths = [max([len(n), *map(len, c)]) for n, c in zip(names, cols)]
    lines = ["  ".join(n.rjust(w) if r else n.ljust(w) for n, w, r in zip(names, widths, right)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for i in range(nrows):
        lines.append("  ".join(c[i].rjust(w) if r else c[i].ljust(w) for c, w, r in zip(cols, widths, right)).rstrip())
    lines.append(f"{nrows} rows")
    sys.stdout.write("\n".join(lines) + "\n")
