"""Successive halving over a sweep (issue 24): `search: {halving: {metric: val_acc, eta: 3, min_steps: R}}`.

Within each group of cells that differ only in swept train keys (lr, weight_decay, ...: the keys a
grid axis or an override varies, budgets excluded), every cell trains to rung R and stops there,
saving its checkpoint (store: halving/<trial_id>.pt); the best ceil(n/eta) by the metric on the
validation split continue from their checkpoints to eta*R, and so on; the last rung is the full
budget. The others end as `status: pruned` rows (the rung, its step, the metric there; their
numbers are those at the rung). A survivor's final row equals the row of an uninterrupted run.

Rungs are synchronous (every cell of a rung is ranked together) and run through the same backend
protocol as any wave: the plan travels in `Trial.branch` ({"checkpoint", "stop_at"}). The rung
arithmetic is ours, three lines: Optuna's SuccessiveHalvingPruner and Ray Tune's ASHAScheduler are
asynchronous (each trial is promoted against those that reached its rung before it, keeping
floor(n/eta)) and would need their own study objects or Tune's trial loop around our backends.

A re-run whose group already has finished or pruned cells runs its pending cells to the end (from
their rung checkpoints): a decision once stored is not taken again.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from harness import claims, store

if TYPE_CHECKING:
    from harness.spec import Study, Trial

RunWave = Callable[[list], Iterator[claims.Event]]


def rungs(min_steps: int, eta: int, total: int) -> list[int]:
    """The steps where cells are ranked: R, eta*R, eta^2*R, ... below `total` (the last rung is the full budget)."""
    out, r = [], min_steps
    while r < total:
        out.append(r)
        r *= eta
    return out


def keep(n: int, eta: int) -> int:
    return math.ceil(n / eta)


def groups(trials: Sequence[Trial], every: Sequence[Trial]) -> list[list[Trial]]:
    """`trials` grouped by their config without the train keys that vary across `every` (the study's trials)."""
    from harness.spec import BUDGET_KEYS, varying_train_keys

    swept = set(varying_train_keys(list(every))) - set(BUDGET_KEYS)
    out: dict[str, list[Trial]] = {}
    for t in trials:
        cfg = t.config()
        cfg["train"] = {k: v for k, v in cfg["train"].items() if k not in swept}
        out.setdefault(json.dumps(cfg, sort_keys=True, default=str), []).append(t)
    return list(out.values())


def _ranked(outs: list[store.TrialOutput], metric: str) -> list[store.TrialOutput]:
    """Best first (val_loss: lowest); a missing metric ranks last; ties keep the grid order."""
    sign = 1 if metric == "val_loss" else -1

    def score(o: store.TrialOutput) -> float:
        v = o.row.get(metric)
        return sign * v if isinstance(v, (int, float)) and math.isfinite(v) else math.inf

    return sorted(outs, key=score)


def pruned(out: store.TrialOutput, rung: int, step: int, metric: str) -> store.TrialOutput:
    row = dict(out.row, status="pruned", halving_rung=rung, pruned_step=step, pruned_metric=out.row.get(metric, math.nan))
    return store.TrialOutput(row=row, curve=out.curve)


def run(
    pending: list[Trial], study: Study, trials: Sequence[Trial], rd: store.ResultsDir, wave: RunWave
) -> Iterator[claims.Event]:
    """Every pending trial's final event: survivors' rows after the last rung, pruned rows, failed rows."""
    from harness.spec import total_steps

    h = study.search["halving"]
    pending_ids = {t.trial_id for t in pending}
    alive: list[list[Trial]] = []
    plain: list[Trial] = []
    for g in groups(trials, trials):
        mine = [t for t in g if t.trial_id in pending_ids]
        if len(mine) == len(g) > 1:
            alive.append(mine)
        else:
            plain.extend(mine)
    ckpt = lambda t: str(rd.rung_checkpoint(t.trial_id))  # noqa: E731
    finals = [dataclasses.replace(t, branch={"checkpoint": ckpt(t)}) for t in plain]
    level = 0
    while any(alive):
        todo = {}
        for g in alive:
            rs = rungs(h["min_steps"], h["eta"], total_steps(g[0].train, g[0].data_size))
            if level < len(rs):
                todo.update({t.trial_id: dataclasses.replace(t, branch={"checkpoint": ckpt(t), "stop_at": rs[level]}) for t in g})
            else:
                finals.extend(dataclasses.replace(t, branch={"checkpoint": ckpt(t)}) for t in g)
        outs = {ev.trial_id: ev for ev in wave(list(todo.values()))}
        survivors = []
        for g in alive:
            if g[0].trial_id not in todo:
                continue
            done = [outs[t.trial_id].output for t in g if outs.get(t.trial_id) and outs[t.trial_id].output is not None]
            for o in done:
                if not o.ok:
                    yield claims.Event(o.row["trial_id"], output=o)  # a failed rung is the trial's failed row
            ok = _ranked([o for o in done if o.ok], h["metric"])
            stay = {o.row["trial_id"] for o in ok[: keep(len(ok), h["eta"])]}
            for o in ok[len(stay) :]:
                yield claims.Event(
                    o.row["trial_id"], output=pruned(o, level, todo[o.row["trial_id"]].branch["stop_at"], h["metric"])
                )
            survivors.append([t for t in g if t.trial_id in stay])
        alive, level = [g for g in survivors if g], level + 1
    yield from wave(finals)
