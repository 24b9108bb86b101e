"""Packing: aggregate trained img/s of 1, 2, 4, 8 trials training at once on one device.

A study with `resources.gpus: 0.25` has Ray run four trials on one GPU: four separate worker
processes, each with its own CUDA context, time-sliced by the driver (no MPS). This benchmark
does the same thing without Ray (a bare GPU box may not have it): N worker processes
(multiprocessing, spawn), each training the same small model the way `harness.train` does —
device-resident uint8 data, batches gathered/resized on the device, bf16 autocast on CUDA,
AdamW, no host sync per step. Small models are launch-bound (the GPU idles while Python queues
the next kernels); with N processes one process's kernels run while the others launch theirs,
which is what packing buys.

Method: all workers start, build the model and warm up once (CUDA context, cuDNN autotune,
allocator). Then, for each N, the first N workers re-warm (3 steps, synchronised), report
ready, and start together on one event; each times `--steps` steps between two device
synchronisations. Aggregate img/s = all images / (last finish - first start); per-trial img/s is
each worker's own; slowdown = single-trial img/s / mean per-trial img/s at N. Workers not in a
round sit idle (their CUDA contexts take memory, not time).

    python benchmarks/packing.py --device cuda                 # N = 1, 2, 4, 8; ~1 min on one H100 (estimated)
    python benchmarks/packing.py --device cuda --quick         # fewer steps: ~30-45 s, estimated (gpu_check.sh)
    python benchmarks/packing.py --device cpu --quick          # N = 1, 2 (one thread each); CI

Not a test: tests never assert on wall-clock time (DESIGN.md). Results: benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing


def _worker(rank: int, args: argparse.Namespace, cmds: mp.Queue, results: mp.Queue, go: list) -> None:
    try:
        _train_on_command(rank, args, cmds, results, go)
    except BaseException:  # the driver waits on the queue: tell it, rather than leave it to time out
        import traceback

        results.put(("error", f"worker {rank}: {traceback.format_exc(limit=-4)}"))


def _train_on_command(rank: int, args: argparse.Namespace, cmds: mp.Queue, results: mp.Queue, go: list) -> None:
    import torch
    import torch.nn.functional as F

    from harness import data, spec, zoo
    from harness.train import autocast, make_optimizer

    torch.set_num_threads(1)  # as a trial with resources.cpus: 1
    device = torch.device(args.device)
    ds = data.load(
        {
            "name": "synthetic",
            "num_classes": 10,
            "channels": 1,
            "image_size": 28,
            "train_size": args.images,
            "test_size": 16,
            "seed": 0,
        }
    )
    split = data.to_device(ds.train, device)
    resident = data.is_resident(split)
    torch.manual_seed(rank)
    model = zoo.build(zoo.resolve(args.model), image_size=args.image_size, in_chans=1, num_classes=10).to(device).train()
    opt = make_optimizer(model, dict(spec.TRAIN_DEFAULTS, lr=1e-3))
    batcher = data.Batcher(ds, args.image_size, device)
    sampler = data.EpochSampler(len(split), args.batch_size, seed=rank)

    def step() -> None:
        idx = sampler.next_on(device) if resident else sampler.next()
        x = batcher(split.images[idx], train=True)
        with autocast(device):
            loss = F.cross_entropy(model(x).float(), split.labels[idx].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(args.warmup):
        step()
    sync()
    results.put(("up", rank))
    while (msg := cmds.get()) is not None:
        round_i, steps = msg
        for _ in range(3):
            step()
        sync()
        results.put(("ready", rank))
        go[round_i].wait()
        t0 = time.monotonic()  # CLOCK_MONOTONIC: one clock for all processes on the machine
        for _ in range(steps):
            step()
        sync()
        results.put(("done", rank, steps * sampler.batch_size, t0, time.monotonic()))


def _collect(results: mp.Queue, kind: str, n: int, timeout: float) -> list[tuple]:
    got = []
    while len(got) < n:
        msg = results.get(timeout=timeout)
        if msg[0] == "error":
            raise RuntimeError(msg[1])
        if msg[0] == kind:
            got.append(msg)
    return got


def run(args: argparse.Namespace) -> list[dict]:
    ctx = mp.get_context("spawn")  # CUDA cannot be forked; Ray's workers are separate processes too
    most = max(args.ns)
    cmds = [ctx.Queue() for _ in range(most)]
    results = ctx.Queue()
    go = [ctx.Event() for _ in args.ns]
    procs = [ctx.Process(target=_worker, args=(r, args, cmds[r], results, go), daemon=True) for r in range(most)]
    for p in procs:
        p.start()
    rows = []
    try:
        _collect(results, "up", most, timeout=300)
        for i, n in enumerate(args.ns):
            for r in range(n):
                cmds[r].put((i, args.steps))
            _collect(results, "ready", n, timeout=300)
            go[i].set()
            done = _collect(results, "done", n, timeout=600)
            images = sum(d[2] for d in done)
            wall = max(d[4] for d in done) - min(d[3] for d in done)
            per_trial = [d[2] / (d[4] - d[3]) for d in done]
            rows.append(
                {
                    "n": n,
                    "images": images,
                    "wall_s": wall,
                    "aggregate_img_s": images / wall,
                    "per_trial_img_s": statistics.mean(per_trial),
                    "per_trial_min": min(per_trial),
                    "per_trial_max": max(per_trial),
                }
            )
    finally:
        for q in cmds:
            q.put(None)
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.terminate()
    one = rows[0]["per_trial_img_s"] if rows and rows[0]["n"] == 1 else float("nan")
    agg1 = rows[0]["aggregate_img_s"] if rows and rows[0]["n"] == 1 else float("nan")
    for r in rows:
        r["gain"] = r["aggregate_img_s"] / agg1  # aggregate vs one trial alone
        r["slowdown"] = one / r["per_trial_img_s"]  # how much longer each packed trial takes
    return rows


def table(rows: list[dict], args: argparse.Namespace, device_name: str) -> str:
    head = (
        f"packing: {args.model} at {args.image_size} px, batch {args.batch_size}, {args.steps} timed steps per "
        f"trial, device {device_name}\n"
    )
    lines = [
        f"{'N':>3} {'aggregate img/s':>16} {'gain vs N=1':>12} {'per-trial img/s':>16} {'slowdown':>9}"
        f" {'per-trial min-max':>20} {'wall s':>7}"
    ]
    for r in rows:
        lines.append(
            f"{r['n']:>3} {r['aggregate_img_s']:>16,.0f} {r['gain']:>11.2f}x {r['per_trial_img_s']:>16,.0f}"
            f" {r['slowdown']:>8.2f}x {r['per_trial_min']:>9,.0f}-{r['per_trial_max']:<10,.0f} {r['wall_s']:>7.1f}"
        )
    return head + "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", help="auto (cuda if available) | cpu | cuda")
    p.add_argument("--model", default="resnet@xs")
    p.add_argument("--image-size", type=int, default=28)
    p.add_argument("--batch-size", type=int, default=None, help="default 256 on CUDA, 64 on CPU")
    p.add_argument("--ns", default=None, help="comma-separated trial counts (default 1,2,4,8; 1,2 on CPU)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per trial (default 300 CUDA, 30 CPU)")
    p.add_argument("--warmup", type=int, default=None, help="steps before any timing (default 30 CUDA, 3 CPU)")
    p.add_argument("--images", type=int, default=8192, help="synthetic training images each worker holds")
    p.add_argument("--quick", action="store_true", help="a third of the steps (and N = 1, 2 on CPU)")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the rows as JSON")
    args = p.parse_args()
    import torch

    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        print("error: --device cuda but torch sees no GPU", file=sys.stderr)
        return 2
    args.batch_size = args.batch_size or (256 if cuda else 64)
    args.ns = [int(n) for n in args.ns.split(",")] if args.ns else ([1, 2, 4, 8] if cuda else [1, 2])
    args.steps = args.steps or ((100 if args.quick else 300) if cuda else (10 if args.quick else 30))
    args.warmup = args.warmup if args.warmup is not None else (30 if cuda else 3)
    device_name = torch.cuda.get_device_name() if cuda else f"cpu ({os.cpu_count()} cores, 1 thread per trial)"
    rows = run(args)
    print(table(rows, args, device_name))
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "device": device_name,
                    "model": args.model,
                    "image_size": args.image_size,
                    "batch_size": args.batch_size,
                    "steps": args.steps,
                    "rows": rows,
                },
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
