"""The results directory: every path in it, the one atomic write, and the readers.

    results/<study>/trials/<trial_id>.parquet    one row (schema below), rewritten when a failed trial is retried
    results/<study>/curves/<trial_id>.parquet    learning curve, one row per evaluation
    results/<study>/study.yaml                   the study file this directory was last run from (resolved: with its command-line overrides applied)
    results/<study>/study.json                   {name, study_hash, trial_ids[, overrides]} of that run: the rows that belong
    results/<study>/claims/<trial_id>            a driver's lease on a trial (harness/claims.py)
    results/<study>/compact/trials.parquet       compacted read path: every row + the stamp of its file
    results/<study>/compact/curves.parquet       the same for curves
    results/<study>/quarantine/                  unreadable files `harness run` moved aside
    results/<study>/slurm/jobs.json, logs/, checkpoints/<trial_id>.pt    the SLURM backend's files
    results/<study>/report/, plots/              analysis output

`ResultsDir` is the one object that knows these paths (STYLE 12): the runner, claims, the
backends and the analysis ask it, none builds a path.

Every file is written to a temporary name in the same directory and renamed (`os.replace` is
atomic on POSIX), so a killed writer leaves either the old file or the new one, never half
of one. Readers ignore temporaries.

Reading thousands of one-row files costs seconds, so `compact()` merges them into one Parquet
file whose rows carry the (name, size, mtime, inode) of the file each came from (the manifest,
in the same file so the two can never disagree). A reader lists trials/ (one scandir), takes a
compacted row only while its file still has that stamp, and reads the files that are new or
changed since: nothing is counted twice, nothing written after a compaction is missed, and
the per-trial files stay the source of truth (kill -9 and concurrent drivers stay safe).
"""

from __future__ import annotations

import errno
import json
import math
import os
import tempfile
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from harness.errors import StudyError

SCHEMA_VERSION = 1

# DESIGN.md's results schema, in order; extend, never rename without a SCHEMA_VERSION bump
COLUMNS: dict[str, str] = {
    # identity
    "study": "string",
    "trial_id": "string",
    "status": "string",
    "error": "string",
    "schema_version": "Int64",
    # config
    "family": "string",
    "size": "string",
    "model": "string",
    "image_size": "Int64",
    "data_size": "Int64",
    "seed": "Int64",
    "steps": "Int64",
    "epochs": "float64",
    "batch_size": "Int64",
    "lr": "float64",
    "dataset": "string",
    "config_json": "string",
    # model
    "params": "Int64",
    "fwd_gmacs": "float64",
    "train_flops": "float64",
    # speed
    "infer_img_s": "float64",
    "infer_img_s_iqr": "float64",
    "train_img_s": "float64",
    "train_img_s_iqr": "float64",
    "latency_ms_p50": "float64",
    "peak_mem_mb": "float64",
    "peak_mem_kind": "string",
    "mfu": "float64",
    "profile_batch_size": "Int64",
    # speed, issue 5 (harness/profile.py): spreads, achieved rate, MFU and its reason, counted training MACs/img
    "infer_step_ms": "float64",
    "infer_cv": "float64",
    "train_step_ms": "float64",
    "train_cv": "float64",
    "latency_cv": "float64",
    "profile_extended": "boolean",
    "profile_unstable": "boolean",
    "profile_precision": "string",
    "infer_tflops_s": "float64",
    "train_tflops_s": "float64",
    "infer_mfu": "float64",
    "mfu_reason": "string",
    "peak_tflops": "float64",
    "train_gmacs": "float64",
    # quality
    "test_acc": "float64",
    "test_loss": "float64",
    "train_loss": "float64",
    "best_test_acc": "float64",
    "samples_seen": "Int64",
    "train_time_s": "float64",
    # provenance
    "device": "string",
    "dtype": "string",
    "threads": "Int64",
    "torch_version": "string",
    "timm_version": "string",
    "harness_version": "string",
    "git_sha": "string",
    "host": "string",
    "started_at": "string",
    "duration_s": "float64",
    "study_hash": "string",
    # hardware fingerprint (harness/hardware.py), filled when the trial is profiled
    "device_count": "Int64",
    "driver": "string",
    "cpu_model": "string",
    "cpu_count": "Int64",
    "cpu_capability": "string",
    "niceness": "Int64",
    "cuda_version": "string",
    "cudnn_version": "string",
    "tf32": "string",
    # issue 11 (harness/train.py): validation split, selection on it, early stopping's ceiling
    "val_acc": "float64",
    "val_loss": "float64",
    "best_val_acc": "float64",
    "best_val_step": "Int64",
    "test_acc_at_best_val": "float64",
    "max_steps": "Int64",
    "compile_s": "float64",  # train.compile: the compiling first step, outside train_time_s (issue 10)
    # issue 16 (harness/evals.py): probes of the frozen backbone's features; other k and transfer datasets are extra columns
    "probe_acc": "float64",
    "probe_l2": "float64",
    "probe_l2_from": "string",
    **{f"fewshot_{k}_acc{s}": "float64" for k in (1, 5, 10, 25) for s in ("", "_std")},
    "eval_time_s": "float64",
    # issue 17: video trials (NA for images); sample_unit says what infer_img_s/train_img_s count: "img" or "clip"
    "frames": "Int64",
    "frame_stride": "Int64",
    "sample_unit": "string",
}
CURVE_COLUMNS = [
    "trial_id",
    "epoch",
    "step",
    "samples_seen",
    "train_loss",
    "test_acc",
    "test_loss",
    "lr",
    "elapsed_s",
    "val_acc",
    "val_loss",
]  # val_*: with train.val_size (issue 11)
ROW_SUFFIX = ".parquet"
STAMP = ["_file", "_size", "_mtime_ns", "_ino"]  # the manifest columns of a compacted file
READ_THREADS = 2  # pyarrow releases the GIL while it decodes; more threads gain nothing on 2 cores


