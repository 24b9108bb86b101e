"""Sequential, in this process: for debugging (breakpoints and prints work as usual)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from harness.spec import Trial
from harness.store import TrialOutput
from harness.trial import run_trial


def execute(trials: Sequence[Trial], **_: object) -> Iterator[TrialOutput]:
    for t in trials:
        yield run_trial(t)
