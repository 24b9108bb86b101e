"""`harness compact RESULTS`: merge a results directory's row files into one Parquet file per kind.

Reads then open compact/trials.parquet (and curves.parquet) plus only the row files written
since; see harness/store.py. `harness run` does this at the end of every run, so the verb is for
directories filled by SLURM jobs, copied in, or written by an older version.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.cli.verbs import verb

ORDER = 5  # last in `harness --help`


def _options(p: argparse.ArgumentParser) -> None:
    p.add_argument("results", help="results/NAME, or a parent of several study directories")


@verb("compact", "merge a results directory's row files for fast reads", _options)
def _compact(args: argparse.Namespace) -> int:
    from harness.analysis.io import study_dirs
    from harness.errors import StudyError

    root = Path(args.results)
    dirs = study_dirs(root) if root.is_dir() else []
    if not dirs:
        raise StudyError("not a results directory", where=str(root), fix="give results/NAME (a directory `harness run` wrote)")
    for rd in dirs:
        try:
            rows, curve_rows = rd.compact()
        except OSError as e:
            from harness.store import storage_error

            raise storage_error(e, rd.compact_dir) from None
        print(f"{rd.path}: {rows} rows, {curve_rows} curve rows -> {rd.compact_dir}")
        if rd.unreadable.paths:
            print(rd.unreadable.note())
    return 0
