"""Results as the tools people already use see them: one record per trial for MLflow and TensorBoard.

`load(path)` reads trials and curves through the store's readers (`harness.store.ResultsDir`:
the compacted read path, study.json membership) for one study directory, a root holding several,
or a file of rows; `harness sql` registers the same frames with DuckDB. `records()` turns the
rows into `Record`s (params = the resolved config as dotted keys, metrics = the row's numbers,
the learning curve as step metrics, tags = provenance), and the sinks in `export_mlflow` and
`export_tensorboard` write them. Each sink is idempotent: a trial already exported with the same
stored row is left alone; a trial re-run since (a failed one retried) replaces its run.

`Tracker` is the study's `tracking:` section at run time: the runner hands it each trial as it
is stored, and each curve point as the trial trains (`Tracker.live`, fed through harness.live); the
stored trial replaces its live run. A tracking failure warns once and turns that sink off, never
failing or losing the trial.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from harness.analysis import io
from harness.analysis.export_records import Record, Sink, record
from harness.errors import StudyError
from harness.store import CURVE_COLUMNS, ResultsDir

_CURVE_DTYPES = {"study": "string", "trial_id": "string", "epoch": "float64", "step": "Int64", "samples_seen": "Int64"}


# ----------------------------------------------------------------------------- reading


@dataclass
class Results:
    """Trial rows (one per study and trial) and curve points, both with a `study` column."""

    trials: pd.DataFrame
    curves: pd.DataFrame


def load(path: str | Path, *, include_all: bool = False) -> Results:
    """Rows of a study directory, of every study directory under a root, or of a .parquet/.csv file
    of rows (no curves then), as `harness table` reads them. Notes (rows left out, unreadable files)
    go to stderr, one line each."""
    p = Path(path)
    if not p.exists():
        raise StudyError("results path does not exist", where=str(p), fix=io.FIX_PATH)
    notes: list[str] = []
    if p.is_file():
        trials, curves = io.read_table(p), [_empty_curves()]
        trials = [trials.assign(study=trials["study"] if "study" in trials else p.stem)]
    else:
        trials, curves = [], []
        seen: dict[str, Path] = {}  # study name -> the directory that first held it
        for rd in io.study_dirs(p):
            t, c = _read_study(rd, include_all, notes)
            t, c = _own_name(rd, t, c, seen, notes)
            trials.append(t)
            curves.append(c)
    trials = [t for t in trials if not t.empty]
    if not trials:
        raise StudyError(
            "no trial rows found", where=str(p), fix="run the study first (`harness run STUDY.yaml`) or " + io.FIX_PATH
        )
    for note in notes:
        print(note, file=sys.stderr)
    rows = pd.concat(trials, ignore_index=True, sort=False) if len(trials) > 1 else trials[0]
    points = [c for c in curves if not c.empty]
    return Results(
        io.mark_variants(io.normalise(rows)),
        pd.concat(points, ignore_index=True, sort=False) if points else _empty_curves(),
    )


def _read_study(rd: ResultsDir, include_all: bool, notes: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    df = rd.read(lenient=True)
    kept, left_out = io.members(rd, df, include_all)
    if left_out:
        notes.append(io.left_out_note(rd, left_out))
    name = _study_name(rd, kept)
    if "study" not in kept or kept["study"].isna().any():
        kept = kept.assign(study=kept["study"].fillna(name) if "study" in kept else name)
    curves = rd.read_curves()
    if rd.unreadable.paths:
        notes.append(rd.unreadable.note())
    curves = curves[curves["trial_id"].isin(kept["trial_id"])] if "trial_id" in kept else curves.iloc[:0]
    curves = curves.drop(columns=["study"], errors="ignore")
    curves.insert(0, "study", name)
    return kept, curves.reset_index(drop=True)


def _own_name(
    rd: ResultsDir, trials: pd.DataFrame, curves: pd.DataFrame, seen: dict[str, Path], notes: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A copied study directory (cp -r results/a results/a_copy) holds rows of a study another
    directory holds too: both are kept, the copy's as the study named by its directory, with a
    note (issue 27: a root read kept one row per trial id, silently dropping the other copy)."""
    names = [n for n in (trials["study"].dropna().unique() if "study" in trials else []) if isinstance(n, str)]
    twice = [n for n in names if n in seen and seen[n] != rd.path]
    for n in names:
        seen.setdefault(n, rd.path)
    if not twice:
        return trials, curves
    label = rd.path.name
    notes.append(
        f"{rd.path} holds rows of study '{twice[0]}' as {seen[twice[0]]} does (a copy?): both kept, "
        f"these as study '{label}' (its directory's name)"
    )
    seen.setdefault(label, rd.path)
    trials = trials.assign(study=trials["study"].where(~trials["study"].isin(twice), label))
    curves = curves.assign(study=curves["study"].where(~curves["study"].isin(twice), label)) if "study" in curves else curves
    return trials, curves


