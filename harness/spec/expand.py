"""Expansion: a study's grid into its trials, each cell's train config layered and checked."""

from __future__ import annotations

import copy
import itertools
import json

from harness import data, zoo
from harness.errors import StudyError
from harness.spec.checks import Where
from harness.spec.grid import AXIS_ORDER
from harness.spec.model import Study, Trial
from harness.spec.simclr import require_probes
from harness.spec.smoke import smoke_train
from harness.spec.train_keys import BUDGET_KEYS, check_train


def expand(study: Study) -> list[Trial]:
    """The grid's cells, duplicates dropped. Axes cross in the order model, data_size, image_size,
    seed, then the training-key axes as written; a zip group moves as one axis (at the place of its
    first member) and pairs its lists element-wise. Each cell's train config layers, lowest first:
    the train section, the cell's training-key axes, the family's override, the model's override
    (a list in an override sweeps that key for that family or model). A layer that sets a budget
    (steps, epochs or early_stop) replaces the other two below it. Invalid cells raise StudyError."""
    trials, seen = [], set()
    g = study.grid
    study_hash = study.study_hash  # once per study: per trial it made a 20k-seed dry run quadratic (issue 27)
    resolved: dict[tuple, list[dict]] = {}  # a cell's train configs depend on its model and training-key axes only
    for cell in _cells(study):
        model = g["model"][cell["model"][0]]
        train_axes = tuple((k, i) for k, (i, _) in cell.items() if k not in AXIS_ORDER)
        key = (cell["model"][0], train_axes)
        if key not in resolved:  # 20k seeds resolve (deepcopy, check) once, not 20k times
            base = {k: g[k][i] for k, i in train_axes}
            resolved[key] = _resolve_train(study, model, base, {k: p for k, (_, p) in cell.items()})
        for shared in resolved[key]:
            train = dict(shared)
            t = Trial(
                study=study.name,
                model=model,
                image_size=g["image_size"][cell["image_size"][0]],
                data_size=g["data_size"][cell["data_size"][0]],
                seed=g["seed"][cell["seed"][0]],
                dataset=study.dataset,
                train=train,
                profile=study.profile,
                resources=study.resources,
                study_hash=study_hash,
                data_source=study.data_source,
                eval=study.eval,
                eval_source=study.eval_source,
                **{k: g[k][cell[k][0]] for k in ("frames", "frame_stride") if k in cell},
            )
            if t.trial_id not in seen:
                seen.add(t.trial_id)
                trials.append(t)
    return trials


def _cells(study: Study) -> list[dict[str, tuple[int, str]]]:
    """Each cell as {axis: (index into its list, where the value is written)}."""
    order = [k for k in study.grid if k in AXIS_ORDER] + [k for k in study.grid if k not in AXIS_ORDER]
    order = sorted(order, key=lambda k: AXIS_ORDER.index(k) if k in AXIS_ORDER else len(AXIS_ORDER) + order.index(k))
    group_of = {k: gi for gi, z in enumerate(study.zips) for k in z}
    units, placed = [], set()
    for k in order:
        if k in group_of:
            gi = group_of[k]
            if gi in placed:
                continue
            placed.add(gi)
            z = study.zips[gi]
            units.append([{a: (i, f"grid.zip[{gi}].{a}[{i}]") for a in z} for i in range(len(study.grid[z[0]]))])
        else:
            units.append([{k: (i, f"grid.{k}[{i}]")} for i in range(len(study.grid[k]))])
    return [{k: v for part in combo for k, v in part.items()} for combo in itertools.product(*units)]


