"""The harness profiler vs a bare PyTorch loop vs torch.utils.benchmark.Timer, side by side in one run.

Same model object, same input batch, same threads, same warm-up and about the same number of
timed steps for all three; the order of the three rotates every repetition so drift (another
job starting on a shared machine) does not favour one. Each method reports one img/s number per
repetition, as a user would read it:

  harness  harness.profile.profile(): median over 5 timed blocks, CV extension on (the trials' code)
  bare     for-loop between two perf_counter reads after warm-up: mean img/s (timm benchmark style)
  timer    torch.utils.benchmark.Timer.blocked_autorange(min_run_time = the same budget): median

Printed per (model, mode): the median over repetitions of each method's number and its spread
across repetitions (CV and max-min range, in % of the median), and the ratios harness/bare and
timer/bare as the median of per-repetition ratios (the three runs of one repetition sit next to
each other in time, so pairing cancels slow drift of a shared machine's load).
Goal (issue 5): harness within 3% of bare, with less spread across repetitions.

    python benchmarks/bench_profiler.py                       # defaults: ~3 min on an idle core, 2-3x that when busy
    python benchmarks/bench_profiler.py --models resnet@s:32 --reps 3 --threads 2 --json out.json

Not a test: tests never assert on wall-clock time (DESIGN.md). Results: benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.utils.benchmark import Timer

from harness import flops, flops_train, hardware, zoo
from harness.profile import Settings, profile

METHODS = ("harness", "bare", "timer")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_steps(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, precision: str = "fp32"
) -> dict[str, Callable[[], object]]:
    """What a user writes by hand: the same work as the harness's steps, written independently
    (with `torch.autocast(bf16)` around the forward when the precision is amp-bf16)."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6)

    def cast() -> contextlib.AbstractContextManager:
        return torch.autocast(x.device.type, dtype=torch.bfloat16) if precision == "amp-bf16" else contextlib.nullcontext()

    def infer() -> object:
        with torch.no_grad(), cast():
            return model(x)

    def train() -> object:
        with cast():
            out = model(x)
        loss = F.cross_entropy(out.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    return {"infer": infer, "train": train}


def bare_loop(step: Callable[[], object], device: torch.device, *, warmup: int, iters: int, batch: int) -> float:
    for _ in range(warmup):
        step()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        step()
    sync(device)
    return iters * batch / (time.perf_counter() - t0)


def timer_run(step: Callable[[], object], *, warmup: int, budget_s: float, batch: int, threads: int) -> float:
    for _ in range(warmup):
        step()
    m = Timer(stmt="step()", globals={"step": step}, num_threads=threads).blocked_autorange(min_run_time=budget_s)
    return batch / m.median


def harness_run(
    model: torch.nn.Module,
    mode: str,
    device: torch.device,
    dims: dict,
    gmacs: tuple[float, float],
    *,
    warmup: int,
    iters: int,
    batch: int,
    threads: int,
    precision: str = "fp32",
) -> tuple[float, float, int]:
    """(img/s, within-run CV, timed steps) from the profiler trials use, on the shared model."""
    s = Settings(batch_size=batch, mode=mode, warmup=warmup, iters=iters, threads=threads, latency=False, precision=precision)
    rec = profile(lambda: model, s, device, gmacs=gmacs, **dims)
    return rec[f"{mode}_img_s"], rec[f"{mode}_cv"], rec[f"{mode}_steps"]


def across(xs: list[float]) -> tuple[float, float, float]:
    """(median, CV, (max - min) / median) over repetitions."""
    med = statistics.median(xs)
    cv = statistics.stdev(xs) / statistics.fmean(xs) if len(xs) > 1 else math.nan
    return med, cv, (max(xs) - min(xs)) / med


def bench_model(name: str, size: int, args: argparse.Namespace, device: torch.device) -> list[dict]:
    ms = zoo.resolve(name)
    dims = {"image_size": size, "in_chans": 3, "num_classes": args.num_classes}
    gmacs = (flops.forward_gmacs(ms, **dims), flops_train.train_gmacs(ms, **dims))
    torch.manual_seed(0)
    model = zoo.build(ms, **dims).to(device)
    x = torch.randn(args.batch, 3, size, size, device=device)
    y = torch.randint(0, args.num_classes, (args.batch,), device=device)
    steps = bare_steps(model, x, y, args.precision)
    rows = []
    for mode in ("infer", "train"):
        model.train(mode == "train")
        t0 = time.perf_counter()  # one calibration pass: warm-up for everyone, and the timer's budget
        for _ in range(args.warmup):
            steps[mode]()
        sync(device)
        step_s = (time.perf_counter() - t0) / args.warmup
        got: dict[str, list[float]] = {m: [] for m in METHODS}
        inner_cv, harness_steps = [], []
        for rep in range(args.reps):
            for k in range(len(METHODS)):
                method = METHODS[(rep + k) % len(METHODS)]
                model.train(mode == "train")
                if method == "harness":
                    v, cv, n = harness_run(
                        model,
                        mode,
                        device,
                        dims,
                        gmacs,
                        warmup=args.warmup,
                        iters=args.iters,
                        batch=args.batch,
                        threads=args.threads,
                        precision=args.precision,
                    )
                    inner_cv.append(cv)
                    harness_steps.append(n)
                elif method == "bare":
                    v = bare_loop(steps[mode], device, warmup=args.warmup, iters=args.iters, batch=args.batch)
                else:
                    v = timer_run(
                        steps[mode], warmup=args.warmup, budget_s=args.iters * step_s, batch=args.batch, threads=args.threads
                    )
                got[method].append(v)
        row = {
            "model": name,
            "image_size": size,
            "batch": args.batch,
            "mode": mode,
            "step_ms": step_s * 1e3,
            "harness_within_run_cv": statistics.median(inner_cv),
            "harness_steps": statistics.median(harness_steps),
        }
        for m in METHODS:
            med, cv, rng = across(got[m])
            row.update({f"{m}_img_s": med, f"{m}_cv": cv, f"{m}_range": rng, f"{m}_all": got[m]})
        for m in ("harness", "timer"):  # paired: ratio within each repetition, then the median
            ratios = [a / b for a, b in zip(got[m], got["bare"])]
            q = statistics.quantiles(ratios, n=4, method="inclusive") if len(ratios) > 1 else [ratios[0]] * 3
            row[f"{m}_vs_bare"], row[f"{m}_vs_bare_iqr"] = statistics.median(ratios), q[2] - q[0]
        rows.append(row)
        print(line(row), flush=True)
    return rows


def bench_overhead(args: argparse.Namespace, device: torch.device) -> list[dict]:
    """The methods' own cost per step, on a step so short (a 16->10 linear layer, batch 1) that the
    machine's noise is small next to it: what the harness adds (step closures, autocast/no_grad
    contexts, one clock read per block) compared with a hand-written loop, in microseconds."""
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 10)).to(device)
    dims = {"image_size": 4, "in_chans": 1, "num_classes": 10}
    x, y = torch.randn(1, 1, 4, 4, device=device), torch.randint(0, 10, (1,), device=device)
    steps, n, rows = bare_steps(model, x, y), args.overhead_iters, []
    for mode in ("infer", "train"):
        got: dict[str, list[float]] = {m: [] for m in METHODS}
        for _ in range(args.reps):
            model.train(mode == "train")
            got["bare"].append(1e6 / bare_loop(steps[mode], device, warmup=n // 10, iters=n, batch=1))
            s = Settings(batch_size=1, mode=mode, warmup=n // 10, iters=n, threads=args.threads, latency=False, max_rounds=1)
            rec = profile(lambda: model, s, device, gmacs=(1.6e-7, 4.8e-7), **dims)
            got["harness"].append(rec[f"{mode}_step_ms"] * 1e3)
            model.train(mode == "train")
            got["timer"].append(
                1e6 / timer_run(steps[mode], warmup=n // 10, budget_s=got["bare"][-1] * n / 1e6, batch=1, threads=args.threads)
            )
        row = {"mode": mode, **{f"{m}_us": statistics.median(v) for m, v in got.items()}}
        row["harness_minus_bare_us"] = statistics.median([h - b for h, b in zip(got["harness"], got["bare"])])
        rows.append(row)
        print(
            f"# overhead, tiny linear, {mode:5s}: per step bare {row['bare_us']:.1f} us, harness {row['harness_us']:.1f} us "
            f"(paired difference {row['harness_minus_bare_us']:+.1f} us), timer {row['timer_us']:.1f} us",
            flush=True,
        )
    return rows


HEADER = (
    f"{'model':<14}{'px':>4}{'mode':>6}{'step ms':>9} | {'harness img/s':>13}{'CV':>6}{'range':>7} | "
    f"{'bare img/s':>10}{'CV':>6}{'range':>7} | {'timer img/s':>11}{'CV':>6}{'range':>7} | "
    f"{'harness/bare':>15}{'timer/bare':>15}{'h steps':>8}"
)


def line(r: dict) -> str:
    def trio(m: str, w: int) -> str:
        return f"{r[f'{m}_img_s']:>{w}.1f}{r[f'{m}_cv']:>6.1%}{r[f'{m}_range']:>7.1%}"

    return (
        f"{r['model']:<14}{r['image_size']:>4}{r['mode']:>6}{r['step_ms']:>9.1f} | {trio('harness', 13)} | "
        f"{trio('bare', 10)} | {trio('timer', 11)} | {r['harness_vs_bare']:>7.3f} ±{r['harness_vs_bare_iqr']:<6.3f}"
        f"{r['timer_vs_bare']:>7.3f} ±{r['timer_vs_bare_iqr']:<6.3f}{r['harness_steps']:>8.0f}"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--models", default="resnet@s:32,vit@xs:32,convnext@xs:32,mixer@xs:32", help="comma-separated family@size:image_size"
    )
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=1, help="torch threads for all three (default 1: a shared machine)")
    p.add_argument("--reps", type=int, default=7, help="repetitions of each method (order rotates)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=10, help="timed steps per repetition (the timer gets the same time budget)")
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--overhead-iters", type=int, default=2000, help="steps per method in the overhead check (0: skip it)")
    p.add_argument("--json", default=None, help="also write the rows here")
    p.add_argument(
        "--precision",
        default="fp32",
        choices=("fp32", "amp-bf16"),
        help="fp32 (on CUDA the bare loop then runs torch's defaults: cuDNN TF32 on) | amp-bf16 (all three under bf16 autocast)",
    )
    p.add_argument("--device", default="auto", help="auto (cuda if available) | cpu | cuda")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    fp = hardware.fingerprint(device)
    print(
        f"# {fp['cpu_model']} ({fp['cpu_count']} CPUs, {fp['cpu_capability']}), device {fp['device']}, "
        f"{args.threads} threads, torch {fp['torch_version']}, {args.precision}, batch {args.batch}, {args.reps} reps x "
        f"({args.warmup} warm-up + {args.iters} timed steps); load average {open('/proc/loadavg').read().split()[:3]}",
        flush=True,
    )
    print(HEADER, flush=True)
    t0 = time.time()
    rows = []
    for spec in args.models.split(","):
        name, _, size = spec.partition(":")
        rows += bench_model(name.strip(), int(size or zoo.default_image_size(zoo.resolve(name.strip()))), args, device)
    overhead = bench_overhead(args, device) if args.overhead_iters else []
    print(f"# {time.time() - t0:.0f} s; load average after: {open('/proc/loadavg').read().split()[:3]}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"fingerprint": fp, "args": vars(args), "rows": rows, "overhead": overhead}, f, indent=1)


if __name__ == "__main__":
    main()
