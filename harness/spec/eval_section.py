"""The study's `eval:` section (probes of the trained backbone; harness/evals.py runs them): its keys,
their checks and its canonical form, which the trial id hashes."""

from __future__ import annotations

import re
from typing import Any

from harness import data
from harness.errors import StudyError, did_you_mean

EVAL_KEYS = {"linear_probe", "few_shot", "few_shot_draws", "datasets"}
DATASET_EXTRA_KEYS = {"label"}  # a transfer dataset's keys beyond its dataset config
FEW_SHOT_DRAWS = 5


def check_section(section: Any, where: str, *, main: data.DataInfo, val_size: int = 0) -> tuple[dict, list[dict]]:
    """(the canonical eval config the trial id hashes, each transfer dataset's section as written).
    Raises StudyError naming the key."""
    if not isinstance(section, dict):
        raise StudyError(
            f"'eval' must be a mapping, got {type(section).__name__}",
            where=where,
            key="eval",
            fix="e.g. eval: {linear_probe: true, few_shot: [1, 5, 10, 25]}",
        )
    for k in section:
        if k not in EVAL_KEYS:
            raise StudyError(f"unknown key '{k}'", where=where, key=f"eval.{k}", fix=did_you_mean(str(k), EVAL_KEYS))
    probe = section.get("linear_probe", False)
    if not isinstance(probe, bool):
        raise StudyError(
            f"eval.linear_probe must be true or false, got {probe!r}",
            where=where,
            key="eval.linear_probe",
            fix="linear_probe: true (unquoted)",
        )
    shots = section.get("few_shot", [])
    shots = [shots] if isinstance(shots, int) and not isinstance(shots, bool) else shots
    if not isinstance(shots, list) or not all(isinstance(k, int) and not isinstance(k, bool) and k > 0 for k in shots):
        raise StudyError(
            f"eval.few_shot must be a list of positive integers (images per class), got {section.get('few_shot')!r}",
            where=where,
            key="eval.few_shot",
            fix="e.g. few_shot: [1, 5, 10, 25]",
        )
    draws = section.get("few_shot_draws", FEW_SHOT_DRAWS)
    if not isinstance(draws, int) or isinstance(draws, bool) or draws < 1:
        raise StudyError(
            f"eval.few_shot_draws must be a positive integer, got {draws!r}",
            where=where,
            key="eval.few_shot_draws",
            fix=f"e.g. few_shot_draws: {FEW_SHOT_DRAWS} (the spread needs at least 2)",
        )
    if not probe and not shots:
        raise StudyError(
            "the eval section asks for no evaluation",
            where=where,
            key="eval",
            fix="set linear_probe: true and/or few_shot: [1, 5, 10, 25], or remove the section",
        )
    canonical = {"linear_probe": probe, "few_shot": sorted(set(shots)), "few_shot_draws": draws, "datasets": []}
    check_shots(canonical["few_shot"], main, main.train_size - val_size, where, "eval.few_shot")
    sources = _check_datasets(section.get("datasets", []), canonical, main, where)
    return canonical, sources


def _check_datasets(raw_sets: Any, canonical: dict, main: data.DataInfo, where: str) -> list[dict]:
    """eval.datasets: each transfer dataset checked, appended to canonical["datasets"]; their sections as written."""
    sources = []
    if not isinstance(raw_sets, list) or not all(isinstance(d, dict) for d in raw_sets):
        raise StudyError(
            "eval.datasets must be a list of dataset mappings",
            where=where,
            key="eval.datasets",
            fix="e.g. datasets: [{name: cifar10, root: ~/data}]",
        )
    labels: dict[str, str] = {}
    for i, raw in enumerate(raw_sets):
        key = f"eval.datasets[{i}]"
        cfg = {k: v for k, v in raw.items() if k not in DATASET_EXTRA_KEYS}
        try:
            info = data.describe(cfg)
        except StudyError as e:
            sub = e.key[len("dataset") :] if e.key.startswith("dataset") else ""
            raise StudyError(e.what, where=where, key=key + sub, fix=e.fix.replace("dataset.", f"{key}.")) from None
        label = raw.get("label", info.name)
        if not isinstance(label, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", label):
            raise StudyError(
                f"label {label!r} cannot prefix a column",
                where=where,
                key=f"{key}.label",
                fix="use lower-case letters, digits and '_', starting with a letter",
            )
        if label in labels:
            raise StudyError(
                f"two eval datasets would write columns '{label}_...' ({labels[label]} and {key})",
                where=where,
                key=f"{key}.label",
                fix="give one of them its own label: (e.g. label: cifar10_b)",
            )
        labels[label] = key
        if info.in_chans != main.in_chans and {info.in_chans, main.in_chans} != {1, 3}:
            raise StudyError(
                f"{info.name} has {info.in_chans} channels and the models take {main.in_chans}",
                where=where,
                key=key,
                fix="channels are adapted between 1 (grey) and 3 (RGB) only: use a dataset with 1 or 3 channels",
            )
        check_shots(canonical["few_shot"], info, info.train_size, where, key)
        canonical["datasets"].append({"label": label, **info.config})
        sources.append(cfg)
    return sources


def check_shots(shots: list[int], info: data.DataInfo, pool: int, where: str, key: str) -> None:
    if shots and max(shots) * info.num_classes > pool:
        raise StudyError(
            f"{max(shots)}-shot needs {max(shots) * info.num_classes} images of {info.name} ({info.num_classes} classes) "
            f"and its few-shot pool holds {pool}",
            where=where,
            key=key,
            fix=f"use at most {pool // info.num_classes} shots",
        )