@dataclass
class TrialOutput:
    """What a worker hands back: one row and its learning curve (plain Python, pickles cheaply)."""

    row: dict
    curve: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.row.get("status") == "ok"


# ----------------------------------------------------------------------------- the one atomic write


Payload = bytes | str | Callable[[str], None]


def atomic_write(path: str | Path, data: Payload, *, exclusive: bool = False) -> Path:
    """Write `data` (bytes, text, or a function that writes a file at the path it is given, e.g.
    `df.to_parquet`) to a temporary name beside `path`, then rename it over `path`.

    exclusive=True links instead of renaming, so it fails with FileExistsError when `path` exists
    (O_EXCL semantics for claims) and the file appears with its whole content or not at all. On
    any error (a full disk, Ctrl-C) the temporary is removed and the old file, if any, is left.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if callable(data):
            os.close(fd)
            fd = -1
            data(tmp)
        else:
            f = os.fdopen(fd, "wb")
            fd = -1
            with f:
                _write(f, data.encode() if isinstance(data, str) else data)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; rows and claims are read by other users' drivers too
        if exclusive:
            os.link(tmp, path)
            os.unlink(tmp)
        else:
            os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _write(f: object, data: bytes) -> None:
    """The byte write of `atomic_write` (a test makes it raise ENOSPC, as a full disk does)."""
    f.write(data)  # type: ignore[attr-defined]


def _is_temporary(name: str) -> bool:
    return name.startswith(".")


# ----------------------------------------------------------------------------- rows


def row_frame(row: dict) -> pd.DataFrame:
    """One-row frame with the schema's dtypes (missing numbers are NA, so every file has the same schema)."""
    full = {c: row.get(c) for c in COLUMNS}
    for c, dtype in COLUMNS.items():
        v = full[c]
        if v is None or (isinstance(v, float) and math.isnan(v) and dtype != "float64"):
            full[c] = pd.NA if dtype != "float64" else math.nan
    df = pd.DataFrame([full]).astype(COLUMNS)
    extra = {k: v for k, v in row.items() if k not in COLUMNS}
    for k, v in extra.items():  # later issues add columns; keep them rather than drop them
        df[k] = [v]
    return df


