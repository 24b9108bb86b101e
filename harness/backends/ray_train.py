"""Multi-worker trials on Ray: Ray Train's `TorchTrainer` runs `resources.workers` ranks, each with
the trial's per-worker `cpus`/`gpus` (`ScalingConfig`), sets up their process group (gloo on CPU,
NCCL on GPUs) and restarts the whole worker group when a worker or node dies (`FailureConfig`),
up to MAX_RETRIES times; the restarted ranks resume from the trial's checkpoint (rank 0 writes one
every CHECKPOINTS-th of the budget under results/<study>/ray_train/, which must be on storage
every node sees when the cluster has several). Each rank calls the same `run_trial`; rank 0's
`TrialOutput` travels back in its last report.

The fit runs inside a zero-CPU Ray task (`run` below), so the ray backend's driver waits on
multi-worker and single-worker trials alike, and a failed fit is a failed row.
"""

from __future__ import annotations

import pickle
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from harness.backends import failed_output

if TYPE_CHECKING:
    from harness.spec import Trial
    from harness.store import TrialOutput

OUTPUT = "trial_output.pkl"  # rank 0's TrialOutput inside the Ray Train checkpoint it reports
CHECKPOINTS = 10  # checkpoints per trial budget: a retried worker group loses at most a tenth of its steps


def run(trial: Trial, checkpoint_path: str, storage: str, max_failures: int) -> TrialOutput:
    """Fit one trial with a TorchTrainer; rank 0's output, or a failed row."""
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from harness.spec import total_steps

    res = trial.resources
    gpus = res.get("gpus", 0)
    every = max(1, total_steps(trial.train, trial.data_size) // CHECKPOINTS)
    trainer = TorchTrainer(
        rank_loop,
        train_loop_config={"trial": trial, "checkpoint_path": checkpoint_path, "every": every},
        scaling_config=ScalingConfig(
            num_workers=int(res["workers"]),
            use_gpu=gpus > 0,
            resources_per_worker={"CPU": res["cpus"], **({"GPU": gpus} if gpus else {})},
        ),
        run_config=RunConfig(
            name=f"trial-{trial.trial_id}", storage_path=storage, failure_config=FailureConfig(max_failures=max_failures)
        ),
    )
    try:
        result = trainer.fit()
    except Exception as e:  # Ray Train 2: a fit that used up its retries raises
        return failed_output(trial, e)
    finally:
        Path(checkpoint_path).unlink(missing_ok=True)  # done or given up: a later retry starts afresh
    if getattr(result, "error", None) is not None:
        return failed_output(trial, result.error)
    if result.checkpoint is None:
        return failed_output(trial, "Ray Train reported no output from rank 0")
    with result.checkpoint.as_directory() as d:
        return pickle.loads((Path(d) / OUTPUT).read_bytes())


def rank_loop(config: dict) -> None:
    """One rank inside Ray Train (its process group is up): run the trial, report rank 0's output."""
    import ray.train

    from harness import distributed
    from harness.trial import run_trial

    out = run_trial(config["trial"], checkpoint_path=Path(config["checkpoint_path"]), checkpoint_every=config["every"])
    metrics = {"status": out.row["status"]}
    if distributed.current().rank != 0:
        ray.train.report(metrics)  # every rank reports once; rank 0's report carries the output
        return
    with tempfile.TemporaryDirectory() as d:  # Ray Train keeps reported files, not metrics, as a run's result
        (Path(d) / OUTPUT).write_bytes(pickle.dumps(out))
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))
