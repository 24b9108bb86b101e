"""The profiler's clocks and timed blocks (harness/profile.py's method, steps 1-4): a clock read
only after the device has finished the work (CUDA events on GPU, perf_counter after a sync on CPU),
`measure`'s warm-up and rounds of timed blocks, and the spread (median, IQR, CV) that decides
whether another round runs.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch

CV_THRESHOLD = 0.05  # 5%: the spread at which a comparison "A is 5% faster than B" stops being readable
BLOCKS = 5  # timed blocks per round: the smallest count with a meaningful median and IQR
MAX_ROUNDS = 3  # at most 3x the planned timed steps when the spread is high
MIN_BLOCKS_FOR_CV = 3  # the CV of two blocks says nothing: no extension, no unstable flag below three


# ----------------------------------------------------------------------------- clocks


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Clock(Protocol):
    def start(self) -> None: ...

    def stop(self) -> float: ...  # seconds since start(), once the device has finished the work


class WallClock:
    """perf_counter, read only after the device has drained its queue."""

    def __init__(self, device: torch.device, now: Callable[[], float] = time.perf_counter) -> None:
        self.device, self.now, self.t0 = device, now, 0.0

    def start(self) -> None:
        sync(self.device)
        self.t0 = self.now()

    def stop(self) -> float:
        sync(self.device)
        return self.now() - self.t0


class CudaEventClock:
    """CUDA events: timestamps on the GPU stream itself, so host-side jitter does not count."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.begin = torch.cuda.Event(enable_timing=True)
        self.end = torch.cuda.Event(enable_timing=True)

    def start(self) -> None:
        torch.cuda.synchronize(self.device)  # earlier work must not leak into this interval
        self.begin.record()

    def stop(self) -> float:
        self.end.record()
        self.end.synchronize()
        return self.begin.elapsed_time(self.end) / 1e3


def clock_for(device: torch.device) -> Clock:
    return CudaEventClock(device) if device.type == "cuda" else WallClock(device)


# ----------------------------------------------------------------------------- timing


def spread(xs: list[float]) -> tuple[float, float, float]:
    """(median, IQR, CV = stdev / mean); IQR and CV are NaN for a single value."""
    if len(xs) < 2:
        return xs[0], math.nan, math.nan
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return statistics.median(xs), q[2] - q[0], statistics.stdev(xs) / statistics.fmean(xs)


@dataclass
class Timing:
    per_step_s: list[float]  # one value per timed block: block seconds / steps in the block
    steps: int  # timed steps in all rounds
    rounds: int  # rounds of blocks run; > 1 means the spread was high and we measured longer
    cv_threshold: float
    compile_s: float = math.nan

    @property
    def median_s(self) -> float:
        return spread(self.per_step_s)[0]

    @property
    def cv(self) -> float:
        return spread(self.per_step_s)[2]

    @property
    def extended(self) -> bool:
        return self.rounds > 1

    @property
    def unstable(self) -> bool:  # False for NaN and for too few blocks to judge
        return len(self.per_step_s) >= MIN_BLOCKS_FOR_CV and self.cv > self.cv_threshold


def time_blocks(step: Callable[[], object], clock: Clock, *, steps_per_block: int, blocks: int) -> list[float]:
    out = []
    for _ in range(blocks):
        clock.start()
        for _ in range(steps_per_block):
            step()
        out.append(clock.stop() / steps_per_block)
    return out


def measure(
    step: Callable[[], object],
    clock: Clock,
    *,
    warmup: int,
    iters: int,
    blocks: int = BLOCKS,
    cv_threshold: float = CV_THRESHOLD,
    max_rounds: int = MAX_ROUNDS,
    compile_first: bool = False,
) -> Timing:
    """Per-step times of `step`: [compile call], warm-up, then rounds of timed blocks (module docstring)."""
    compile_s = math.nan
    if compile_first:
        clock.start()
        step()
        compile_s = clock.stop()
    for _ in range(warmup):
        step()
    n_blocks = max(1, min(blocks, iters))
    per_block = iters // n_blocks  # never more timed steps than asked for (at most n_blocks - 1 fewer)
    times = time_blocks(step, clock, steps_per_block=per_block, blocks=n_blocks)
    rounds = 1
    while rounds < max_rounds and n_blocks >= MIN_BLOCKS_FOR_CV and spread(times)[2] > cv_threshold:
        times += time_blocks(step, clock, steps_per_block=per_block, blocks=n_blocks)
        rounds += 1
    return Timing(times, per_block * n_blocks * rounds, rounds, cv_threshold, compile_s)