def _parquet(df: pd.DataFrame) -> Callable[[str], None]:
    return lambda tmp: df.to_parquet(tmp, index=False)


def empty_frame() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in COLUMNS.items()})


def _mkdirs(path: Path, made: list[Path]) -> None:
    """`path.mkdir(parents=True, exist_ok=True)` that appends to `made` each directory it made itself,
    as it goes (a failure part-way still lists the parents made): one another process made between
    the check and the mkdir is not listed (nor removed on failure)."""
    for p in (*reversed(path.parents), path):
        if p.is_dir():
            continue
        try:
            p.mkdir()
        except FileExistsError:
            if p.is_dir():  # another process made it: not ours
                continue
            if p == path:  # the results path itself is a file
                raise
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path)) from None  # a file above it
        made.append(p)


def storage_error(exc: OSError, where: Path | str) -> StudyError:
    """The one line for a results path the file system refuses (full, read-only, a file, too long)."""
    fixes = {
        errno.ENOSPC: ("the disk is full", "free space or pass --results on another disk"),
        errno.EDQUOT: ("the disk quota is exhausted", "free space or pass --results on another disk"),
        errno.EROFS: ("the file system is read-only", "pass --results on a writable disk"),
        errno.EACCES: ("permission denied", "pass --results in a directory you can write"),
        errno.EPERM: ("permission denied", "pass --results in a directory you can write"),
        errno.ENAMETOOLONG: ("the name is too long for the file system", "shorten the study's name"),
        errno.ENOTDIR: ("a part of the results path is a file, not a directory", "pass --results DIR (a directory)"),
        errno.EEXIST: ("the results path is a file, not a directory", "pass --results DIR (a directory)"),
    }
    what, fix = fixes.get(exc.errno, (exc.strerror or type(exc).__name__, "check the results path"))
    return StudyError(f"cannot write results: {what}", where=str(where), fix=fix)


# ----------------------------------------------------------------------------- the directory


@dataclass
class Unreadable:
    """Files a reader skipped: reported once, never silently deleted."""

    paths: list[Path] = field(default_factory=list)

    def note(self) -> str:
        if not self.paths:
            return ""
        n = len(self.paths)
        shown = ", ".join(str(p) for p in self.paths[:3]) + (f" (+{n - 3} more)" if n > 3 else "")
        return f"skipped {n} unreadable file{'s' if n > 1 else ''}: {shown}, move {'them' if n > 1 else 'it'} away or delete {'them' if n > 1 else 'it'}"


