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
    results/<study>/branches/<trunk_id>/<trial_id>.pt   wsd trunk checkpoints its branches start from
    results/<study>/halving/<trial_id>.pt               successive halving: a cell's checkpoint at its last rung
    results/<study>/ray_train/checkpoints/<trial_id>.pt                 Ray Train's multi-worker trials
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
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from harness.errors import StudyError
from harness.rowfiles import ROW_SUFFIX, Reader, read_file
from harness.schema import (  # noqa: F401  (re-exported: callers import them from here)
    COLUMNS,
    CURVE_COLUMNS,
    SCHEMA_VERSION,
    dedupe,
    empty_frame,
    is_curve_table,
    is_result_table,
    is_row_table,
    row_frame,
)


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


# ----------------------------------------------------------------------------- rows


def _parquet(df: pd.DataFrame) -> Callable[[str], None]:
    return lambda tmp: df.to_parquet(tmp, index=False)


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

    @classmethod
    def at(cls, where: str | Path | ResultsDir) -> ResultsDir:
        """`where` itself when it is one already (its readers' notes kept), else a new one for that path."""
        return where if isinstance(where, ResultsDir) else cls(where)

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

    def branch_checkpoint(self, trunk_id: str, trial_id: str) -> Path:
        """A wsd trunk's checkpoint at one cell's decay start (the trunk's own: trial_id == trunk_id)."""
        return self.path / "branches" / trunk_id / f"{trial_id}.pt"

    def rung_checkpoint(self, trial_id: str) -> Path:
        """A successive-halving cell's checkpoint at its last rung (a survivor continues from it)."""
        return self.path / "halving" / f"{trial_id}.pt"

    def drop_schedule_checkpoints(self) -> None:
        """Remove the wsd trunk and halving rung checkpoints (once every trial of the study is decided)."""
        for d in (self.path / "branches", self.path / "halving"):
            shutil.rmtree(d, ignore_errors=True)

    @property
    def ray_train(self) -> Path:
        """Ray Train's run directories of multi-worker trials (its storage_path; issue 25)."""
        return self.path / "ray_train"

    def ray_checkpoint(self, trial_id: str) -> Path:
        """A multi-worker Ray trial's checkpoint: a retried worker group resumes from it."""
        return self.ray_train / "checkpoints" / f"{trial_id}.pt"

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
        table = read_file(self.trial_file(trial_id))
        if table is None or table.num_rows == 0:
            return None
        row = table.slice(0, 1).to_pandas().iloc[0].to_dict()
        return {k: (None if v is pd.NA else v) for k, v in row.items()}

    def row_value(self, trial_id: str, column: str) -> object:
        """One column of one trial's row (None when the file or the column is absent)."""
        table = read_file(self.trial_file(trial_id), columns=[column], optional=True)
        return table.column(0)[0].as_py() if table is not None and table.num_columns and table.num_rows else None

    # -- all rows
    def read(self, lenient: bool = False) -> pd.DataFrame:
        """Every trial row (one per trial_id: a copied row under another name keeps the latest).
        A file that is not a trial row (no trial_id/status) is skipped as unreadable; lenient=True
        (the analysis) also takes rows from other tools that share any schema column."""
        table = Reader(
            self.unreadable.paths, self.trials, self.compacted_trials, None, is_result_table if lenient else is_row_table
        ).table()
        if table is None:
            return empty_frame()
        return dedupe(table.to_pandas())

    def read_curves(self) -> pd.DataFrame:
        table = Reader(self.unreadable.paths, self.curves, self.compacted_curves, None, is_curve_table).table()
        return pd.DataFrame(columns=CURVE_COLUMNS) if table is None else table.to_pandas()

    def statuses(self) -> dict[str, str]:
        """trial_id -> status of what is on disk (reads two columns: the compacted ones + new files)."""
        table = Reader(self.unreadable.paths, self.trials, self.compacted_trials, ["trial_id", "status"], is_row_table).table()
        if table is None:
            return {}
        return dict(zip(table.column("trial_id").to_pylist(), table.column("status").to_pylist()))

    def config_jsons(self) -> list[str]:
        """Every stored row's config_json (one column read: the compacted file + new files)."""
        cols = ["trial_id", "status", "config_json"]  # the first two: what makes a file a row file
        table = Reader(self.unreadable.paths, self.trials, self.compacted_trials, cols, is_row_table).table()
        return [] if table is None else table.column("config_json").to_pylist()

    def done_ids(self) -> set[str]:
        """Trials with an ok (or pruned: halving stopped them) row: a re-run skips these and retries failed ones."""
        return {tid for tid, st in self.statuses().items() if st in ("ok", "pruned")}

    # -- compaction
    def compact(self) -> tuple[int, int]:
        """Merge every row (and curve) file into compact/*.parquet with each file's stamp; returns
        (rows, curve rows). Safe with writers running: a file replaced meanwhile no longer matches
        its stamp, so readers take the new file, not the compacted copy."""
        n = []
        for src, dest, ok in (
            (self.trials, self.compacted_trials, is_row_table),
            (self.curves, self.compacted_curves, is_curve_table),
        ):
            reader = Reader(self.unreadable.paths, src, dest, None, ok, keep_stamp=True)
            table = reader.table()
            if table is not None and not reader.changed:
                n.append(table.num_rows)  # nothing new, nothing gone: the compacted file is current
                continue
            if table is None:
                Path(dest).unlink(missing_ok=True)
                n.append(0)
                continue
            write_compacted(dest, table)
            n.append(table.num_rows)
        return n[0], n[1]


def write_compacted(dest: Path, table: object) -> Path:
    """compact/trials.parquet or curves.parquet: `table` holds every row in file-name order with its
    file's stamp (rowfiles.stamped), as `Reader(..., keep_stamp=True).table()` returns them."""
    import pyarrow.parquet as pq

    return atomic_write(dest, lambda tmp: pq.write_table(table, tmp, row_group_size=4096))


# ----------------------------------------------------------------------------- module-level API (thin wrappers)


def study_dir(results_root: str | Path, study: str) -> Path:
    return ResultsDir.of(results_root, study).path


def write(out: TrialOutput, directory: str | Path) -> Path:
    return ResultsDir(directory).write(out)


def trial_files(directory: str | Path) -> list[Path]:
    rd = ResultsDir(directory)
    return sorted(
        rd.trials / n for n in Reader(rd.unreadable.paths, rd.trials, rd.compacted_trials, None, is_row_table).listing()
    )


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
