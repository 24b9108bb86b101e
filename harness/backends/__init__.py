"""Backends move `Trial`s to workers and `TrialOutput`s back; they never train or write schemas.

Each backend module has `execute(trials, **options) -> Iterator[TrialOutput]`, yielding
results as they finish (in any order). The runner stores each one as it arrives.
"""

from __future__ import annotations

import importlib
import traceback
from types import ModuleType

from harness.errors import StudyError, did_you_mean
from harness.spec import Trial
from harness.store import TrialOutput

BACKENDS = {"ray": "harness.backends.ray_backend", "local": "harness.backends.local", "slurm": "harness.backends.slurm"}


def get(name: str) -> ModuleType:
    if name not in BACKENDS:
        raise StudyError(f"unknown backend '{name}'", key="--backend", fix=did_you_mean(name, BACKENDS))
    return importlib.import_module(BACKENDS[name])


def failed_output(trial: Trial, error: BaseException | str) -> TrialOutput:
    """A failed row made outside the worker (the worker died, the scheduler gave up)."""
    from harness.trial import base_row  # late: keeps importing a backend cheap

    row = base_row(trial)
    row["error"] = error if isinstance(error, str) else f"{type(error).__name__}: {str(error).strip().splitlines()[-1] if str(error).strip() else ''}"[:500]
    if isinstance(error, BaseException):
        row["traceback"] = "".join(traceback.format_exception(error, limit=-8))
    return TrialOutput(row=row)