class ResultsDir:
    """results/<study>/: every path in it, the writes and the readers (see the module docstring)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.unreadable = Unreadable()  # files the readers of this object skipped

    @classmethod
    def of(cls, results_root: str | Path, study: str) -> ResultsDir:
        return cls(Path(results_root) / study)

    def __repr__(self) -> str:
        return f"ResultsDir({str(self.path)!r})"

    # -- layout
    @property
    def trials(self) -> Path:
        return self.path / "trials"

    @property
    def curves(self) -> Path:
        return self.path / "curves"

    @property
    def claims(self) -> Path:
        return self.path / "claims"

    @property
    def study_file(self) -> Path:
        return self.path / "study.yaml"

    @property
    def membership_file(self) -> Path:
        return self.path / "study.json"

    @property
    def compact_dir(self) -> Path:
        return self.path / "compact"

    @property
    def compacted_trials(self) -> Path:
        return self.compact_dir / "trials.parquet"

    @property
    def compacted_curves(self) -> Path:
        return self.compact_dir / "curves.parquet"

    @property
    def quarantine(self) -> Path:
        return self.path / "quarantine"

    @property
    def slurm(self) -> Path:
        return self.path / "slurm"

    @property
    def slurm_jobs(self) -> Path:
        return self.slurm / "jobs.json"

    @property
    def slurm_logs(self) -> Path:
        return self.slurm / "logs"

    @property
    def report(self) -> Path:
        return self.path / "report"

    @property
    def plots(self) -> Path:
        return self.path / "plots"

    def trial_file(self, trial_id: str) -> Path:
        return self.trials / f"{trial_id}{ROW_SUFFIX}"

    def curve_file(self, trial_id: str) -> Path:
        return self.curves / f"{trial_id}{ROW_SUFFIX}"

    def claim_file(self, trial_id: str) -> Path:
        return self.claims / trial_id

    def checkpoint(self, trial_id: str) -> Path:
        return self.slurm / "checkpoints" / f"{trial_id}.pt"

    def is_results_dir(self) -> bool:
        return self.trials.is_dir() or self.study_file.is_file() or self.compacted_trials.is_file()

    # -- writes
    def write(self, out: TrialOutput) -> Path:
        """Curve first, then the row: a row on disk means its curve is there too.
        A file system that refuses (full, read-only) is a StudyError: one line, exit 2."""
        tid = out.row["trial_id"]
        try:
            if out.curve:
                curve = pd.DataFrame(out.curve)
                curve.insert(0, "trial_id", tid)
                atomic_write(self.curve_file(tid), _parquet(curve[[c for c in CURVE_COLUMNS if c in curve]]))
            return atomic_write(self.trial_file(tid), _parquet(row_frame(out.row)))
        except OSError as e:
            raise storage_error(e, self.path).at(key=f"trial {tid}") from e

    def preflight(self) -> None:
        """Before a run writes anything: the directory can be made and written (not full, not
        read-only, not a file, a name the file system takes). Leaves nothing behind."""
        made: list[Path] = []  # the directories this call made, not those a concurrent driver made
        try:
            _mkdirs(self.path, made)
            # a name of this call's own: two drivers starting at once each remove only their probe
            probe = self.path / f".write-probe.{os.getpid()}.{uuid.uuid4().hex[:8]}"
            atomic_write(probe, b"probe" * 820)  # 4 KiB: one block must fit
            probe.unlink()
        except OSError as e:
            for p in reversed(made):  # deepest first (made top-down)
                try:
                    p.rmdir()
                except OSError:
                    pass
            raise storage_error(e, self.path) from None

    def record_study(
        self,
        src: str | Path,
        name: str,
        study_hash: str,
        trial_ids: Iterable[str],
        *,
        overrides: Sequence[str] = (),
        resolved: str | None = None,
    ) -> None:
        """The study as last run: its file and the trial ids it expands to (the rows that belong). Run with
        command-line overrides: study.yaml is `resolved` (the file with them applied, a header listing
        them) and study.json lists them under "overrides"."""
        try:
            atomic_write(self.study_file, resolved if resolved is not None else Path(src).read_bytes())
            manifest = {"name": name, "study_hash": study_hash, "trial_ids": sorted(trial_ids)}
            if overrides:
                manifest["overrides"] = list(overrides)
            atomic_write(self.membership_file, json.dumps(manifest, indent=0))
        except OSError as e:
            raise storage_error(e, self.path) from e

    def write_json(self, path: Path, obj: object) -> None:
        atomic_write(path, json.dumps(obj, indent=1))

    def read_json(self, path: Path, default: object = None) -> object:
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return default

    def membership(self) -> set[str] | None:
        """Trial ids of the study as last run; None when unknown (never run by this version)."""
        try:
            return set(json.loads(self.membership_file.read_text())["trial_ids"])
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            self.unreadable.paths.append(self.membership_file)
            return None

    def quarantine_unreadable(self) -> list[Path]:
        """Move the files the readers skipped to quarantine/ (never deleted); returns the new paths."""
        moved = []
        for p in self.unreadable.paths:
            if p.parent not in (self.trials, self.curves) or not p.exists():
                continue  # compact/ is rebuilt, study.json rewritten: only row files move
            dest = self.quarantine / p.parent.name / p.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(p, dest)
            moved.append(dest)
        self.unreadable = Unreadable()
        return moved

    def sweep_temporaries(self, trial_id: str) -> None:
        """A killed writer may leave `.<id>.parquet.*.tmp` behind; readers skip them, a take-over removes them."""
        for d in (self.trials, self.curves):
            for tmp in d.glob(f".{trial_id}{ROW_SUFFIX}.*.tmp"):
                tmp.unlink(missing_ok=True)

    # -- one trial
    def row_stamp(self, trial_id: str) -> tuple[int, int] | None:
        """Identity of the trial's row file (inode, mtime): a change means a new result was stored."""
        try:
            st = self.trial_file(trial_id).stat()
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_mtime_ns

    def read_row(self, trial_id: str) -> dict | None:
        """The stored row of one trial as plain Python values (None when absent or unreadable)."""
        table = _read_file(self.trial_file(trial_id))
        if table is None or table.num_rows == 0:
            return None
        row = table.slice(0, 1).to_pandas().iloc[0].to_dict()
        return {k: (None if v is pd.NA else v) for k, v in row.items()}

    def row_value(self, trial_id: str, column: str) -> object:
        """One column of one trial's row (None when the file or the column is absent)."""
        table = _read_file(self.trial_file(trial_id), columns=[column], optional=True)
        return table.column(0)[0].as_py() if table is not None and table.num_columns and table.num_rows else None

    # -- all rows
    def read(self, lenient: bool = False) -> pd.DataFrame:
        """Every trial row (one per trial_id: a copied row under another name keeps the latest).
        A file that is not a trial row (no trial_id/status) is skipped as unreadable; lenient=True
        (the analysis) also takes rows from other tools that share any schema column."""
        table = _Reader(self, self.trials, self.compacted_trials, None, _is_result if lenient else _is_row).table()
        if table is None:
            return empty_frame()
        return dedupe(table.to_pandas())

    def read_curves(self) -> pd.DataFrame:
        table = _Reader(self, self.curves, self.compacted_curves, None, _is_curve).table()
        return pd.DataFrame(columns=CURVE_COLUMNS) if table is None else table.to_pandas()

    def statuses(self) -> dict[str, str]:
        """trial_id -> status of what is on disk (reads two columns: the compacted ones + new files)."""
        table = _Reader(self, self.trials, self.compacted_trials, ["trial_id", "status"], _is_row).table()
        if table is None:
            return {}
        return dict(zip(table.column("trial_id").to_pylist(), table.column("status").to_pylist()))

    def done_ids(self) -> set[str]:
        """Trials with an ok row: a re-run skips these and retries failed ones."""
        return {tid for tid, st in self.statuses().items() if st == "ok"}

    # -- compaction
    def compact(self) -> tuple[int, int]:
        """Merge every row (and curve) file into compact/*.parquet with each file's stamp; returns
        (rows, curve rows). Safe with writers running: a file replaced meanwhile no longer matches
        its stamp, so readers take the new file, not the compacted copy."""
        n = []
        for src, dest, ok in ((self.trials, self.compacted_trials, _is_row), (self.curves, self.compacted_curves, _is_curve)):
            reader = _Reader(self, src, dest, None, ok, keep_stamp=True)
            table = reader.table()
            if table is not None and not reader.changed:
                n.append(table.num_rows)  # nothing new, nothing gone: the compacted file is current
                continue
            if table is None:
                Path(dest).unlink(missing_ok=True)
                n.append(0)
                continue
            import pyarrow.parquet as pq

            atomic_write(dest, lambda tmp, t=table: pq.write_table(t, tmp, row_group_size=4096))
            n.append(table.num_rows)
        return n[0], n[1]


