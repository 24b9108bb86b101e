"""Per-trial scheduling overhead of the backends, measured on a no-op-ish trial.

    python scripts/measure_overhead.py inproc
    python scripts/measure_overhead.py ray --address 127.0.0.2:6390 [-n 6]
    python scripts/measure_overhead.py slurm [-n 4] [--parallelism 2]

The trial: a 16 px synthetic dataset, the tiny ResNet (resnet@xs), 1 training step, no
profiling. Each backend runs exactly the code its workers run (`run_trial`), wrapped to record
the wall clock when the trial starts on the worker. Reported per trial, in seconds:
  submit->start   from handing the trial to the scheduler until run_trial starts on a worker
                  (Ray: task scheduling + worker start or reuse; SLURM: sbatch, scheduling, srun,
                  python start, imports and unpickling)
  run_trial       run_trial's own wall time on the worker
  submit->result  until the result is back at the driver
Times are wall-clock on this machine, not a benchmark of the schedulers in general.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

STUDY = """
name: overhead
dataset: {name: synthetic, num_classes: 4, channels: 1, image_size: 16, train_size: 64, test_size: 64}
grid: {model: [resnet@xs], data_size: [32], image_size: [16], seed: [SEEDS]}
train: {steps: 1, batch_size: 16, warmup_steps: 0, eval_size: 64, curve_eval_size: 64}
profile: {enabled: false}
"""


def trials(n: int) -> list:
    from harness import spec

    path = Path(tempfile.mkdtemp()) / "overhead.yaml"
    path.write_text(STUDY.replace("SEEDS", ", ".join(str(i) for i in range(n))))
    return spec.expand(spec.load_study(path))


def timed(trial: object) -> tuple[float, float, str]:
    """What each worker runs: (wall clock at start, run_trial seconds, status)."""
    start = time.time()
    from harness.trial import run_trial

    t0 = time.perf_counter()
    out = run_trial(trial)
    return start, time.perf_counter() - t0, out.row["status"]


def report(name: str, rows: list[tuple[float, float, float]]) -> None:
    """rows: (submit->start, run_trial, submit->result) per trial."""
    print(f"{name}: {len(rows)} trials")
    for label, i in (("submit->start", 0), ("run_trial", 1), ("submit->result", 2)):
        xs = [r[i] for r in rows]
        print(f"  {label:15s} median {statistics.median(xs):7.2f} s   min {min(xs):7.2f}   max {max(xs):7.2f}")


def inproc(_: argparse.Namespace) -> None:
    rows = []
    for t in trials(4):
        t0 = time.time()
        start, dur, status = timed(t)
        assert status == "ok"
        rows.append((start - t0, dur, time.time() - t0))
    print("(the first trial includes the imports: torch, timm, harness)")
    report("in process", rows)


def ray_backend(args: argparse.Namespace) -> None:
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(address=args.address, _node_ip_address=args.address.split(":")[0], log_to_driver=False, logging_level="ERROR")
    remote = ray.remote(timed)
    ts = trials(args.n)
    for wave in ("cold (first use of each worker)", "warm (workers reused)"):
        submitted = {}
        for t in ts:
            submitted[remote.options(num_cpus=1, max_retries=3, retry_exceptions=False).remote(t)] = time.time()
        rows, pending = [], list(submitted)
        while pending:
            done, pending = ray.wait(pending, num_returns=1, timeout=600)
            for ref in done:
                start, dur, status = ray.get(ref)
                rows.append((start - submitted[ref], dur, time.time() - submitted[ref]))
        report(f"ray {wave}", rows)
    ray.shutdown()


def slurm_backend(args: argparse.Namespace) -> None:
    import submitit

    folder = Path(tempfile.mkdtemp(prefix="harness_overhead_"))
    ex = submitit.SlurmExecutor(folder=folder)
    ex.update_parameters(time=5, cpus_per_task=1, array_parallelism=args.parallelism, job_name="harness-overhead")
    ts = trials(args.n)
    t0 = time.time()
    jobs = ex.map_array(timed, ts)
    print(f"sbatch of an array of {len(ts)}: {time.time() - t0:.2f} s")
    rows = []
    for job in jobs:
        start, dur, status = job.result()  # submitit polls sacct (scripts/slurm_up.sh installs a shim)
        rows.append((start - t0, dur, time.time() - t0))
    print(f"(array parallelism {args.parallelism}: later tasks wait for a free slot)")
    report("slurm", rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="what", required=True)
    sub.add_parser("inproc").set_defaults(func=inproc)
    r = sub.add_parser("ray")
    r.add_argument("--address", required=True)
    r.add_argument("-n", type=int, default=6)
    r.set_defaults(func=ray_backend)
    s = sub.add_parser("slurm")
    s.add_argument("-n", type=int, default=4)
    s.add_argument("--parallelism", type=int, default=2)
    s.set_defaults(func=slurm_backend)
    args = p.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    args.func(args)


if __name__ == "__main__":
    main()
