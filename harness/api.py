"""The Python API: `harness.run`, `harness.load`, `harness.fit` and the `Results` they return.

The second face of the same calls as the CLI (DESIGN "One way through"): `run` goes through
`runner.run_study` exactly as `harness run` does, and `Results.table/fit/plot` through the functions
behind `harness table/fit/plot` (analysis `tuned_table`, `tuned_fit`, `tuned_plot`), so a notebook
and a shell get the same numbers. Bad input raises `StudyError` (the CLI's exit 2) with the same line.

    import harness
    res = harness.run({"name": "demo", "grid": {...}}, overrides=["train.steps=20"], backend="local")
    res.trials                  # one row per trial (pandas)
    res.table()                 # what `harness table` prints; .to_dict() for the data
    harness.fit(res, y="test_acc", x="data_size", by="family").to_dict()
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import StudyError

if TYPE_CHECKING:
    import pandas as pd

    from harness.analysis.fit_records import FitReport
    from harness.analysis.plot_style import PlotOutcome
    from harness.analysis.tables import Table

StudySource = str | Path | Mapping[str, Any]
RUN_OPTIONS = ("address", "smoke", "dry_run", "report", "wait")  # the rest of **options: the backend's flags


@dataclass
class Results:
    """A study's results: `path` (results/NAME, a root of several, or a .parquet/.csv of rows).
    `exit_code`: of the run that made them (`harness.run`; None from `harness.load`), as `harness run` exits."""

    path: Path
    include_all: bool = False
    exit_code: int | None = None
    _frames: tuple[pd.DataFrame, pd.DataFrame] | None = field(default=None, repr=False)

    def _read(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        if self._frames is None:
            from harness.analysis.io import load_results

            self._frames = load_results(self.path, include_all=self.include_all)
        return self._frames

    def reload(self) -> Results:
        """The same path read again (rows written since the first read included)."""
        self._frames = None
        return self

    @property
    def trials(self) -> pd.DataFrame:
        """One row per trial, as `harness sql`'s view `trials` (compacted read path)."""
        return self._read()[0]

    @property
    def curves(self) -> pd.DataFrame:
        """Learning-curve points (study, trial_id, step, ...), as the view `curves`."""
        return self._read()[1]

    def table(
        self,
        *,
        rows: Sequence[str] | None = None,
        cols: str = "data_size",
        value: str = "test_acc",
        agg: str = "mean",
        tune: Sequence[str] | None = None,
    ) -> Table:
        """`harness table`: str() is its markdown, `.to_dict()` its numbers."""
        from harness.analysis.tables import tuned_table

        return tuned_table(self.trials, rows=list(rows) if rows else None, cols=cols, value=value, agg=agg, tune=_opt_list(tune))

    def fit(
        self,
        y: str = "test_acc",
        x: str | Sequence[str] = "data_size",
        *,
        by: str | None = None,
        holdout: int = 0,
        bootstrap: int | None = None,
        seed: int = 0,
        tune: Sequence[str] | None = None,
        form: str = "auto",
    ) -> FitReport:
        """`harness fit`: str() is its summary, `.to_dict()` what `--json` prints; `form` as `--form`."""
        from harness.analysis.fits import tuned_fit

        xs = [x] if isinstance(x, str) else list(x)
        kw = {"bootstrap": bootstrap} if bootstrap is not None else {}
        return tuned_fit(self.trials, y, xs, by=by, holdout=holdout, seed=seed, tune=_opt_list(tune), form=form, **kw)

    def plot(
        self,
        kind: str = "scaling",
        *,
        x: str | None = None,
        y: str | None = None,
        out: str | Path | None = None,
        bootstrap: int | None = None,
        tune: Sequence[str] | None = None,
    ) -> PlotOutcome:
        """`harness plot`: figures into `out` (default RESULTS/plots); `.paths` lists them."""
        from harness.analysis.plots import tuned_plot
        from harness.store import ResultsDir

        trials, curves = self._read()
        out_dir = Path(out) if out else ResultsDir(self.path if self.path.is_dir() else self.path.parent).plots
        kw = {"bootstrap": bootstrap} if bootstrap is not None else {}
        return tuned_plot(trials, curves, kind, out_dir, x=x, y=y, tune=_opt_list(tune), **kw)

    def report(self, *, bootstrap: int | None = None) -> Path:
        """`harness report`: writes RESULTS/report/index.md and index.html; returns the markdown's path."""
        from harness.analysis.report import write_report

        kw = {"bootstrap": bootstrap} if bootstrap is not None else {}
        return write_report(self.path, include_all=self.include_all, **kw)


