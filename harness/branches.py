"""Branch scheduling of wsd budgets (issue 24): cells of a study that differ only in their budget
(`steps` or `epochs`) and train with `schedule: wsd` share their trunk. The longest cell is the
trunk: it trains once and saves, at each shorter cell's decay start, the state that cell's own run
has there; each shorter cell is then a branch that starts from that checkpoint and trains only its
decay. Branch rows equal independent runs (same trial ids; on CPU to the bit), and carry
`trunk_steps_reused`.

The runner hands the trunks to its backend first and the branches after (two waves through the
same backend protocol): the plan is written into each `Trial.branch` (not hashed), so any backend's
worker runs it through `run_trial` unchanged. A branch whose trunk checkpoint is missing (the trunk
ran in an earlier `--no-branch` run) trains from step 0: the same row, at full cost.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

from harness import store

if TYPE_CHECKING:
    import pandas as pd

    from harness.spec import Trial


def _branchable(t: Trial) -> bool:
    from harness.spec import total_steps

    cfg = t.train
    return cfg["schedule"] == "wsd" and not cfg.get("early_stop") and total_steps(cfg, t.data_size) > 0


def _group_key(t: Trial) -> str:
    """The trial's config without its budget: cells with the same key differ only in steps/epochs."""
    cfg = t.config()
    cfg["train"] = {k: v for k, v in cfg["train"].items() if k not in ("steps", "epochs")}
    return json.dumps(cfg, sort_keys=True, default=str)


def plan(trials: Sequence[Trial], rd: store.ResultsDir) -> list[list[Trial]]:
    """The trials in waves: [trunks and unbranched cells, branches] (one wave when nothing branches).
    `trials`: the pending ones (a finished trunk's pending branches still start from its checkpoint)."""
    from harness.spec import decay_start, total_steps  # torch: only where a study runs

    groups: dict[str, list[Trial]] = {}
    for t in trials:
        if _branchable(t):
            groups.setdefault(_group_key(t), []).append(t)
    planned: dict[str, Trial] = {}
    for cells in groups.values():
        cells = sorted(cells, key=lambda c: total_steps(c.train, c.data_size))
        trunk = cells[-1]
        longest = total_steps(trunk.train, trunk.data_size)
        points = []
        for c in cells[:-1]:
            total = total_steps(c.train, c.data_size)
            start = decay_start(c.train, total)
            if total == longest or start < c.train["warmup_steps"] or start > decay_start(trunk.train, longest):
                continue  # its lr before the decay would differ from the trunk's: trained on its own
            path = rd.branch_checkpoint(trunk.trial_id, c.trial_id)
            points.append([start, total, str(path)])
            planned[c.trial_id] = dataclasses.replace(c, branch={"start_from": str(path), "trunk": trunk.trial_id})
        if points:
            own = str(rd.branch_checkpoint(trunk.trial_id, trunk.trial_id))
            planned[trunk.trial_id] = dataclasses.replace(trunk, branch={"checkpoint": own, "points": points})
    placed = [planned.get(t.trial_id, t) for t in trials]
    first = [t for t in placed if "start_from" not in t.branch]
    second = [t for t in placed if "start_from" in t.branch]
    return [first, second] if second else [first]


def compute_note(df: pd.DataFrame) -> str:
    """'compute: X FLOPs spent of Y run independently (Z%)' when wsd branches reused trunk steps or
    halving pruned cells ('' otherwise). A pruned row's train_flops are its steps to the rung; run
    independently it would have trained its whole budget (max_steps)."""
    branched = "trunk_steps_reused" in df and df["trunk_steps_reused"].notna().any()
    cut = df[df["status"] == "pruned"]
    if not branched and cut.empty:
        return ""
    ok = df[df["status"] == "ok"]
    reused = ok["trunk_steps_reused"].fillna(0).astype(float) if branched else 0.0
    steps = ok["steps"].astype(float).where(ok["steps"] > 0)
    full = cut["train_flops"] * cut["max_steps"].astype(float) / cut["steps"].astype(float)
    independent = float(ok["train_flops"].sum() + full.sum())
    spent = float((ok["train_flops"] * (1 - reused / steps)).sum() + cut["train_flops"].sum())
    if not independent:
        return ""
    how = ", ".join(w for w, on in (("wsd branches reused trunk steps", branched), ("halving pruned cells", len(cut))) if on)
    return f"compute: {spent:.3g} FLOPs spent of {independent:.3g} run independently ({spent / independent:.0%}; {how})"