def dedupe(df: pd.DataFrame) -> pd.DataFrame:
    """One row per trial (per study when several are read together): the latest by started_at."""
    keys = [c for c in ("study", "trial_id") if c in df]
    if "trial_id" not in df or not df.duplicated(keys).any():
        return df.reset_index(drop=True)
    if "started_at" in df:
        df = df.sort_values("started_at", kind="stable", na_position="first")
    return df.drop_duplicates(keys, keep="last").sort_index().reset_index(drop=True)


# ----------------------------------------------------------------------------- reading many files


def _is_row(table: object) -> bool:
    names = table.schema.names  # type: ignore[attr-defined]
    return "trial_id" in names and "status" in names and table.num_rows >= 1  # type: ignore[attr-defined]


def _is_result(table: object) -> bool:
    return table.num_rows >= 1 and bool(set(table.schema.names) & set(COLUMNS))  # type: ignore[attr-defined]


def _is_curve(table: object) -> bool:
    return "trial_id" in table.schema.names  # type: ignore[attr-defined]


def _read_file(path: Path, columns: list[str] | None = None, optional: bool = False, stamp: list | None = None) -> object:
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
            return pq.read_table(f, columns=columns)
    except FileNotFoundError:
        return None
    except (OSError, pa.ArrowException, ValueError):
        return pa.table({})  # truncated, junk, not Parquet: an empty table the check rejects