def load(results: str | Path, *, include_all: bool = False) -> Results:
    """The results of a study (results/NAME), a root of several, or a .parquet/.csv of rows.
    Read at first use; a path with no rows raises StudyError (the CLI's exit 2)."""
    path = Path(results)
    if not path.exists():
        from harness.analysis.io import FIX_PATH

        raise StudyError("results path does not exist", where=str(path), fix=FIX_PATH)
    return Results(path, include_all=include_all)


def fit(
    results: Results | str | Path,
    *,
    y: str = "test_acc",
    x: str | Sequence[str] = "data_size",
    by: str | None = None,
    **options: Any,
) -> FitReport:
    """`harness fit RESULTS --y Y --x X [--by BY]`; `options`: holdout, bootstrap, seed, tune, form."""
    res = results if isinstance(results, Results) else load(results)
    return res.fit(y, x, by=by, **options)


def run(
    study: StudySource,
    *,
    overrides: Sequence[str] = (),
    backend: str = "ray",
    results: str | Path = "results",
    **options: Any,
) -> Results:
    """Run a study as `harness run` does and return its results (finished trials are skipped).

    `study`: a path to a study file, the text of one (YAML), or its mapping (a dict);
    `overrides`: `key=value` strings as on the command line (`["train.lr=1e-3", "grid.seed=[0,1]"]`);
    `options`: address, smoke, dry_run, report (default True), wait, and the backend's flags
    (SLURM: partition, time, ...). Trials that fail are rows (`Results.exit_code` 1), as in the CLI."""
    from harness.cli.study import SLURM_FLAGS
    from harness.runner import prepare, run_study

    unknown = sorted(set(options) - set(RUN_OPTIONS) - set(SLURM_FLAGS))
    if unknown:
        raise TypeError(f"harness.run() got unknown options {unknown}; known: {sorted({*RUN_OPTIONS, *SLURM_FLAGS})}")
    flags = {k: options.pop(k, None) for k in SLURM_FLAGS}
    with _study_file(study) as path:
        name = prepare(path, smoke=bool(options.get("smoke")), overrides=list(overrides))[0].name
        code = run_study(path, backend=backend, results=results, flags=flags, overrides=list(overrides), **options)
    return Results(Path(results) / name, exit_code=code)


class _study_file:  # noqa: N801  (used as a context manager, like tempfile's)
    """A study file on disk for the runner (it copies the file into results/NAME/study.yaml):
    a path as given; YAML text or a mapping written to a temporary NAME.yaml."""

    def __init__(self, study: StudySource) -> None:
        self.study, self.tmp = study, None

    def __enter__(self) -> Path:
        import yaml

        s = self.study
        if isinstance(s, Path) or (isinstance(s, str) and "\n" not in s and not s.lstrip().startswith("{")):
            return Path(s)  # one line, not a flow mapping: a path (a missing file is the CLI's "study file not found")
        if isinstance(s, Mapping):
            text = yaml.safe_dump(_plain(s), sort_keys=False)
        elif isinstance(s, str):
            text = s
        else:
            raise TypeError(f"harness.run(study=...) takes a path, YAML text or a mapping, not {type(s).__name__}")
        name = s.get("name") if isinstance(s, Mapping) else None
        self.tmp = tempfile.TemporaryDirectory(prefix="harness-study-")
        path = Path(self.tmp.name) / f"{name if isinstance(name, str) and name.isidentifier() else 'study'}.yaml"
        path.write_text(text, encoding="utf-8")
        return path

    def __exit__(self, *exc: object) -> None:
        if self.tmp is not None:
            self.tmp.cleanup()


def _plain(v: Any) -> Any:
    """Mappings and sequences (tuples included) as the dicts and lists YAML writes."""
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def _opt_list(v: Sequence[str] | None) -> list[str] | None:
    return [v] if isinstance(v, str) else list(v) if v else None


__all__ = ["Results", "StudySource", "fit", "load", "run"]
