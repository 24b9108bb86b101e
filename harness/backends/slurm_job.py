"""What each SLURM array task runs: its own module because it subclasses a submitit class, and
submitit is imported only where jobs are submitted or run (harness.backends.slurm stays light)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import submitit

from harness.backends import slurm_claims
from harness.store import ResultsDir

if TYPE_CHECKING:
    from harness.spec import Trial


def join_process_group(trial: Trial, pick_device: object) -> int:
    """A task of a multi-task job: the process group from submitit's job environment (rank = the
    task's global rank, world = the job's tasks; each task sees the GPU of its local rank)."""
    from harness import distributed

    env = submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=trial.resources.get("gpus", 0) > 0)
    distributed.init(env.rank, env.world_size, env.master_addr, env.master_port, pick_device(trial))  # type: ignore[operator]
    return env.rank


class TrialJob(submitit.helpers.Checkpointable):
    """What each array task runs. Checkpointable: on timeout/preemption submitit requeues it with
    the same trial, and the trial resumes from its checkpoint file (see harness.train)."""

    def __init__(self, out_dir: str, checkpoint_every: int, time_min: int) -> None:
        # a plain string: what the pickle carries stays the job's few settings (a test reads them as JSON)
        self.out_dir, self.checkpoint_every, self.time_min = out_dir, checkpoint_every, time_min

    def __call__(self, trial: Trial) -> str:
        from harness import distributed
        from harness.trial import pick_device, run_trial

        rd = ResultsDir(self.out_dir)
        job_id = submitit.JobEnvironment().job_id
        if slurm_claims.stored_by(rd, trial.trial_id) == job_id:
            return "stored"  # a requeue signal came after this job had stored its row: nothing left to do
        print(f"harness: trial {trial.trial_id} ({trial.label}) starts in SLURM job {job_id}", flush=True)
        ckpt = rd.checkpoint(trial.trial_id) if self.checkpoint_every else None
        rank = join_process_group(trial, pick_device) if trial.resources.get("workers", 1) > 1 else 0
        try:
            out = run_trial(trial, checkpoint_path=ckpt, checkpoint_every=self.checkpoint_every)
        finally:
            distributed.shutdown()
        if rank != 0:  # rank 0 stores the row and releases the claim
            return out.row["status"]
        if out.row["error"].startswith("UncompletedJobError"):  # submitit gave up requeueing after the time limit
            out.row["error"] = (
                f"TimeLimit: hit the SLURM time limit ({self.time_min} min)"
                + (" too many times" if self.checkpoint_every else "")
                + "; raise slurm.time"
                + ("" if self.checkpoint_every else " or set slurm.checkpoint_every to resume")
            )
        out.row["slurm_job"] = job_id
        rd.write(out)
        if ckpt is not None:
            ckpt.unlink(missing_ok=True)
        slurm_claims.release(rd, trial.trial_id, job_id)
        return out.row["status"]
