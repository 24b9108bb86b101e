"""Data-parallel training on this machine's CPUs (issue 25): 2 ranks x 1 thread vs 1 rank x 2
threads for the same global batch, and the per-step cost of DDP's communication.

For each model, on synthetic 32 px RGB images, global batch --batch (AdamW, one training step =
forward, backward, optimizer step):

  1x2      one process, 2 torch threads, the whole batch
  1x1      one process, 1 thread, the whole batch (the baseline of scaling efficiency: 1x1 / 2x1 / 2)
  2x1      two processes (gloo, the harness's process group and BatchNorm sync), 1 thread each,
           half the batch each, DDP averaging the gradients
  2x1 nosync  the same two ranks inside DDP's no_sync() (no gradient all-reduce; resnet's
           synchronised BatchNorm still all-reduces its statistics): 2x1 - nosync is the
           per-step gradient communication

Printed: median step time of each (over --steps timed steps after --warmup), the ratio
2x1 / 1x2 (above 1: data parallelism costs more than threads here), and the communication share.
On 2 shared cores the point is correctness and overhead, not speed: on GPUs each rank has its own
device, so the comparison there is N GPUs vs one, which this machine cannot measure.

    python benchmarks/ddp_cpu.py                       # resnet@xs and vit@xs, ~1-2 min
    python benchmarks/ddp_cpu.py --models vit@xs --batch 128 --steps 30

Not a test: tests never assert on wall-clock time (DESIGN.md). Results: benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.multiprocessing as mp
import torch.nn.functional as F


def build(name: str) -> torch.nn.Module:
    from harness import zoo

    torch.manual_seed(0)
    return zoo.build(zoo.resolve(name), image_size=32, in_chans=3, num_classes=10)


def timed_steps(step: object, warmup: int, steps: int) -> list[float]:
    for _ in range(warmup):
        step()  # type: ignore[operator]
    out = []
    for _ in range(steps):
        t = time.perf_counter()
        step()  # type: ignore[operator]
        out.append(time.perf_counter() - t)
    return out


def make_step(net: torch.nn.Module, params: torch.nn.Module, batch: int, rank: int, world: int, sync: bool = True) -> object:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, 32, 32, generator=g)[rank * batch // world : (rank + 1) * batch // world]
    y = torch.randint(0, 10, (batch,), generator=g)[rank * batch // world : (rank + 1) * batch // world]
    opt = torch.optim.AdamW(params.parameters(), lr=1e-3)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        if sync:
            F.cross_entropy(net(x), y).backward()
        else:
            with net.no_sync():  # type: ignore[operator]
                F.cross_entropy(net(x), y).backward()
        opt.step()

    return step


def rank_main(rank: int, world: int, port: int, args: argparse.Namespace, out: dict) -> None:
    from harness import distributed

    torch.set_num_threads(1)
    ctx = distributed.init(rank, world, "127.0.0.1", port, torch.device("cpu"))
    for name in args.models:
        model = build(name)
        ddp = ctx.wrap(model, torch.device("cpu"))
        for mode, sync in (("2x1", True), ("2x1 nosync", False)):
            ctx.barrier()
            times = timed_steps(make_step(ddp, model, args.batch, rank, world, sync), args.warmup, args.steps)
            if rank == 0:
                out[(name, mode)] = statistics.median(times)
    distributed.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["resnet@xs", "vit@xs"])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    from harness.backends.launch import free_port

    results: dict = {}
    for name in args.models:
        for mode, threads in (("1x2", 2), ("1x1", 1)):
            torch.set_num_threads(threads)
            model = build(name)
            step = make_step(model, model, args.batch, 0, 1)
            results[(name, mode)] = statistics.median(timed_steps(step, args.warmup, args.steps))
    with mp.Manager() as manager:
        shared = manager.dict()
        mp.spawn(rank_main, args=(2, free_port(), args, shared), nprocs=2)
        results.update(shared)
    print(
        f"global batch {args.batch}, 32 px, median of {args.steps} steps after {args.warmup} warm-up; torch {torch.__version__}"
    )
    print(
        f"{'model':<10} {'1x2 ms':>8} {'1x1 ms':>8} {'2x1 ms':>8} {'nosync ms':>10} {'2x1/1x2':>8} {'eff':>5} {'comm ms':>8} {'comm %':>7}"
    )
    for name in args.models:
        one, single, two = results[(name, "1x2")], results[(name, "1x1")], results[(name, "2x1")]
        comm = two - results[(name, "2x1 nosync")]
        eff = single / two / 2  # img/s at 2 ranks / (2 x img/s at 1)
        print(
            f"{name:<10} {one * 1e3:8.1f} {single * 1e3:8.1f} {two * 1e3:8.1f} {(two - comm) * 1e3:10.1f} {two / one:8.2f} "
            f"{eff:5.2f} {comm * 1e3:8.1f} {100 * comm / two:6.0f}%"
        )


if __name__ == "__main__":
    main()
