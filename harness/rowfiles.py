"""Reading a directory of one-row Parquet files, through its compacted file when there is one
(see harness/store.py's docstring: the stamp of each row's file decides which copy is current).

Below harness.store, which owns the paths: a reader is handed the directory, the compacted file
and a list to which it appends each file it skipped as unreadable (ResultsDir.unreadable).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pandas as pd

ROW_SUFFIX = ".parquet"
STAMP = ["_file", "_size", "_mtime_ns", "_ino"]  # the manifest columns of a compacted file
READ_THREADS = 2  # pyarrow releases the GIL while it decodes; more threads gain nothing on 2 cores


def is_temporary(name: str) -> bool:
    """A writer's temporary (atomic_write: a dot name renamed into place); readers skip it."""
    return name.startswith(".")


def read_file(path: Path, columns: list[str] | None = None, optional: bool = False, stamp: list | None = None) -> object:
    """A Parquet file as an Arrow table; None when absent or unreadable. With `stamp`, the file's
    (size, mtime_ns, inode) from the open descriptor, so content and stamp always belong together."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        with open(path, "rb") as f:
            if stamp is not None:
                st = os.fstat(f.fileno())
                stamp[:] = [st.st_size, st.st_mtime_ns, st.st_ino]
            if columns is not None:
                have = pq.read_schema(f).names
                if optional:
                    columns = [c for c in columns if c in have]
                elif not set(columns) <= set(have):
                    return pa.table({})  # another schema: the caller's check rejects it
                f.seek(0)
            # pre_buffer/use_threads off: read on this thread, from this Python file object. With them on, Arrow's
            # I/O pool prefetched ranges of it and could drop the last reference on one of its own threads after
            # we returned, which needs the GIL; at interpreter exit that aborted the driver (SIGABRT, rc -6, after
            # "6/6 ok": CI, test_kill9_driver_then_rerun_ray). Files are read in parallel by the Reader instead.
            return pq.read_table(f, columns=columns, pre_buffer=False, use_threads=False)
    except FileNotFoundError:
        return None
    except (OSError, pa.ArrowException, ValueError):
        return pa.table({})  # truncated, junk, not Parquet: an empty table the check rejects


class Reader:
    """The rows of one directory of per-trial files, through its compacted file when there is one."""

    def __init__(
        self,
        skipped: list[Path],
        directory: Path,
        compacted: Path,
        columns: list[str] | None,
        check: Callable[[object], bool],
        keep_stamp: bool = False,
    ) -> None:
        self.skipped, self.dir, self.compacted, self.columns = skipped, directory, compacted, columns
        self.check, self.keep_stamp = check, keep_stamp
        self.changed = True  # False once table() found the compacted file exactly current

    def table(self) -> object:
        import pyarrow as pa

        files = self.listing()
        cached, reused = self._from_compacted(files)
        fresh = [name for name in files if name not in reused]
        self.changed = bool(fresh) or self._dropped
        tables = [cached] if cached is not None and cached.num_rows else []
        tables += self._read_many(fresh)
        if not tables:
            return None
        table = pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]
        if len(tables) > 1:
            table = table.sort_by("_file")  # files in name order, however they were read
        return table if self.keep_stamp else table.drop_columns(STAMP)

    def listing(self) -> dict[str, tuple[int, int, int]]:
        """name -> (size, mtime_ns, inode) of every row file (one scandir; temporaries skipped)."""
        out = {}
        try:
            with os.scandir(self.dir) as it:
                for e in it:
                    if e.name.endswith(ROW_SUFFIX) and not is_temporary(e.name):
                        try:
                            st = e.stat()
                        except FileNotFoundError:
                            continue
                        out[e.name] = (st.st_size, st.st_mtime_ns, st.st_ino)
        except (FileNotFoundError, NotADirectoryError):
            pass
        return out

    def _from_compacted(self, files: dict[str, tuple[int, int, int]]) -> tuple[object, set[str]]:
        """The compacted rows whose file is still there with the same stamp, and those file names."""
        import pyarrow as pa
        import pyarrow.compute as pc

        self._dropped = False
        if not files or not self.compacted.exists():
            return None, set()
        cols = None if self.columns is None else [*self.columns, *STAMP]
        table = read_file(self.compacted, columns=cols)
        if table is None:
            return None, set()
        if not set(STAMP) <= set(table.schema.names) or not self.check(table):
            self.skipped.append(self.compacted)  # rebuilt by the next compaction
            return None, set()
        names = table.column("_file").to_pylist()
        stamps = zip(table.column("_size").to_pylist(), table.column("_mtime_ns").to_pylist(), table.column("_ino").to_pylist())
        keep = [files.get(n) == tuple(s) for n, s in zip(names, stamps)]
        self._dropped = not all(keep)
        table = table.filter(pa.array(keep, type=pa.bool_()))
        reused = set(pc.unique(table.column("_file")).to_pylist())
        return table, reused

    def _read_many(self, names: list[str]) -> list:
        import pyarrow as pa

        if not names:
            return []
        names = sorted(names)
        if len(names) > 64:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(READ_THREADS) as pool:
                results = list(pool.map(self._read_one, names, chunksize=64))
        else:
            results = [self._read_one(n) for n in names]
        good = [t for t in results if t is not None]
        if not good:
            return []
        try:
            return [pa.concat_tables(good, promote_options="permissive")]
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # a column with text in one file, numbers in another
            return [
                pa.Table.from_pandas(
                    pd.concat([t.to_pandas() for t in good], ignore_index=True, sort=False), preserve_index=False
                )
            ]

    def _read_one(self, name: str) -> object:
        stamp: list = []
        table = read_file(self.dir / name, columns=self.columns, stamp=stamp)
        if table is None:
            return None  # removed meanwhile
        if not self.check(table):
            self.skipped.append(self.dir / name)
            return None
        n = table.num_rows
        return stamped(table, [name] * n, [tuple(stamp)] * n)


def stamped(table: object, names: list[str], stamps: list[tuple[int, int, int]]) -> object:
    """`table` with the manifest columns (STAMP) a compacted file carries: per row, the name of the
    file it came from and that file's (size, mtime_ns, inode)."""
    import pyarrow as pa

    sizes, mtimes, inos = zip(*stamps) if stamps else ((), (), ())
    return (
        table.append_column("_file", pa.array(names, pa.string()))
        .append_column("_size", pa.array(sizes, pa.int64()))
        .append_column("_mtime_ns", pa.array(mtimes, pa.int64()))
        .append_column("_ino", pa.array(inos, pa.int64()))
    )