class _Reader:
    """The rows of one directory of per-trial files, through its compacted file when there is one."""

    def __init__(
        self,
        rd: ResultsDir,
        directory: Path,
        compacted: Path,
        columns: list[str] | None,
        check: Callable[[object], bool],
        keep_stamp: bool = False,
    ) -> None:
        self.rd, self.dir, self.compacted, self.columns = rd, directory, compacted, columns
        self.check, self.keep_stamp = check, keep_stamp
        self.changed = True  # False once table() found the compacted file exactly current

    def table(self) -> object:
        import pyarrow as pa

        files = self._listing()
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

    def _listing(self) -> dict[str, tuple[int, int, int]]:
        """name -> (size, mtime_ns, inode) of every row file (one scandir; temporaries skipped)."""
        out = {}
        try:
            with os.scandir(self.dir) as it:
                for e in it:
                    if e.name.endswith(ROW_SUFFIX) and not _is_temporary(e.name):
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
        table = _read_file(self.compacted, columns=cols)
        if table is None:
            return None, set()
        if not set(STAMP) <= set(table.schema.names) or not self.check(table):
            self.rd.unreadable.paths.append(self.compacted)  # rebuilt by the next compaction
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
        import pyarrow as pa

        stamp: list = []
        table = _read_file(self.dir / name, columns=self.columns, stamp=stamp)
        if table is None:
            return None  # removed meanwhile
        if not self.check(table):
            self.rd.unreadable.paths.append(self.dir / name)
            return None
        n = table.num_rows
        size, mtime, ino = stamp
        return (
            table.append_column("_file", pa.array([name] * n, pa.string()))
            .append_column("_size", pa.array([size] * n, pa.int64()))
            .append_column("_mtime_ns", pa.array([mtime] * n, pa.int64()))
            .append_column("_ino", pa.array([ino] * n, pa.int64()))
        )


# ----------------------------------------------------------------------------- module-level API (thin wrappers)


def study_dir(results_root: str | Path, study: str) -> Path:
    return ResultsDir.of(results_root, study).path


def write(out: TrialOutput, directory: str | Path) -> Path:
    return ResultsDir(directory).write(out)


def trial_files(directory: str | Path) -> list[Path]:
    rd = ResultsDir(directory)
    return sorted(rd.trials / n for n in _Reader(rd, rd.trials, rd.compacted_trials, None, _is_row)._listing())


def read(directory: str | Path) -> pd.DataFrame:
    return ResultsDir(directory).read()


def read_curves(directory: str | Path) -> pd.DataFrame:
    return ResultsDir(directory).read_curves()


def statuses(directory: str | Path) -> dict[str, str]:
    return ResultsDir(directory).statuses()


def done_ids(directory: str | Path) -> set[str]:
    return ResultsDir(directory).done_ids()


def save_study_file(src: str | Path, directory: str | Path) -> None:
    atomic_write(ResultsDir(directory).study_file, Path(src).read_bytes())


def compact(directory: str | Path) -> tuple[int, int]:
    return ResultsDir(directory).compact()