def _study_name(rd: ResultsDir, rows: pd.DataFrame) -> str:
    """The study's name: its rows', else study.json's, else the directory's."""
    names = rows["study"].dropna().unique() if "study" in rows else []
    if len(names) == 1:
        return str(names[0])
    manifest = rd.read_json(rd.membership_file, {}) if rd.membership_file.is_file() else {}
    return str(manifest.get("name") or rd.path.name) if isinstance(manifest, dict) else rd.path.name


def _empty_curves() -> pd.DataFrame:
    cols = ["study", *CURVE_COLUMNS]
    return pd.DataFrame({c: pd.Series(dtype=_CURVE_DTYPES.get(c, "float64")) for c in cols})


def records(res: Results) -> list[Record]:
    by_trial: dict[tuple[str, str], list[dict]] = {}
    if not res.curves.empty:
        for key, g in res.curves.groupby(["study", "trial_id"], sort=False):
            by_trial[(str(key[0]), str(key[1]))] = g.to_dict("records")
    out = []
    for row in res.trials.to_dict("records"):
        out.append(record(row, by_trial.get((str(row.get("study")), str(row.get("trial_id"))), [])))
    return out


def sinks(*, mlflow: str | None = None, tensorboard: str | Path | None = None, key: str = "--") -> list[Sink]:
    """The sinks asked for; a missing package is a StudyError naming its extra (before anything is written).
    `key`: how the user named them, for messages ("--" for flags, "tracking." for a study)."""
    out: list[Sink] = []
    if mlflow:
        from harness.analysis.export_mlflow import MlflowSink

        out.append(MlflowSink(mlflow, key=f"{key}mlflow"))
    if tensorboard:
        from harness.analysis.export_tensorboard import TensorboardSink

        out.append(TensorboardSink(tensorboard, key=f"{key}tensorboard"))
    return out


def export_path(
    path: str | Path, *, mlflow: str | None = None, tensorboard: str | Path | None = None, include_all: bool = False
) -> list[str]:
    """`harness export`: every trial of the results to each sink; one summary line per sink."""
    if not mlflow and not tensorboard:
        raise StudyError("nothing to export to", key="harness export", fix="give --mlflow URI and/or --tensorboard DIR")
    targets = sinks(mlflow=mlflow, tensorboard=tensorboard)  # packages first: a missing one writes nothing
    recs = records(load(path, include_all=include_all))
    lines = []
    for sink, target in zip(targets, [t for t in (mlflow, tensorboard) if t]):
        with target_lock(target, sink.label):
            lines.append(_export_to(sink, recs))
    return lines


def target_lock(target: str | Path, label: str) -> contextlib.AbstractContextManager:
    """One export per tracker target at a time: two at once each created the runs the other had not
    seen yet (72 runs for 37 trials). An flock, so a killed export never leaves it held."""
    import fcntl
    import hashlib
    import tempfile

    @contextlib.contextmanager
    def held() -> Iterator[None]:
        key = hashlib.sha256(_canonical_target(str(target)).encode()).hexdigest()[:16]
        path = Path(tempfile.gettempdir()) / f"harness-export-{key}.lock"
        with open(path, "a+") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StudyError(
                    "another harness export to this target is running",
                    key=label,
                    fix="wait for it to finish, then run the same command again (done trials are skipped)",
                ) from None
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    return held()


