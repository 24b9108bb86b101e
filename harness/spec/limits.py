"""Caps on what a study may ask of the machine, checked at load before anything is allocated (issue 27).

A study once grew the driver to 21 GB until the kernel killed it (synthetic video, 100,000 frames):
no message, no row, the claim left behind. Here every trial's memory is estimated from numbers the
spec already has (no tensor is made) and compared with the machine's memory or `resources.memory_mb`:

    decoded data   (train + test) * C * T * H * W bytes (uint8), capped by a streamed dataset's max_memory_mb
    model          params * 4 B * 4 (fp32 weights, gradients and AdamW's two moments)
    one batch      batch * C * T * image_size^2 * 4 B (fp32 input; activations are not counted)

The profiler's batch (profile.batch_size, when profile.enabled) is checked the same way in place of
the training batch, and a refusal names profile.batch_size (it blamed the training batch).

Counting a model's parameters builds it (harness/flops: torch), so loading a study checks only what
needs no model (data and a batch; the model counted only when they alone are over the budget, for the
message), and the runner checks in full the trials it is about to run (`harness run`: those not done,
so a finished study never imports torch; `--dry-run`: all of them).

The counts that nothing else bounds (few_shot_draws, frames, model depth and width) have caps of their
own, in the style of the 4,096 px image cap (harness/spec/grid.py).
"""

from __future__ import annotations

from harness import data, zoo
from harness.errors import StudyError
from harness.spec.checks import Where

MAX_FEW_SHOT_DRAWS = 1000  # the spread of 5 draws is already stable; 1e8 draws ran unbounded
MAX_FRAMES = 1024  # clip length: 1024 RGB frames at 112 px are 154 MB per clip as uint8
MAX_DEPTH = 512  # layers / blocks per model (a 10,000-layer MLP took 64 s to count)
MAX_WIDTH = 65536  # units per layer (an MLP at this width on 28 px is 51M params per layer)
_DEPTH_KEYS = ("depth", "depths", "layers", "blocks")
MB = 2**20


def check_count(value: int, cap: int, key: str, where: Where, what: str) -> None:
    if value > cap:
        raise where.error(f"{value} {what} is above the {cap} limit", key, f"use at most {cap}")


def check_shape(ms: zoo.ModelSpec, where: Where, key: str) -> None:
    """Depth and width of an explicit shape, bounded before the model is ever built."""
    for k, v in ms.shape.items():
        counts = v if isinstance(v, list) else [v] if isinstance(v, int) and not isinstance(v, bool) else []
        cap = MAX_DEPTH if k in _DEPTH_KEYS else MAX_WIDTH
        total = sum(counts) if k in _DEPTH_KEYS else max(counts, default=0)
        if total > cap:
            raise where.error(
                f"{ms.name} {k} {v} is above the {cap} limit", key, f"use a {k} of at most {cap} (a shape this size never fits)"
            )


def machine_mb() -> float:
    import psutil

    return psutil.virtual_memory().total / MB


def data_mb(info: data.DataInfo) -> float:
    """The decoded dataset in memory (uint8); a streamed dataset holds at most its max_memory_mb."""
    per = info.in_chans * max(info.frames, 1) * info.native_size**2
    mb = (info.train_size + info.test_size) * per / MB
    cap = {**info.source, **info.config}.get("max_memory_mb")
    return min(mb, float(cap)) if isinstance(cap, (int, float)) else mb


def batch_mb(trial: object, info: data.DataInfo, batch_size: int | None = None) -> float:
    """One fp32 input batch of a trial in MiB: its training batch, or `batch_size` (the profiler's)."""
    t = trial
    n = t.batch_size if batch_size is None else batch_size  # type: ignore[attr-defined]
    return n * info.in_chans * max(t.frames or 0, 1) * t.image_size**2 * 4 / MB  # type: ignore[attr-defined]


