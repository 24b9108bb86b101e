"""Scaling efficiency of data-parallel training: the profiler's training step at 1 rank and at N ranks.

`harness profile MODEL --workers N` runs `rank_measure` through the launcher trials use
(harness/backends/launch.py: spawned ranks in one torch.distributed process group, gloo on CPU,
NCCL on CUDA with rank r on cuda:r), once with 1 rank and once with N. Each run is what a trial
with `resources.workers` does per step: the GLOBAL batch stays `batch_size`, each rank takes its
`batch_size / N` share, the model is wrapped as trials wrap it (DDP, synchronised BatchNorm), and
one step is forward, backward (gradient all-reduce included) and AdamW step.

Timing follows the profiler (harness/profile.py): `warmup` untimed steps, a barrier, then `blocks`
timed blocks, each bracketed by clock reads that synchronise the device; rank 0's blocks are the
result (DDP's all-reduce makes every step wait for the slowest rank). One round only: the ranks
must run the same number of steps, so a high spread is flagged (`scaling_unstable`), not extended.

    efficiency = img/s at N / (N x img/s at 1)       (img/s counts the global batch)

1 is perfect scaling; on a machine whose N ranks share cores (a 2-core CPU) expect far below 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from harness import zoo
from harness.distributed import Context
from harness.errors import StudyError
from harness.profile import Settings, make_workload
from harness.profile_timing import MIN_BLOCKS_FOR_CV, clock_for, measure, spread


@dataclass(frozen=True)
class Job:
    """What every rank needs to build and time the step (picklable: it crosses the spawn)."""

    model: str
    dims: dict
    settings: Settings
    threads: int  # torch intra-op threads per rank, the same at 1 and at N ranks
    device_type: str  # cpu | cuda (rank r on cuda:r)


def threads_per_rank(device: torch.device, workers: int, threads: int | None) -> int:
    """--threads, else on CPU the cores split over the N ranks (so N ranks do not oversubscribe them)."""
    import os

    if threads:
        return threads
    return max(1, (os.cpu_count() or 1) // workers) if device.type == "cpu" else 1


def check(workers: int, batch_size: int, device: torch.device) -> None:
    """Refuse what cannot be measured: fewer than 2 ranks, a batch that does not divide, too few GPUs."""
    if workers < 2:
        raise StudyError(f"--workers must be at least 2, got {workers}", key="--workers", fix="e.g. --workers 2")
    if batch_size % workers:
        raise StudyError(
            f"batch {batch_size} does not divide over {workers} ranks",
            key="--batch-size",
            fix=f"a multiple of {workers}, e.g. --batch-size {workers * max(1, batch_size // workers)}",
        )
    if device.type == "cuda" and torch.cuda.device_count() < workers:
        raise StudyError(
            f"{workers} ranks need {workers} GPUs, torch sees {torch.cuda.device_count()}",
            key="--workers",
            fix=f"--workers {torch.cuda.device_count()} or fewer (one GPU per rank)",
        )


def rank_measure(ctx: Context, job: Job) -> list[float]:
    """One rank: build, wrap as trials do, time training steps on this rank's share; per-step seconds."""
    torch.set_num_threads(job.threads)
    device = torch.device("cuda", ctx.rank) if job.device_type == "cuda" else torch.device("cpu")
    ms = zoo.resolve(job.model)

    def build() -> torch.nn.Module:
        torch.manual_seed(0)  # every rank starts from the same weights, as DDP requires
        return zoo.build(ms, **job.dims)

    s = job.settings
    w = make_workload(build, s, device, **job.dims)
    w.model = ctx.wrap(w.model, device)
    w.model.train()
    x, y = w.inputs(s.batch_size)
    step = w.train_step(ctx.share(x), ctx.share(y))
    for _ in range(s.warmup):
        step()
    ctx.barrier()  # every rank starts timing together
    timing = measure(step, clock_for(device), warmup=0, iters=s.iters, blocks=s.blocks, max_rounds=1)
    return timing.per_step_s


def scaling(run_ranks: object, model: str, dims: dict, settings: Settings, device: torch.device, workers: int) -> dict:
    """img/s at 1 and at `workers` ranks and the efficiency; `run_ranks(fn, world, device_type, *args)`
    is the launcher's (passed in: the profiler sits below the backends)."""
    check(workers, settings.batch_size, device)
    threads = threads_per_rank(device, workers, settings.threads)
    job = Job(model, dims, replace(settings, compile=False, threads=None), threads, device.type)
    try:
        per_step = {n: run_ranks(rank_measure, n, device.type, job) for n in (1, workers)}  # type: ignore[operator]
    except RuntimeError as e:  # a rank died or raised (out of memory, NCCL): a result, as the profiler's OOM is
        rec = record({1: [math.nan], workers: [math.nan]}, settings.batch_size, workers, threads, device, settings.cv_threshold)
        return {**rec, "scaling_error": str(e)[:500]}  # every number NaN
    return record(per_step, settings.batch_size, workers, threads, device, settings.cv_threshold)


def record(per_step: dict[int, list[float]], batch: int, workers: int, threads: int, device: torch.device, cv_max: float) -> dict:
    """The scaling_* columns from rank 0's per-step seconds at 1 and at `workers` ranks."""
    img_s = {n: spread([batch / t for t in times])[0] for n, times in per_step.items()}
    cvs = [spread(times)[2] for times in per_step.values() if len(times) >= MIN_BLOCKS_FOR_CV]
    return {
        "scaling_workers": workers,
        "scaling_backend": "nccl" if device.type == "cuda" else "gloo",
        "scaling_batch_per_rank": batch // workers,
        "scaling_threads_per_rank": threads,
        "scaling_img_s_1": img_s[1],
        "scaling_img_s_n": img_s[workers],
        "scaling_step_ms_1": spread(per_step[1])[0] * 1e3,
        "scaling_step_ms_n": spread(per_step[workers])[0] * 1e3,
        "scaling_efficiency": img_s[workers] / (workers * img_s[1]) if img_s[1] > 0 else math.nan,
        "scaling_unstable": any(cv > cv_max for cv in cvs),
        "scaling_error": "",
    }
