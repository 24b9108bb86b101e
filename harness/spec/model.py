"""A study and its trials: the data the rest of the harness reads (ids: harness/spec/identity.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from harness import zoo
from harness.spec import identity

PROFILE_DEFAULTS: dict[str, Any] = {"enabled": True, "batch_size": 64, "warmup": 3, "iters": 10}
# memory_mb: the memory a trial may use (None: this machine's), checked against each trial's estimate at load
RESOURCE_DEFAULTS: dict[str, Any] = {
    "cpus": 1,
    "gpus": 0,
    "workers": 1,
    "nodes": 1,
    "memory_mb": None,
}  # cpus/gpus: per worker (rank)


@dataclass(frozen=True)
class Trial:
    """One cell of the grid. `config()` is exactly what `trial_id` hashes."""

    study: str
    model: zoo.ModelSpec
    image_size: int
    data_size: int
    seed: int
    dataset: dict
    train: dict
    profile: dict
    resources: dict = field(default_factory=lambda: dict(RESOURCE_DEFAULTS))
    study_hash: str = ""
    # the study's dataset section as written (root:, download: ...): where the data lives, so it
    # reaches the worker, but not what it is, so moving a directory does not change trial ids
    data_source: dict = field(default_factory=dict)
    eval: dict = field(default_factory=dict)  # the eval section, canonical (harness/spec/eval_section.py); hashed only when set
    eval_source: tuple = ()  # each eval dataset's section as written (where it lives): not hashed, like data_source
    # video datasets only (None for images, and then not in the hashed config, so image ids stay):
    # the clip length T and the stride s; a clip is native frames 0, s, ..., (T-1)s
    frames: int | None = None
    frame_stride: int | None = None
    # issue 24: what the runner scheduled for a branched wsd budget (not hashed): a trunk's
    # {"checkpoint": path, "points": [[step, total, path], ...]}, or a branch's {"start_from": path}
    branch: dict = field(default_factory=dict)

    def data_config(self) -> dict:
        return {**self.data_source, **self.dataset}

    def config(self) -> dict:
        return identity.trial_config(self)

    @cached_property
    def trial_id(self) -> str:
        # computed once (a trial is frozen; its dicts are never changed in place): a dry run asked it
        # 7 times per trial, 140k hashes for 20k seeds (issue 27)
        return identity.config_hash(self.config())

    @property
    def batch_size(self) -> int:
        """The batch training uses: the whole subset when it is smaller than train.batch_size (batch
        128 on data_size 100 trains full-batch on 100, and the row says 100). The id keeps hashing
        train.batch_size as written, so the ids of existing studies do not change."""
        return min(self.train["batch_size"], self.data_size) if self.data_size else self.train["batch_size"]

    @property
    def label(self) -> str:
        clip = f" {self.frames}f" + (f"/{self.frame_stride}" if self.frame_stride != 1 else "") if self.frames is not None else ""
        return f"{self.model.name} n={self.data_size} {self.image_size}px{clip} seed={self.seed}"


@dataclass(frozen=True)
class Study:
    name: str
    description: str
    path: str
    dataset: dict
    grid: dict  # model: [ModelSpec], data_size/image_size/seed: [int], then training-key axes: [value]
    train: dict  # the train section, checked (what every trial gets when nothing varies it)
    profile: dict
    resources: dict
    slurm: dict
    smoke: bool = False
    smoke_grid: dict = field(default_factory=dict)  # axes --smoke uses instead of the grid's (`smoke:` key)
    data_source: dict = field(default_factory=dict)  # the dataset section as written (see Trial.data_source)
    zips: tuple = ()  # groups of grid axes paired element-wise (grid.zip), each a tuple of axis names
    overrides: dict = field(default_factory=dict)  # family or model name -> train keys (a list is a sweep for it)
    train_written: dict = field(default_factory=dict)  # the train section before budget defaults: cells layer onto it
    eval: dict = field(default_factory=dict)  # the eval section, canonical (harness/spec/eval_section.py); {} without one
    eval_source: tuple = ()
    tracking: dict = field(default_factory=dict)  # {mlflow: URI, tensorboard: DIR}: trials logged as they finish
    search: dict = field(default_factory=dict)  # {halving: {metric, eta, min_steps}}: how the runner schedules, not ids

    @property
    def study_hash(self) -> str:
        return identity.study_hash(self)
