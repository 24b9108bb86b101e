"""The top-level sections of a study besides the grid and train: its keys, the name, profile,
resources, tracking, and the `smoke:` resolutions (the dataset and eval sections are checked by
harness/data/ and harness/spec/eval_section.py)."""

from __future__ import annotations

import re
from typing import Any

from harness import data, zoo
from harness.errors import StudyError
from harness.spec.checks import Where, as_list, is_number

TOP_KEYS = {
    "name",
    "description",
    "dataset",
    "grid",
    "overrides",
    "train",
    "profile",
    "resources",
    "slurm",
    "smoke",
    "eval",
    "tracking",
    "search",
}
# tracking: {mlflow: URI, tensorboard: DIR}: where finished trials are also logged, not what runs (no id changes)
TRACKING_KEYS = {"mlflow", "tensorboard"}
SMOKE_KEYS = {"image_size"}  # grid axes a study may replace under --smoke (1024 px on a CPU takes minutes per step)
NAME_MAX = 100  # characters: results/<name>-smoke/ and the store's temporary names stay far below the 255-byte file-name limit of ext4/xfs/APFS/NTFS


def check_name(name: Any, where: Where) -> None:
    """The study name is one directory under the results root: a single safe path component."""

    def bad(
        what: str,
        fix: str = f"use letters, digits, '_', '-', '.', starting with a letter or digit, at most {NAME_MAX} characters (it names the results directory)",
    ) -> StudyError:
        return StudyError(what, where=where.path, key="name", fix=fix)

    if not isinstance(name, str):
        raise bad(f"invalid study name {name!r}: not text")
    if name in (".", ".."):
        raise bad(f"study name {name!r} is not a directory of its own (results would land in or above the results root)")
    if name.startswith((".", "-")):
        raise bad(f"study name {name!r} starts with '{name[0]}' (a hidden directory, or an option to shell tools)")
    if len(name) > NAME_MAX:
        raise bad(f"study name is too long: {len(name)} characters, above the {NAME_MAX} allowed")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise bad(f"invalid study name {name!r}")


def check_description(raw: dict, where: Where) -> None:
    if not isinstance(raw.get("description", ""), (str, type(None))):
        raise where.error(
            f"description must be text, got {type(raw['description']).__name__}", "description", 'quote it: description: "..."'
        )


def check_profile(profile: dict, where: Where) -> None:
    if not isinstance(profile["enabled"], bool):
        raise where.error(
            f"profile.enabled must be true or false, got {profile['enabled']!r}",
            "profile.enabled",
            "write enabled: false (unquoted)",
        )
    # train.steps 0 with profiling off is a count-only study (params and GMACs, nothing timed or
    # trained: studies/vit_sizes.yaml); its rows carry those counts, so it is allowed
    for key in ("batch_size", "iters"):
        where.positive_int(profile[key], f"profile.{key}")
    where.nonneg_int(profile["warmup"], "profile.warmup")


def check_resources(res: dict, where: Where) -> None:
    for key in ("cpus", "gpus"):
        v = res[key]
        if not is_number(v) or v < 0:
            raise StudyError(
                f"resources.{key} must be a non-negative number, got {v!r}",
                where=where.path,
                key=f"resources.{key}",
                fix="e.g. resources: {cpus: 1, gpus: 0.25}",
            )
    if res["cpus"] < 1 or int(res["cpus"]) != res["cpus"]:
        raise StudyError(
            f"resources.cpus must be a whole number >= 1, got {res['cpus']!r}",
            where=where.path,
            key="resources.cpus",
            fix="each trial runs one torch thread per CPU; use 1, 2, ...",
        )
    for key in ("workers", "nodes"):  # data-parallel ranks of one trial, and the SLURM nodes they span
        v = res[key]
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise StudyError(
                f"resources.{key} must be a whole number >= 1, got {v!r}",
                where=where.path,
                key=f"resources.{key}",
                fix="e.g. resources: {workers: 8, gpus: 1, nodes: 1} (cpus and gpus are per worker)",
            )
    if res["workers"] % res["nodes"]:
        raise StudyError(
            f"resources.workers {res['workers']} does not divide over {res['nodes']} nodes",
            where=where.path,
            key="resources.nodes",
            fix="use a number of nodes that divides workers (each node runs workers / nodes ranks)",
        )
    if res["workers"] > 1 and 0 < res["gpus"] < 1:
        raise StudyError(
            "a multi-worker trial takes whole GPUs (one per rank)",
            where=where.path,
            key="resources.gpus",
            fix="use gpus: 1 with workers > 1, or workers: 1 to pack fractional GPUs",
        )
    mem = res.get("memory_mb")
    if mem is not None and (not is_number(mem) or not 0 < mem < 2**40):
        raise StudyError(
            f"resources.memory_mb must be a positive number of MiB, got {mem!r}",
            where=where.path,
            key="resources.memory_mb",
            fix="e.g. memory_mb: 64000 (the memory of the machine that runs a trial), or leave it out for this machine's",
        )
    if res["gpus"] > 1 and int(res["gpus"]) != res["gpus"]:
        raise StudyError(
            "fractional GPUs above 1 are not schedulable",
            where=where.path,
            key="resources.gpus",
            fix="use a fraction below 1 (packing) or a whole number",
        )