def trial_mb(trial: object, info: data.DataInfo, batch_size: int | None = None) -> tuple[float, str]:
    """(estimate in MiB, what it is made of) for one trial (a spec.model.Trial); `batch_size`: the
    profiler's batch in place of the training batch."""
    from harness import flops  # torch: only for trials about to run, or a study refused at load

    t = trial
    frames = t.frames or 0  # type: ignore[attr-defined]
    params = flops.param_count(
        t.model,  # type: ignore[attr-defined]
        image_size=t.image_size,  # type: ignore[attr-defined]
        in_chans=info.in_chans,
        num_classes=info.num_classes,
        frames=frames,
    )
    model = params * 4 * 4 / MB
    n = t.batch_size if batch_size is None else batch_size  # type: ignore[attr-defined]
    batch = batch_mb(t, info, batch_size)
    d = data_mb(info)
    which = "a batch" if batch_size is None else f"a profile batch ({n:,})"
    parts = f"data {d:,.0f} MiB + model and optimizer {model:,.0f} MiB ({params / 1e6:,.1f}M params) + {which} {batch:,.0f} MiB"
    return d + model + batch, parts


def check_study(study: object, info: data.DataInfo, where: Where) -> None:
    """The caps that need no trial: model shapes, clip lengths, few-shot draws."""
    g = study.grid  # type: ignore[attr-defined]
    for i, m in enumerate(g["model"]):
        check_shape(m, where, f"grid.model[{i}]")
    for i, f in enumerate(g.get("frames", [])):
        check_count(f, MAX_FRAMES, f"grid.frames[{i}]", where, "frames per clip")
    check_count(info.frames, MAX_FRAMES, "dataset.frames", where, "frames per clip")
    draws = study.eval.get("few_shot_draws", 0)  # type: ignore[attr-defined]
    check_count(draws, MAX_FEW_SHOT_DRAWS, "eval.few_shot_draws", where, "few-shot draws per shot count")


def check_memory(study: object, trials: list, info: data.DataInfo, where: Where, *, count_params: bool = True) -> None:
    """Refuse a study whose largest trial cannot fit in memory (`resources.memory_mb`, else this
    machine's): trained with its batch, or profiled with profile.batch_size. `count_params` False
    (at load): models are counted (torch) only when data and a batch alone are over the budget."""
    res = study.resources  # type: ignore[attr-defined]
    profile = study.profile  # type: ignore[attr-defined]
    budget = float(res.get("memory_mb") or machine_mb())
    source = "resources.memory_mb" if res.get("memory_mb") else "this machine's memory"
    seen: set = set()
    cases = []  # (trial, profile batch or None), once per distinct model, image size, clip and batch
    for t in trials:
        key = (t.model, t.image_size, t.frames, t.batch_size)
        if key not in seen:
            seen.add(key)
            cases += [(t, batch) for batch in ((None, profile["batch_size"]) if profile.get("enabled") else (None,))]
    if not count_params and all(data_mb(info) + batch_mb(t, info, batch) <= budget for t, batch in cases):
        return  # the model's share is counted for the trials about to run (the runner)
    for t, batch in cases:
        mb, parts = trial_mb(t, info, batch)
        if mb > budget:
            if batch is None:
                blame = "resources.memory_mb" if res.get("memory_mb") else "dataset"
                fix = "use a smaller dataset, clip or model, or set resources.memory_mb to the memory of the machine that runs it"
            else:  # the profiler's batch, not the training batch (issue 27: the message blamed training)
                blame = "profile.batch_size"
                fix = "use a profile.batch_size that fits (the training batch is a good start), or profile.enabled: false"
            raise StudyError(
                f"{t.label} needs about {mb:,.0f} MiB ({parts}), more than {source} ({budget:,.0f} MiB)",
                where=where.path,
                key=blame,
                fix=fix,
            )


def check_cpus(cpus: int, where: str) -> None:
    """The local backend runs one torch thread per CPU: more than the machine has is refused."""
    import os

    have = os.cpu_count() or 1
    if cpus > have:
        raise StudyError(
            f"resources.cpus is {cpus:g} but this machine has {have} cores",
            where=where,
            key="resources.cpus",
            fix=f"use at most {have} on the local backend (Ray and SLURM place trials on bigger machines)",
        )
