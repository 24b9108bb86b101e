"""Throughput, latency and peak memory of a model, measured with timing discipline.

Method (nanoGPT/airbench style, written down): build, warm up (`warmup` untimed iterations,
which also absorb cuDNN autotuning and allocator growth), then `iters` timed iterations, each
bracketed by a device synchronisation so that a clock read never races queued CUDA kernels.
We report the median and the inter-quartile range of per-iteration times, converted to img/s.
Inputs are random tensors of the trial's shape: throughput does not depend on pixel values.

Peak memory: on CUDA, `torch.cuda.max_memory_allocated` over the training-step measurement
(weights + gradients + optimizer state + activations). On CPU there is no allocator counter,
so we report the growth of the process's peak resident set (VmHWM, reset through
/proc/self/clear_refs) over its resident set before the model was built; `peak_mem_kind`
says which of the two a row holds.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from harness.train import autocast

LATENCY_ITERS_MIN = 5


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_iters(step: Callable[[], None], *, warmup: int, iters: int, device: torch.device,
               clock: Callable[[], float] = time.perf_counter) -> list[float]:
    """Seconds per iteration for `iters` timed calls after `warmup` untimed ones."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(iters):
        sync(device)
        t0 = clock()
        step()
        sync(device)
        times.append(clock() - t0)
    return times


def median_iqr(xs: list[float]) -> tuple[float, float]:
    if len(xs) < 2:
        return xs[0], 0.0
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return statistics.median(xs), q[2] - q[0]


def rate_stats(times: list[float], batch: int) -> tuple[float, float]:
    """(median img/s, IQR of img/s) from per-iteration times."""
    return median_iqr([batch / t for t in times])


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _reset_hwm() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # "5" resets the peak RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def profile_model(build: Callable[[], torch.nn.Module], *, in_chans: int, image_size: int, num_classes: int,
                  batch_size: int, warmup: int, iters: int, device: torch.device) -> dict:
    """Inference and training throughput, batch-1 latency and peak memory of `build()`."""
    rss0 = _rss_mb() if device.type == "cpu" else 0.0
    model = build().to(device)
    x = torch.randn(batch_size, in_chans, image_size, image_size, device=device)
    y = torch.randint(0, num_classes, (batch_size,), device=device)

    model.eval()

    @torch.no_grad()
    def infer(inp: torch.Tensor = x) -> None:
        with autocast(device):
            model(inp)

    infer_t = time_iters(infer, warmup=warmup, iters=iters, device=device)
    x1 = x[:1].clone()
    lat_t = time_iters(lambda: infer(x1), warmup=warmup, iters=max(iters, LATENCY_ITERS_MIN), device=device)

    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6)

    def train_step() -> None:
        with autocast(device):
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    hwm_ok = device.type == "cpu" and _reset_hwm()
    train_t = time_iters(train_step, warmup=warmup, iters=iters, device=device)
    if device.type == "cuda":
        peak, kind = torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_allocated"
    elif hwm_ok:
        peak, kind = _hwm_mb() - rss0, "cpu_peak_rss_growth"
    else:
        peak, kind = float("nan"), "unavailable"

    infer_med, infer_iqr = rate_stats(infer_t, batch_size)
    train_med, train_iqr = rate_stats(train_t, batch_size)
    return {
        "infer_img_s": infer_med,
        "infer_img_s_iqr": infer_iqr,
        "train_img_s": train_med,
        "train_img_s_iqr": train_iqr,
        "latency_ms_p50": statistics.median(lat_t) * 1e3,
        "peak_mem_mb": peak,
        "peak_mem_kind": kind,
        "profile_batch_size": batch_size,
    }
