"""Backends move `Trial`s to workers and `TrialOutput`s back; they never train or build paths.

Every backend is one `Backend` object (a module attribute `BACKEND`) answering the same
questions, so the runner holds no backend-specific branch and names no backend module:

    validate_options(study, flags, wait)   the study's backend sections and the run flags (no I/O)
    preflight(study, flags, address)       can this machine run it? (package installed, cluster
                                           reachable, GPU visible) -- before anything is written
    execute(trials, ...)                   yields each `TrialOutput` as it finishes, in any order
    writes_rows                            True when the workers store their own rows (SLURM)
    in_flight(rd)                          trial_id -> "queued" | "running", for `harness status`
    interrupted_note(rd)                   what keeps running after Ctrl-C ("" when nothing does)
    holder                                 the kind of external holder its claims are handed to
                                           (a claims.HolderKind with its liveness callback), or None

The results directory travels as one `harness.store.ResultsDir` (`rd`), never as a path string.

Importing this package or a backend module is cheap: ray and submitit are imported where they
are used, so `--backend local` works where neither is installed, and a backend whose package
is missing says which one and how to install it (exit 2, nothing written).
"""

from __future__ import annotations

import importlib
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import StudyError, did_you_mean

if TYPE_CHECKING:  # spec imports torch; backends are imported by `harness status`, which must not
    from harness.claims import Claims, HolderKind
    from harness.spec import Study, Trial
    from harness.store import ResultsDir, TrialOutput

BACKENDS = {"ray": "harness.backends.ray_backend", "local": "harness.backends.local", "slurm": "harness.backends.slurm"}


class Backend:
    """The protocol, with the answers most backends give; a backend overrides what differs."""

    name = ""
    requires: str | None = None  # the importable package it needs, e.g. "ray"
    install = ""  # the command that installs it, e.g. "pip install 'ray[default]'"
    writes_rows = False  # True: the workers store their own rows, the runner must not write them again
    flags: frozenset[str] = frozenset()  # `harness run` options only this backend takes (slurm: partition, ...)
    detaches = False  # True: `--no-wait` submits and returns, the work goes on without the driver
    holder: HolderKind | None = None  # the external holder its claims are handed to (SLURM: the job)

    def validate_options(self, study: Study, flags: dict | None = None, wait: bool = True) -> None:
        """No I/O. Every backend's study section (`slurm:`) is checked whichever backend runs the
        study, so a typo surfaces on a laptop before the cluster run; then this backend's flags."""
        for other in all_backends():
            other.check_section(study)
        given = sorted(k for k, v in (flags or {}).items() if v not in (None, [], {}) and k not in self.flags)
        if given or (not wait and not self.detaches):
            flag = f"--{given[0].replace('_', '-')}" if given else "--no-wait"
            takers = [b.name for b in all_backends() if (given[0] in b.flags if given else b.detaches)]
            raise StudyError(
                f"{flag} applies to --backend {' or '.join(takers)} only",
                key=flag,
                fix=f"add --backend {takers[0]}, or drop the flag ({self.name} drivers stay to collect results)",
            )

    def check_section(self, study: Study) -> None:
        """Validate this backend's own section of the study file, if it has one."""

    def preflight(self, study: Study, flags: dict | None = None, *, address: str | None = None) -> None:
        """Raise StudyError when this machine cannot run the study; called before anything is written."""
        self.require()

    def require(self) -> None:
        """The backend's package is importable, or one line naming it and its install command."""
        if self.requires is None:
            return
        try:
            importlib.import_module(self.requires)
        except ImportError:
            raise StudyError(
                f"--backend {self.name} needs the '{self.requires}' package, which is not installed",
                key="--backend",
                fix=f"{self.install}, or use --backend local",
            ) from None

    def execute(
        self,
        trials: Sequence[Trial],
        *,
        rd: ResultsDir,
        study: Study,
        claims: Claims | None = None,
        flags: dict | None = None,
        address: str | None = None,
        wait: bool = True,
    ) -> Iterator[TrialOutput]:
        raise NotImplementedError

    def in_flight(self, rd: ResultsDir) -> dict[str, str]:
        """trial_id -> "queued" | "running" for work this backend tracks outside the driver's claims."""
        return {}

    def interrupted_note(self, rd: ResultsDir) -> str:
        """Appended to the "interrupted" line: what goes on after the driver stops."""
        return ""


def get(name: str) -> Backend:
    if name not in BACKENDS:
        raise StudyError(f"unknown backend '{name}'", key="--backend", fix=did_you_mean(name, BACKENDS))
    return importlib.import_module(BACKENDS[name]).BACKEND


def all_backends() -> list[Backend]:
    return [get(name) for name in BACKENDS]


def in_flight(rd: ResultsDir | str | Path) -> dict[str, str]:
    """What every backend knows to be queued or running for this results directory (for `status`)."""
    from harness.store import ResultsDir  # pandas: only where a results directory is read

    out: dict[str, str] = {}
    for be in all_backends():
        out.update(be.in_flight(ResultsDir.at(rd)))
    return out


def holder_kinds() -> list[HolderKind]:
    """Every backend's kind of external claim holder: claims asks their liveness, whichever backend runs."""
    return [be.holder for be in all_backends() if be.holder is not None]


def cuda_visible() -> bool:
    import torch  # only `run` asks, and it needs torch anyway

    return torch.cuda.is_available()


def require_gpu_if_asked(study: Study) -> None:
    """`resources.gpus > 0` on a machine without CUDA would train on CPU, silently slower and not
    what the study says: refuse (backends that run trials on this machine call it)."""
    gpus = study.resources.get("gpus", 0)
    if gpus > 0 and not cuda_visible():
        raise StudyError(
            f"resources.gpus is {gpus:g} but no CUDA device is visible here",
            where=str(study.path),
            key="resources.gpus",
            fix="set gpus: 0 to train on CPU, or run on a machine with a GPU",
        )


def failed_output(trial: Trial, error: BaseException | str) -> TrialOutput:
    """A failed row made outside the worker (the worker died, the scheduler gave up)."""
    from harness.store import TrialOutput
    from harness.trial import base_row  # late: keeps importing a backend cheap

    row = base_row(trial)
    row["error"] = (
        error
        if isinstance(error, str)
        else f"{type(error).__name__}: {str(error).strip().splitlines()[-1] if str(error).strip() else ''}"[:500]
    )
    if isinstance(error, BaseException):
        row["traceback"] = "".join(traceback.format_exception(error, limit=-8))
    return TrialOutput(row=row)
