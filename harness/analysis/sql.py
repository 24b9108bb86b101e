"""`harness sql RESULTS QUERY`: DuckDB over the results, as views `trials` and `curves`, read-only and inside.

The frames come from the store's readers (`harness.analysis.export.load`: the compacted read path,
the study as last run unless --all, one study directory or a root of several, a `study` column in
both), registered with DuckDB as Arrow tables: no query ever sees a file path, so a change of the
results layout changes nothing here.

The connection is closed to the outside before the query runs (issue 27: `COPY ... TO` over a stored
row, `ATTACH` + `CREATE TABLE`, `INSTALL httpfs` all used to succeed): the views are registered first,
then file access is turned off (`enable_external_access=false`; `--allow-files` keeps reading files on
purpose), spilling to disk and extension loading are off, and `lock_configuration` makes that final.
On top, only statements that read are run (SELECT, EXPLAIN, PRAGMA, CALL), so even `--allow-files`
writes nothing. `--csv/--json/--parquet` output never lands inside a results directory.
"""

from __future__ import annotations

import errno
import gc
import math
import os
import sys
import threading
from pathlib import Path

from harness.errors import StudyError
from harness.extras import require
from harness.store import ResultsDir

FORMATS = ("table", "csv", "json", "parquet")
RICH_ROWS = 500  # past this many rows, aligned plain text (rich takes seconds to lay out thousands)
READING = ("SELECT", "EXPLAIN", "PRAGMA", "CALL")  # statement types that only read
EXIT_INTERRUPTED, EXIT_PIPE = 130, 141  # 128 + SIGINT / SIGPIPE, as a shell reports them
_FIX = "the views are trials (one row per trial) and curves (study, trial_id, step, ...); 'DESCRIBE trials' lists the columns"


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a query: the query was stopped (exit 130, no traceback)."""


def query(path: str | Path, sql: str, *, include_all: bool = False, allow_files: bool = False) -> object:
    """The query's result as a pyarrow Table (None for a statement without one)."""
    duckdb = require("duckdb", "sql", key="harness sql")
    import pyarrow as pa

    from harness.analysis.export import load

    res = load(path, include_all=include_all)
    con = _connect(duckdb)
    try:
        try:
            for name, df in (("trials", res.trials), ("curves", res.curves)):
                con.register(name, pa.Table.from_pandas(df, preserve_index=False))
        except RuntimeError as e:  # DuckDB turns a Ctrl-C while it scans the frames into this
            if "interrupted" in str(e).lower():
                raise Interrupted from None
            raise
        _close_off(con, allow_files)
        try:
            _check_reads_only(con, sql)
            out = _interruptible(con, sql)
        except duckdb.Error as e:
            raise _sql_error(e) from None
        return out
    finally:
        con.close()


def _connect(duckdb: object) -> object:
    # never fetch or load an extension behind the user's back (INSTALL httpfs made ~/.duckdb/extensions)
    cfg = {"autoinstall_known_extensions": False, "autoload_known_extensions": False, "allow_unsigned_extensions": False}
    return duckdb.connect(":memory:", config=cfg)  # type: ignore[attr-defined]


def _close_off(con: object, allow_files: bool) -> None:
    """After the views exist: no spill files, no file access (unless --allow-files), no extensions, locked."""
    con.execute("SET temp_directory = ''")  # type: ignore[attr-defined]  # an in-memory database spills to ./.tmp otherwise
    con.execute("SET allow_community_extensions = false")  # type: ignore[attr-defined]
    if not allow_files:
        con.execute("SET enable_external_access = false")  # type: ignore[attr-defined]
    con.execute("SET lock_configuration = true")  # type: ignore[attr-defined]