def _resolve_train(study: Study, model: zoo.ModelSpec, axes: dict, paths: dict) -> list[dict]:
    """The checked train configs of one cell (more than one when an override holds a list)."""
    layers = [(paths, axes)]
    for name in (model.family, *[n for n in study.overrides if "@" in n and zoo.resolve(n).identity() == model.identity()]):
        if name in study.overrides:
            layers.append(({k: f"overrides.{name}.{k}" for k in study.overrides[name]}, study.overrides[name]))
    swept = [(path, k, v) for path, layer in layers for k, v in layer.items() if isinstance(v, list) and path is not paths]
    out = []
    for pick in itertools.product(*[range(len(v)) for _, _, v in swept]):
        chosen = {(id(path), k): (i, v[i]) for (path, k, v), i in zip(swept, pick)}
        cfg, source = copy.deepcopy(study.train_written), {}
        for path, layer in layers:
            for k, v in layer.items():
                if (id(path), k) in chosen:
                    i, v = chosen[(id(path), k)]
                    src = f"{path[k]}[{i}]"
                else:
                    src = path[k]
                if k in BUDGET_KEYS and v is not None:
                    cfg.update({b: None for b in BUDGET_KEYS})  # this layer's budget replaces the ones below it
                cfg[k] = copy.deepcopy(v)
                source[k] = src
        try:
            cfg = check_train(cfg, Where(study.path))
        except StudyError as e:
            k = e.key.split(".")[1] if e.key.startswith("train.") else ""
            raise (e.at(study.path, source[k] + e.key[len("train." + k) :]) if k in source else e) from None
        out.append(smoke_train(cfg) if study.smoke else cfg)
    return out


def check_cells(study: Study, info: data.DataInfo, where: Where) -> list[Trial]:
    """Every cell resolves (raises on the first bad one), and its subset fits beside its validation split.
    Returns the trials."""
    trials = expand(study)
    check_halving_budgets(trials, study.search, where)
    for t in trials:
        require_probes(t.train.get("objective", "supervised"), study.eval, where)
        check_batch_divides(t, study, where)
        val = t.train.get("val_size", 0)
        if val and t.data_size + val > info.train_size:
            raise StudyError(
                f"data_size {t.data_size} + val_size {val} is larger than the {info.name} training split "
                f"({info.train_size} images)",
                where=where.path,
                key="grid.data_size",
                fix=f"use data_size at most {info.train_size - val}, or a smaller train.val_size",
            )
    return trials


def check_halving_budgets(trials: list[Trial], search: dict, where: Where) -> None:
    """search.halving with wsd budgets that would branch (cells differing only in steps/epochs, issue 24)
    is refused: halving's rungs would train every budget on its own and drop the trunk's saving unseen."""
    if not search.get("halving"):
        return
    seen: dict[str, Trial] = {}
    for t in trials:
        if t.train.get("schedule") != "wsd" or t.train.get("early_stop"):
            continue
        cfg = t.config()
        cfg["train"] = {k: v for k, v in cfg["train"].items() if k not in BUDGET_KEYS}
        other = seen.setdefault(json.dumps(cfg, sort_keys=True, default=str), t)
        if other is not t:
            raise StudyError(
                f"successive halving and wsd budget branches do not compose: cells {other.trial_id} and {t.trial_id} "
                f"({t.label}) differ only in their budget (steps/epochs), and halving would train each budget on its own",
                where=where.path,
                key="search.halving",
                fix="drop search.halving (the budgets branch from one trunk), or run one study per budget with halving",
            )


def check_batch_divides(t: Trial, study: Study, where: Where) -> None:
    """A data-parallel trial splits every global batch evenly over its workers (harness.distributed)."""
    workers = study.resources.get("workers", 1)
    if t.batch_size % workers:
        raise StudyError(
            f"batch size {t.batch_size} of {t.label} does not divide over resources.workers {workers}",
            where=where.path,
            key="train.batch_size",
            fix=f"use a batch size that is a multiple of {workers} (each worker takes batch_size / workers samples)",
        )


def varying_train_keys(trials: list[Trial]) -> list[str]:
    """Train keys whose resolved value differs between trials (the dry-run and analysis columns)."""
    keys = list(dict.fromkeys(k for t in trials for k in t.train))
    return [k for k in keys if len({_canonical(t.train.get(k)) for t in trials}) > 1]


def _canonical(v: object) -> object:
    """A value as a set member: scalars as themselves (typed: 1 and 1.0 differ), the rest as JSON."""
    if v is None or isinstance(v, (str, int)) or (isinstance(v, float) and v == v):  # NaN != NaN: as JSON
        return (type(v).__name__, v)
    return json.dumps(v, sort_keys=True)
