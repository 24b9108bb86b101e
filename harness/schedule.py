"""The learning rate of each step: linear warm-up, then cosine, constant or wsd (warmup, stable,
decay), and where a wsd run's shorter budgets branch from it (`BranchPoint`). Pure arithmetic
below harness/train.py, which applies it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from harness.spec.train_keys import decay_start


def lr_at(step: int, total: int, cfg: dict) -> float:
    """Linear warm-up to lr over warmup_steps, then cosine to 0, constant, or wsd: constant until
    `decay_start`, then linear or 1-sqrt to 0 over the last `decay_fraction` of the steps (before
    the decay starts, the lr does not depend on `total`: budgets can branch from one trunk)."""
    warm = min(cfg["warmup_steps"], max(total - 1, 0))
    if step < warm:
        return cfg["lr"] * (step + 1) / warm
    if cfg["schedule"] == "constant":
        return cfg["lr"]
    if cfg["schedule"] == "wsd":
        start = max(decay_start(cfg, total), warm)
        if step < start:
            return cfg["lr"]
        progress = (step - start) / (total - start)
        shape = cfg.get("decay_shape", "linear")
        return cfg["lr"] * (1 - (math.sqrt(progress) if shape == "1-sqrt" else progress))
    progress = (step - warm) / max(1, total - warm)
    return cfg["lr"] * 0.5 * (1 + math.cos(math.pi * progress))


@dataclass(frozen=True)
class Schedule:
    """The learning rate of each step (`lr_at`). A wsd branch's schedule is its own budget's: the
    same `lr(step)` as its trunk's before its decay start."""

    cfg: dict
    total: int

    def lr(self, step: int) -> float:
        return lr_at(step, self.total, self.cfg)

    def apply(self, opt: torch.optim.Optimizer, step: int) -> None:
        for group in opt.param_groups:
            group["lr"] = self.lr(step)


@dataclass(frozen=True)
class BranchPoint:
    """A shorter budget of a wsd run: after `step` steps (its decay start) the trunk saves to `path`
    the state that budget's own run has there (its curve points and best validation point included)."""

    step: int
    total: int
    path: Path


@dataclass
class Track:
    """A branch's own view of its trunk up to its decay start: its schedule, curve cadence and
    progress (a harness.train.Progress: its curve points and best validation point)."""

    point: BranchPoint
    schedule: Schedule
    every: int
    progress: Any