def _check_reads_only(con: object, sql: str) -> None:
    statements = con.extract_statements(sql)  # type: ignore[attr-defined]
    if not statements:
        raise StudyError("the query is empty", key="harness sql", fix='give a statement, e.g. "SELECT count(*) FROM trials"')
    for s in statements:
        kind = str(s.type).rsplit(".", 1)[-1]
        if kind not in READING:
            raise StudyError(
                f"{kind} statements are refused: harness sql only reads (the results are changed by harness run only)",
                key="harness sql",
                fix="use SELECT (or DESCRIBE/SUMMARIZE/EXPLAIN); write a result with --csv, --json or --parquet OUT",
            )


def _interruptible(con: object, sql: str) -> object:
    """Run the query in a thread so that Ctrl-C reaches Python (DuckDB's C++ loop never returns to the
    interpreter); on Ctrl-C interrupt the connection until the worker has finished, raise `Interrupted`.

    Two races made this flaky (a `ResourceInUseException` from `con.close()` now and then):
    - `Thread.join()` interrupted by Ctrl-C marks a thread that still runs as stopped (CPython 3.11's
      fix of bpo-45274 releases the thread's own lock), so `is_alive()` lied and the connection was
      closed under a running query. The worker sets its own `done` event instead; nothing joins.
    - A Ctrl-C before DuckDB begins the query is lost (DuckDB clears the interrupt flag as a query
      starts). The worker checks `stop` before it starts, and the main thread interrupts again and
      again until the worker is done; another Ctrl-C during that wait changes nothing."""
    box: dict[str, object] = {}
    stop, done = threading.Event(), threading.Event()

    def work() -> None:
        try:
            if stop.is_set():
                return
            rel = con.sql(sql)  # type: ignore[attr-defined]
            out = None if rel is None else rel.arrow()
            # duckdb >= 1.4 returns a lazy reader: the query runs as it is read, so read it here
            box["out"] = out.read_all() if hasattr(out, "read_all") else out
        except BaseException as e:  # handed to the main thread
            box["err"] = e.with_traceback(None)  # its frames would keep the relation (the connection busy)
        finally:
            rel = out = None
            done.set()

    try:
        threading.Thread(target=work, name="harness-sql", daemon=True).start()
        while not done.wait(0.2):
            pass
    except KeyboardInterrupt:
        stop.set()
        _stop(con, done)
        box.clear()
        gc.collect()  # whatever else still holds a relation
        raise Interrupted from None
    if "err" in box:
        raise box["err"]  # type: ignore[misc]
    return box.get("out")


def _stop(con: object, done: threading.Event) -> None:
    """Interrupt the connection until the worker is done (Ctrl-C again meanwhile is ignored)."""
    while not done.is_set():
        try:
            con.interrupt()  # type: ignore[attr-defined]
            done.wait(0.05)
        except KeyboardInterrupt:
            continue


def _sql_error(e: Exception) -> StudyError:
    lines = [x.strip() for x in str(e).splitlines() if x.strip()]
    head = [x for x in lines if not x.startswith("LINE ") and set(x) != {"^"}]
    fix = _FIX
    if "file system operations are disabled" in str(e) or "external" in str(e).lower():
        fix = "harness sql sees only the views trials and curves; give --allow-files to read other files on purpose"
    return StudyError(" ".join(head[:3]) or type(e).__name__, key="harness sql", fix=fix)


def check_output(out: str | Path, results: str | Path) -> Path:
    """`--parquet OUT` may not land in a results directory (it replaced stored rows) or under RESULTS."""
    dest = Path(out).expanduser().resolve()
    inside = Path(results).expanduser().resolve()
    for d in [dest, *dest.parents]:
        if d == inside or ResultsDir(d).is_results_dir():
            raise StudyError(
                f"{out} is inside the results directory {d}",
                key="harness sql --parquet",
                fix="write the output outside every results directory (e.g. ./out.parquet)",
            )
    return dest