def _canonical_target(target: str) -> str:
    """sqlite:///m.db and sqlite:////abs/m.db, runs/ and ./runs are one target each."""
    if target.startswith("sqlite:///"):
        return "sqlite:///" + str(Path(target[len("sqlite:///") :]).resolve())
    return target if "://" in target else str(Path(target).expanduser().resolve())


def _export_to(sink: Sink, recs: list[Record]) -> str:
    counts = {"created": 0, "updated": 0, "unchanged": 0}
    try:
        for study in sorted({r.study for r in recs}):
            sink.prepare(study)
        for rec in recs:
            counts[sink.log(rec)] += 1
    except (StudyError, KeyboardInterrupt):
        raise
    except Exception as e:  # a server that is down, a directory we cannot write: one line, exit 2
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise StudyError(
            f"export stopped after {sum(counts.values())} of {len(recs)} trials: {type(e).__name__}: {first}"[:600],
            key=sink.label,
            fix="check that the server runs / the directory is writable, then run the same command again (done trials are skipped)",
        ) from e
    finally:
        sink.close()
    done = ", ".join(f"{n} {what}" for what, n in counts.items())
    return f"{sink.label}: {len(recs)} trials ({done})"


class Tracker:
    """A study's `tracking:` section while it runs: each stored trial goes to every sink; a sink
    that fails warns once and is turned off (the rows are stored either way; `harness export`
    logs them later)."""

    def __init__(self, tracking: dict, warn: Callable[[str], None], rd: ResultsDir | None = None) -> None:
        self.sinks = sinks(mlflow=tracking.get("mlflow"), tensorboard=tracking.get("tensorboard"), key="tracking.")
        self.warn, self.rd = warn, rd
        self.results = rd.path if rd is not None else "RESULTS"

    def log(self, row: dict, curve: list[dict]) -> None:
        if not self.sinks:
            return
        if not curve and self.rd is not None and row.get("trial_id"):
            curve = _stored_curve(self.rd, str(row["trial_id"]))  # a backend whose workers store rows hands none over
        rec = record(row, curve)
        for sink in list(self.sinks):
            try:
                sink.finish(rec.trial_id)  # its live run (if any) is replaced by the stored row's
                sink.log(rec)
            except Exception as e:  # noqa: BLE001 - a tracker problem must not fail or lose the trial
                self._off(sink, e)

    def live(self, row: dict, curve: list[dict]) -> None:
        """A trial still training (harness.live): its curve so far; each sink logs the new points."""
        rec = record(row, curve)
        for sink in list(self.sinks):
            try:
                sink.live(rec)
            except Exception as e:  # noqa: BLE001 - a tracker problem must not fail the trial
                self._off(sink, e)

    def finish(self, trial_id: str) -> None:
        """A worker's trial ended: close its live runs (the driver logs the stored row)."""
        for sink in list(self.sinks):
            try:
                sink.finish(trial_id)
            except Exception as e:  # noqa: BLE001
                self._off(sink, e)

    def _off(self, sink: Sink, e: Exception) -> None:
        self.sinks.remove(sink)
        flag = "--mlflow" if sink.label.startswith("mlflow") else "--tensorboard"
        why = (str(e).strip().splitlines() or [""])[0]
        why = why if len(why) <= 160 else why[:160] + "..."
        self.warn(
            f"{sink.label}: tracking off for this run ({type(e).__name__}: {why}); "
            f"trials are still stored, `harness export {self.results} {flag} ...` logs them later"
        )

    def close(self) -> None:
        for sink in self.sinks:
            try:
                sink.close()
            except Exception:  # noqa: BLE001, S110 - closing a tracker must not fail the run
                pass


def _stored_curve(rd: ResultsDir, trial_id: str) -> list[dict]:
    """The learning curve the store holds for one trial ([] when there is none or it cannot be read)."""
    try:
        return pd.read_parquet(rd.curve_file(trial_id)).to_dict("records")
    except (OSError, ValueError):
        return []
