"""`harness schema`: a JSON Schema (draft 2020-12) of the study file, built from the loader's own tables.

Keys, defaults and choices come from the definitions `parse_study` validates with (TOP_KEYS,
TRAIN_DEFAULTS, CHOICES, GRID_KEYS, PROFILE_DEFAULTS, ...), so a key added there appears here and a key
an editor completes is one the loader takes. The schema is the shape only: value checks that need
the data (a data_size above the split, a model name's size) stay with the loader's one-line errors.
Types of keys whose default is None are in TRAIN_TYPES; tests/test_schema.py fails when a train key
has no type.
"""

from __future__ import annotations

from typing import Any

from harness.data.registry import DESCRIBERS
from harness.spec.eval_section import EVAL_KEYS
from harness.spec.grid import GRID_KEYS
from harness.spec.model import PROFILE_DEFAULTS, RESOURCE_DEFAULTS
from harness.spec.sections import HALVING_METRICS, NAME_MAX, SMOKE_KEYS, TOP_KEYS, TRACKING_KEYS
from harness.spec.simclr import OBJECTIVES, SIMCLR_DEFAULTS
from harness.spec.train_keys import CHOICES, EARLY_STOP_KEYS, TRAIN_DEFAULTS

SCHEMA_ID = "https://harness.invalid/study.schema.json"  # an identifier, not a link: the schema ships with the code
_INT, _NUM, _STR, _BOOL = {"type": "integer"}, {"type": "number"}, {"type": "string"}, {"type": "boolean"}
_EARLY_STOP = {"type": "object", "properties": {k: _INT for k in sorted(EARLY_STOP_KEYS)}, "additionalProperties": False}
# train keys whose default (None) says nothing of their type
TRAIN_TYPES: dict[str, dict] = {
    "steps": _INT,
    "epochs": _NUM,
    "eval_every": _INT,
    "eval_size": _INT,
    "early_stop": _EARLY_STOP,
    "temperature": _NUM,
    "proj_dim": _INT,
    "memory_mb": _NUM,  # resources: None means this machine's memory
}
TOP_DESCRIPTIONS = {
    "name": "names the results directory (results/NAME)",
    "description": "one line shown in reports",
    "dataset": "the data: {name: fashion_mnist} (or cifar10, imagefolder, synthetic, webdataset, hf, video ...)",
    "grid": "the axes whose cartesian product is the trials; lists or single values",
    "overrides": "train keys per family or model: {vit: {lr: 1.0e-3}}",
    "train": "the training budget and optimizer of every trial",
    "profile": "throughput / latency / memory measurement",
    "resources": "per trial: cpus and gpus per worker (fractional gpus pack trials onto one GPU), workers (data-parallel ranks), nodes, memory_mb",
    "slurm": "the SLURM backend's settings (harness run --help, SLURM group)",
    "smoke": "grid axes replaced under --smoke",
    "eval": "linear probe, few-shot and transfer evaluation",
    "tracking": "also log trials to MLflow / TensorBoard: curve points as they train, each stored row",
    "search": "successive halving over the swept train keys: {halving: {metric, eta, min_steps}}",
}


def _of_default(key: str, default: Any) -> dict:
    if key in CHOICES:
        return {"enum": list(CHOICES[key])}
    if key == "objective":
        return {"enum": list(OBJECTIVES)}
    if key in TRAIN_TYPES:
        return dict(TRAIN_TYPES[key])
    if isinstance(default, bool):
        return dict(_BOOL)
    if isinstance(default, int):
        return dict(_INT)
    if isinstance(default, float):
        return dict(_NUM)
    if isinstance(default, str):
        return dict(_STR)
    raise KeyError(f"no JSON Schema type for train key {key!r} (default {default!r}): add it to TRAIN_TYPES")


def _keyed(defaults: dict[str, Any], extra: dict[str, Any] | None = None) -> dict:
    """An object whose keys are `defaults`' (no others), each typed and carrying its default."""
    props = {}
    for k, d in defaults.items():
        p = _of_default(k, d)
        if d is not None:
            p["default"] = d
        elif k in SIMCLR_DEFAULTS:
            p["description"] = f"simclr only; default {SIMCLR_DEFAULTS[k]}"
        props[k] = p
    return {"type": "object", "properties": props | (extra or {}), "additionalProperties": False}


def _list_or_one(item: dict) -> dict:
    return {"anyOf": [item, {"type": "array", "items": item, "minItems": 1}]}


def _sweepable(section: dict) -> dict:
    return {**section, "properties": {k: _list_or_one(p) for k, p in section["properties"].items()}}


def _grid() -> dict:
    model = {"anyOf": [{"type": "string", "pattern": r"^[a-z_0-9]+(@[A-Za-z0-9_.]+)?$"}, {"type": "object"}]}
    axes = {k: _list_or_one(model if k == "model" else _INT) for k in sorted(GRID_KEYS)}
    train_axes = {k: _list_or_one(_of_default(k, d)) for k, d in TRAIN_DEFAULTS.items()}
    zip_group = {"type": "object", "properties": axes | train_axes, "additionalProperties": False}
    return {
        "type": "object",
        "description": TOP_DESCRIPTIONS["grid"],
        "properties": axes | train_axes | {"zip": {"type": "array", "items": zip_group}},
        "additionalProperties": False,
    }


def study_schema() -> dict:
    """The JSON Schema of a study file."""
    train = _keyed(TRAIN_DEFAULTS)
    props: dict[str, dict] = {
        "name": {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", "maxLength": NAME_MAX},
        "description": dict(_STR),
        "dataset": {"type": "object", "properties": {"name": {"enum": sorted(DESCRIBERS)}}, "required": ["name"]},
        "grid": _grid(),
        "overrides": {"type": "object", "additionalProperties": _sweepable(train)},  # a list sweeps that family's key
        "train": train,
        "profile": _keyed(PROFILE_DEFAULTS),
        "resources": _keyed(RESOURCE_DEFAULTS, {"cpus": _NUM, "gpus": _NUM}),
        "slurm": {"type": "object"},
        "smoke": {
            "type": "object",
            "properties": {k: _list_or_one(_INT) for k in sorted(SMOKE_KEYS)},
            "additionalProperties": False,
        },
        "eval": {
            "type": "object",
            "properties": {
                "linear_probe": _BOOL,
                "few_shot": _list_or_one(_INT),
                "few_shot_draws": _INT,
                "datasets": {"type": "array", "items": {"type": "object"}},
            },
            "additionalProperties": False,
        },
        "tracking": {"type": "object", "properties": {k: _STR for k in sorted(TRACKING_KEYS)}, "additionalProperties": False},
        "search": {
            "type": "object",
            "properties": {
                "halving": {
                    "type": "object",
                    "properties": {"metric": {"enum": list(HALVING_METRICS)}, "eta": _INT, "min_steps": _INT},
                    "required": ["min_steps"],
                    "additionalProperties": False,
                }
            },
            "additionalProperties": False,
        },
    }
    assert set(props) == set(TOP_KEYS), "every top-level key of the loader has a schema"  # noqa: S101
    assert set(props["eval"]["properties"]) == set(EVAL_KEYS)  # noqa: S101
    for k, p in props.items():
        p.setdefault("description", TOP_DESCRIPTIONS[k])
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "harness study",
        "type": "object",
        "properties": props,
        "required": ["name", "grid"],
        "additionalProperties": False,
    }