def run(
    path: str | Path,
    sql: str,
    *,
    fmt: str = "table",
    out: str | Path | None = None,
    include_all: bool = False,
    allow_files: bool = False,
) -> int:
    if fmt not in FORMATS:
        raise StudyError(f"unknown format {fmt!r}", key="harness sql", fix=f"use one of {', '.join(FORMATS)}")
    dest = check_output(out, path) if fmt == "parquet" else None
    try:
        table = query(path, sql, include_all=include_all, allow_files=allow_files)
    except KeyboardInterrupt:  # Interrupted during the query, or Ctrl-C while the results are read
        print("interrupted: the query was stopped, nothing written", file=sys.stderr)
        return EXIT_INTERRUPTED
    if table is None:
        return 0
    try:
        _emit(table, fmt, dest)
    except BrokenPipeError:  # `harness sql ... --csv | head -1`: the reader has what it wanted
        _silence_stdout()
        return EXIT_PIPE
    except OSError as e:
        where = str(out) if dest is not None else "stdout"
        raise StudyError(f"cannot write the output: {e.strerror or e}", where=where, fix=_write_fix(e)) from None
    return 0


def _write_fix(e: OSError) -> str:
    if e.errno == errno.ENOSPC:
        return "free space on that disk or write elsewhere"
    return "write to a directory you can create files in"


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so the interpreter's final flush stays quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _emit(table: object, fmt: str, dest: Path | None) -> None:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        from harness.store import atomic_write

        atomic_write(dest, lambda tmp: pq.write_table(table, tmp))  # type: ignore[arg-type]
        print(f"{table.num_rows} rows -> {dest}", file=sys.stderr)  # type: ignore[attr-defined]
        return
    if fmt in ("csv", "json"):
        frame = _plain(table).to_pandas()
        if fmt == "csv":
            text = frame.to_csv(index=False)
        else:
            text = frame.to_json(orient="records", date_format="iso", indent=1, double_precision=15) + "\n"
        sys.stdout.write(text)
    else:
        _print_table(table)
    sys.stdout.flush()  # a full disk or a closed pipe shows here, inside the error handling, not at exit


def _plain(table: object) -> object:
    """Columns CSV/JSON cannot hold (INTERVAL, UNION, MAP, ...) as their text."""
    import pyarrow as pa
    import pyarrow.types as pt

    def simple(t: object) -> bool:
        return bool(
            pt.is_integer(t) or pt.is_floating(t) or pt.is_boolean(t) or pt.is_string(t) or pt.is_large_string(t)
        ) or bool(pt.is_timestamp(t) or pt.is_date(t) or pt.is_decimal(t) or pt.is_null(t) or pt.is_dictionary(t))

    cols = []
    for i, field in enumerate(table.schema):  # type: ignore[attr-defined]
        col = table.column(i)  # type: ignore[attr-defined]
        if not simple(field.type):
            col = pa.array([None if v is None else _cell(v) for v in col.to_pylist()], type=pa.string())
        cols.append(col)
    return pa.table(cols, names=table.column_names)  # type: ignore[attr-defined]


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
        from rich.table import Table
        from rich.text import Text

        from harness.console import out_console

        # Text cells: neither markup nor emoji codes (':x:' stays ':x:')
        t = Table(caption=f"{nrows} row{'s' if nrows != 1 else ''}")
        for n, r in zip(names, right):
            t.add_column(Text(n), justify="right" if r else "left")
        for i in range(nrows):
            t.add_row(*(Text(c[i]) for c in cols))
        out_console().print(t)
        return
    widths = [max([len(n), *map(len, c)]) for n, c in zip(names, cols)]
    lines = ["  ".join(n.rjust(w) if r else n.ljust(w) for n, w, r in zip(names, widths, right)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for i in range(nrows):
        lines.append("  ".join(c[i].rjust(w) if r else c[i].ljust(w) for c, w, r in zip(cols, widths, right)).rstrip())
    lines.append(f"{nrows} rows")
    sys.stdout.write("\n".join(lines) + "\n")
