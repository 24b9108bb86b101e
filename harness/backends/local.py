"""Sequential, in this process: for debugging (breakpoints and prints work as usual).

Needs nothing beyond torch and timm, so it is the backend for a bare GPU box without Ray.
A trial with `resources.workers: N > 1` runs as N data-parallel processes on this machine
(harness/backends/launch.py); the driver waits for them and stays alive whatever they do.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from harness.backends import Backend, require_gpu_if_asked

if TYPE_CHECKING:
    from harness.spec import Study, Trial
    from harness.store import TrialOutput


class Local(Backend):
    name = "local"

    def preflight(self, study: Study, flags: dict | None = None, *, address: str | None = None) -> None:
        require_gpu_if_asked(study)
        from harness.spec.limits import check_cpus  # late: `status` lists backends without torch

        check_cpus(study.resources["cpus"], str(study.path))  # 1e9 threads: libgomp died asking for 216 GB

    def execute(self, trials: Sequence[Trial], **_: object) -> Iterator[TrialOutput]:
        from harness.backends.launch import run_data_parallel
        from harness.trial import run_trial  # torch: imported when trials run, not when `status` lists backends

        for t in trials:
            yield run_data_parallel(t) if t.resources.get("workers", 1) > 1 else run_trial(t)


BACKEND = Local()
