"""SLURM jobs as claim holders (harness/claims.py knows only `HolderKind`s its callers pass).

At submission the driver hands each trial's claim to its array task (`hand_over`): the claim
outlives the driver and is live while `squeue` still lists the job. The job drops it after it
stored its row (`release`), or the driver does for a job that ended without one. Shared by the
driver side (harness.backends.slurm) and the job side (harness.backends.slurm_job); no submitit
here, so `harness status` and claims' liveness checks stay cheap.
"""

from __future__ import annotations

from harness import claims as claimlib
from harness.backends import squeue
from harness.store import ResultsDir

KEY = "slurm_job"  # the claim-file key (and the row column) naming the job; older drivers wrote the same key
HOLDER = claimlib.HolderKind(KEY, "SLURM job", squeue.active)  # live: squeue still lists it (None: cannot say)


def hand_over(held: claimlib.Claims, jobs: dict[str, str]) -> None:
    """The SLURM jobs (trial_id -> "123_4") now hold these trials: the claims end with the jobs."""
    held.hand_over(HOLDER, jobs)


def release(rd: ResultsDir, trial_id: str, job_id: str) -> None:
    """Called by a SLURM job after it stored its row (or for it): drop the claim if this job still holds it."""
    claimlib.release_external(rd, trial_id, HOLDER, job_id)


def stored_by(rd: ResultsDir, trial_id: str) -> str | None:
    """The SLURM job that wrote the trial's row, if a SLURM job did."""
    return rd.row_value(trial_id, KEY)
