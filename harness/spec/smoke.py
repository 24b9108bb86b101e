"""--smoke: the same grid shape at a tiny budget (every axis value kept; steps, subsets and profiling
shrunk), so a study proves in seconds that it loads and runs."""

from __future__ import annotations

import math

from harness import data
from harness.spec.model import Study

SMOKE_STEPS = 3
SMOKE_DATA_DIVISOR = 50  # 1k/4k/16k -> 20/80/320: keeps the grid's shape, runs in seconds


def smoke_sizes(sizes: list[int], floor: int) -> list[int]:
    """n -> ceil(n / 50), at least `floor`, kept distinct and in the same order (500 and 1000 must not
    both become 20: the smoke grid has as many trials as the real one)."""
    small: dict[int, int] = {}
    for n in sorted(set(sizes)):
        s = max(floor, math.ceil(n / SMOKE_DATA_DIVISOR)) if n else 0
        small[n] = max(s, max(small.values(), default=-1) + 1) if n else 0
    return [small[n] for n in sizes]


def smoke_resources(resources: dict) -> dict:
    """A GPU study's smoke run proves on a CPU-only machine (CI) that it loads and runs: its trials run on
    the CPU there instead of being refused (a real run still refuses gpus > 0 without CUDA). Resources are
    not part of a trial's id, so this changes no id."""
    if resources.get("gpus", 0) <= 0:
        return resources
    import torch  # a GPU study only: asking CUDA needs torch

    return dict(resources, gpus=0) if not torch.cuda.is_available() else resources


def smoke(study: Study) -> Study:
    """Same grid shape, tiny budget: every axis value kept, steps/subsets/profiling shrunk."""
    info = data.describe({**study.data_source, **study.dataset})
    floor = 2 * info.num_classes
    sizes = smoke_sizes(study.grid["data_size"], floor)
    train = smoke_train(study.train)
    profile = dict(study.profile, batch_size=min(study.profile["batch_size"], 8), warmup=1, iters=2)
    return Study(
        name=study.name + "-smoke",
        description=study.description,
        path=study.path,
        dataset=study.dataset,
        grid=dict(study.grid, data_size=sizes, **study.smoke_grid),
        train=train,
        profile=profile,
        resources=smoke_resources(study.resources),
        slurm=study.slurm,
        smoke=True,
        data_source=study.data_source,
        zips=study.zips,
        overrides=study.overrides,
        train_written=study.train_written,
        eval=study.eval,
        eval_source=study.eval_source,
        tracking=study.tracking,
        search=study.search,  # halving rungs at or past the smoke budget: every cell runs it
    )


SMOKE_VAL_SIZE = 100  # validation images under --smoke


def smoke_train(train: dict) -> dict:
    """A checked train config shrunk to seconds: 3 steps (or an early-stop ceiling of 3), batch <= 32,
    one curve point and 128 test images."""
    out = dict(
        train,
        steps=SMOKE_STEPS if train.get("steps") != 0 else 0,
        epochs=None,
        batch_size=min(train["batch_size"], 32),
        warmup_steps=1,
        eval_every=SMOKE_STEPS,  # one curve point, at the end: evaluation was most of a smoke trial's time (video clips)
        curve_eval_size=64,
        eval_size=128,
    )
    if train.get("early_stop"):
        out.update(steps=None, early_stop={"patience": train["early_stop"]["patience"], "max_steps": SMOKE_STEPS})
    if train.get("val_size"):
        out["val_size"] = min(train["val_size"], SMOKE_VAL_SIZE)
    return out
