"""Every rule that decides a trial id, in one place.

A trial's id is the hash of its canonical resolved config (model shape, data, training budget,
profiling), so renaming the study or moving files never changes an id, while changing anything
that changes the result does. The rules below keep the ids of existing studies stable as keys are
added: a new train key left at its default stays out of the hashed config, and so do sections
(eval) and axes (frames) a study does not use.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from harness.spec.simclr import fill_simclr_defaults

DEFAULT_STEPS = 500  # the budget of a train section that gives none (steps, epochs, early_stop)
# train keys left out of the hashed config at their default, so the ids of existing studies do not change
UNHASHED_DEFAULTS = {
    "compile": False,
    "val_size": 0,
    "early_stop": None,
    "objective": "supervised",
    "temperature": None,
    "proj_dim": None,
    "decay_fraction": 0.2,
    "decay_shape": "linear",
}


def config_hash(cfg: dict) -> str:
    """12 hex chars of sha256 over canonical JSON (sorted keys, no whitespace)."""
    blob = json.dumps(cfg, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def fill_defaults(train: dict) -> None:
    """The defaults a checked train config carries in its hashed form (in place): steps 500 when no
    budget is given, SimCLR's temperature and projection width when its objective is simclr."""
    if train["early_stop"] is None and train["steps"] is None and train["epochs"] is None:
        train["steps"] = DEFAULT_STEPS
    fill_simclr_defaults(train)


def hashed_train(train: dict) -> dict:
    """The train config without the keys at their unhashed default (see UNHASHED_DEFAULTS)."""
    # the default stays out of the hashed config: trial ids of existing studies do not change
    return {k: v for k, v in train.items() if not (k in UNHASHED_DEFAULTS and v == UNHASHED_DEFAULTS[k])}


def trial_config(trial: Any) -> dict:
    """Exactly what `trial_id` hashes (`trial`: a spec.model.Trial; not imported, it imports this)."""
    cfg = {
        "model": trial.model.identity(),  # the resolved shape, however it was spelled (vit@xs == {family: vit})
        "image_size": trial.image_size,
        "data_size": trial.data_size,
        "seed": trial.seed,
        "dataset": trial.dataset,
        "train": trial.train,
        "profile": trial.profile,
        **({"eval": trial.eval} if trial.eval else {}),  # absent: the ids of studies without one do not change
    }
    if trial.frames is not None:  # video only: image ids stay
        cfg.update(frames=trial.frames, frame_stride=trial.frame_stride)
    return cfg


def study_hash(study: Any) -> str:
    """The hash of a spec.model.Study's checked sections (its trials carry it)."""
    grid = dict(study.grid, model=[m.name + json.dumps(m.shape, sort_keys=True) for m in study.grid["model"]])
    cfg = {"dataset": study.dataset, "grid": grid, "train": study.train, "profile": study.profile}
    if study.zips or study.overrides:  # only then: hashes of existing studies stay as they were
        cfg.update(zip=[list(z) for z in study.zips], overrides=study.overrides)
    if study.eval:
        cfg["eval"] = study.eval
    return config_hash(cfg)