HALVING_KEYS = {"metric", "eta", "min_steps"}
HALVING_METRICS = ("val_acc", "best_val_acc", "val_loss")  # val_loss: lower is better


def check_search(raw: dict, val_size: int, where: Where) -> dict:
    """search: {halving: {metric: val_acc, eta: 3, min_steps: R}} (successive halving over the swept
    train keys; harness/halving.py), or {} without the section. Not hashed: no trial id changes."""
    section = where.section(raw, "search", {})
    where.keys(section, {"halving"}, "search")
    if "halving" not in section:
        return {}
    h, key = section["halving"], "search.halving"
    example = "e.g. halving: {metric: val_acc, eta: 3, min_steps: 100}"
    if not isinstance(h, dict):
        raise where.error(f"search.halving must be a mapping, got {h!r}", key, example)
    where.keys(h, HALVING_KEYS, key)
    h = {"metric": "val_acc", "eta": 3, **h}
    if "min_steps" not in h:
        raise where.error("search.halving needs min_steps (the first rung, in steps)", key, example)
    where.positive_int(h["min_steps"], f"{key}.min_steps")
    if isinstance(h["eta"], bool) or not isinstance(h["eta"], int) or h["eta"] < 2:
        raise where.error(
            f"search.halving.eta must be an integer >= 2, got {h['eta']!r}", f"{key}.eta", "e.g. eta: 3 (keep the best third)"
        )
    if h["metric"] not in HALVING_METRICS:
        raise where.error(f"unknown halving metric {h['metric']!r}", f"{key}.metric", f"one of {', '.join(HALVING_METRICS)}")
    if not val_size:
        raise where.error(
            "successive halving ranks cells on the validation split, and train.val_size is 0",
            key,
            "set train.val_size (e.g. 5000: images held out of the training split)",
        )
    return {"halving": h}


def check_tracking(raw: dict, where: Where) -> dict:
    """tracking: {mlflow: URI, tensorboard: DIR}, each a non-empty string (harness/analysis/export.py)."""
    section = where.section(raw, "tracking", {})
    where.keys(section, TRACKING_KEYS, "tracking")
    for k, v in section.items():
        if not isinstance(v, str) or not v.strip():
            example = "http://127.0.0.1:5000" if k == "mlflow" else "runs/tb"
            raise StudyError(
                f"must be a non-empty string, got {v!r}", where=where.path, key=f"tracking.{k}", fix=f"e.g. {k}: {example}"
            )
    return section


def parse_smoke(raw: dict, grid: dict, info: data.DataInfo, where: Where) -> dict:
    """`smoke: {image_size: [...]}`: one smaller resolution per grid value (so the trial count stays)."""
    section = where.section(raw, "smoke", {})
    where.keys(section, SMOKE_KEYS, "smoke")
    if "image_size" not in section:
        return {}
    sizes = as_list(section["image_size"])
    distinct = list(dict.fromkeys(grid["image_size"]))  # a zip group may repeat a resolution
    if len(sizes) != len(distinct) or len(set(sizes)) != len(sizes):
        raise StudyError(
            f"smoke.image_size needs {len(distinct)} distinct values, one per grid.image_size",
            where=where.path,
            key="smoke.image_size",
            fix="list as many smaller resolutions as the grid has",
        )
    for j, s in enumerate(sizes):
        where.positive_int(s, f"smoke.image_size[{j}]")
        for i, m in enumerate(grid["model"]):
            try:
                zoo.check(m, s, info.in_chans)
            except StudyError as e:
                raise StudyError(
                    f"{m.name} cannot take {s} px input: {e.what}",
                    where=where.path,
                    key=f"grid.model[{i}] x smoke.image_size[{j}]",
                    fix=e.fix,
                ) from None
    lookup = dict(zip(distinct, sizes))
    return {"image_size": [lookup[v] for v in grid["image_size"]]}
