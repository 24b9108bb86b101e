"""The train section: its keys and defaults, their checks, early stopping, and the step arithmetic
(how many steps a budget is: runner and trial read it here, without importing torch)."""

from __future__ import annotations

import math
from typing import Any

from harness.errors import did_you_mean
from harness.spec import identity, simclr
from harness.spec.checks import Where, is_number

# Defaults a study may override. Every key a study may set appears here; anything else is a typo.
TRAIN_DEFAULTS: dict[str, Any] = {
    "steps": None,  # fixed number of optimizer steps (equal compute across data sizes; 0 = profile only) ...
    "epochs": None,  # ... or passes over the subset; exactly one of the two (steps=500 if neither)
    "batch_size": 128,
    "optimizer": "adamw",
    "lr": 2.0e-3,
    "weight_decay": 0.05,
    "momentum": 0.9,  # sgd only
    "schedule": "cosine",  # cosine | constant | wsd (warmup, stable, decay: budgets can branch from one trunk)
    "decay_fraction": 0.2,  # wsd only: the last fraction of the steps over which the lr decays to zero
    "decay_shape": "linear",  # wsd only: linear | 1-sqrt (Hägele et al. 2024)
    "warmup_steps": 25,
    "label_smoothing": 0.0,
    "augment": "none",  # none | flip | flip_shift (random horizontal flip, +-2 px shift)
    "eval_every": None,  # steps between learning-curve points; None = 10 points per run
    "curve_eval_size": 2000,  # test images per intermediate curve point (final eval uses eval_size)
    "eval_size": None,  # None = the full test split
    "compile": False,  # torch.compile the model for training (compile time: the row's compile_s, not train_time_s)
    "val_size": 0,  # images per study held out of the training split for validation (0 = none: curve points on the test split)
    "early_stop": None,  # {patience: P, max_steps: M[, min_steps: m]} or {patience, max_epochs[, min_epochs]}; needs val_size
    "objective": "supervised",  # supervised | simclr (self-supervised; judged by the eval: probes; harness/ssl.py)
    "temperature": None,  # simclr only: NT-Xent temperature (default spec.simclr.SIMCLR_DEFAULTS)
    "proj_dim": None,  # simclr only: projection head output width (default spec.simclr.SIMCLR_DEFAULTS)
}
BUDGET_KEYS = ("steps", "epochs", "early_stop")  # a layer that sets one of them replaces the others below it
EARLY_STOP_KEYS = {"patience", "max_steps", "max_epochs", "min_steps", "min_epochs"}
CHOICES = {
    "optimizer": ("adamw", "sgd"),
    "schedule": ("cosine", "constant", "wsd"),
    "decay_shape": ("linear", "1-sqrt"),
    "augment": ("none", "flip", "flip_shift"),
}


def check_train(train: dict, where: Where) -> dict:
    """The checked train config as its trials hash it (a new dict; `train` is left as given):
    the budget default and SimCLR's defaults filled, the keys at an unhashed default dropped."""
    if train["steps"] is not None and train["epochs"] is not None:
        raise where.error(
            "both train.steps and train.epochs are set",
            "train",
            "give one budget: steps (equal compute across data sizes) or epochs",
        )
    out = dict(train)
    identity.fill_defaults(out)
    where.nonneg_int(out["val_size"], "train.val_size")
    _check_budget(out, where)
    where.positive_int(out["batch_size"], "train.batch_size")
    where.nonneg_int(out["warmup_steps"], "train.warmup_steps")
    _check_optimizer(out, where)
    for key in ("eval_every", "eval_size"):
        if out[key] is not None:
            where.positive_int(out[key], f"train.{key}")
    where.positive_int(out["curve_eval_size"], "train.curve_eval_size")
    if not isinstance(out["compile"], bool):
        raise where.error(
            f"train.compile must be true or false, got {out['compile']!r}",
            "train.compile",
            "compile: true (torch.compile the model) or leave it out",
        )
    _check_wsd(out, where)
    simclr.check_train(out, where)  # the objective and its keys
    return identity.hashed_train(out)


def _check_budget(train: dict, where: Where) -> None:
    if train["early_stop"] is not None:
        check_early_stop(train, where)
    elif train["steps"] is not None:
        where.nonneg_int(train["steps"], "train.steps")  # 0 = profile only (throughput/FLOPs studies)
    elif not is_number(train["epochs"]) or train["epochs"] <= 0:
        raise where.error(f"train.epochs must be a positive number, got {train['epochs']!r}", "train.epochs", "e.g. epochs: 10")


def _check_optimizer(train: dict, where: Where) -> None:
    """The optimizer's numbers and the choices (optimizer, schedule, augment)."""
    for key in ("lr", "weight_decay", "momentum", "label_smoothing"):
        v = train[key]
        if not is_number(v) or v < 0:
            raise where.error(
                f"train.{key} must be a non-negative number, got {v!r}",
                f"train.{key}",
                "e.g. lr: 2.0e-3 (YAML needs the '.0' before 'e')",
            )
    if train["lr"] == 0:
        raise where.error(
            "train.lr is 0: training would change nothing",
            "train.lr",
            "e.g. lr: 2.0e-3; for a profile-only study use steps: 0",
        )
    for key, why in (("label_smoothing", "1 would leave no mass on the true class"), ("momentum", "1 or more diverges")):
        if train[key] >= 1:
            raise where.error(
                f"train.{key} must be in [0, 1), got {train[key]!r}", f"train.{key}", f"use a value below 1 ({why}), e.g. 0.1"
            )
    for key, allowed in CHOICES.items():
        if train[key] not in allowed:
            raise where.error(f"unknown {key} {train[key]!r}", f"train.{key}", did_you_mean(str(train[key]), allowed))


def _check_wsd(train: dict, where: Where) -> None:
    """decay_fraction in (0, 1], and both wsd keys only with schedule wsd (elsewhere they would do nothing)."""
    frac = train["decay_fraction"]
    if not is_number(frac) or not 0 < frac <= 1:
        raise where.error(
            f"train.decay_fraction must be a number in (0, 1], got {frac!r}",
            "train.decay_fraction",
            "e.g. decay_fraction: 0.2 (the lr decays to zero over the last 20% of the steps)",
        )
    if train["schedule"] != "wsd":
        for key in ("decay_fraction", "decay_shape"):
            if train[key] != TRAIN_DEFAULTS[key]:
                raise where.error(
                    f"train.{key} applies to schedule wsd only (this one is {train['schedule']})",
                    f"train.{key}",
                    f"set schedule: wsd, or remove {key}",
                )


def decay_start(cfg: dict, total: int) -> int:
    """wsd: the first step of the decay (the steps before it do not depend on the run's length)."""
    return total - max(1, round(cfg.get("decay_fraction", TRAIN_DEFAULTS["decay_fraction"]) * total))


def check_early_stop(train: dict, where: Where) -> None:
    es, key = train["early_stop"], "train.early_stop"
    example = "e.g. early_stop: {patience: 5, max_steps: 4000}"
    if not isinstance(es, dict):
        raise where.error(f"early_stop must be a mapping, got {es!r}", key, example)
    where.keys(es, EARLY_STOP_KEYS, key)
    if "patience" not in es:
        raise where.error("early_stop needs patience (evaluations without a better val accuracy before stopping)", key, example)
    where.positive_int(es["patience"], f"{key}.patience")
    if ("max_steps" in es) == ("max_epochs" in es):
        raise where.error(
            "early_stop needs one ceiling: max_steps or max_epochs",
            key,
            "e.g. early_stop: {patience: 5, max_steps: 4000} (training stops there at the latest)",
        )
    if "min_steps" in es and "min_epochs" in es:
        raise where.error("early_stop takes min_steps or min_epochs, not both", key, "keep one")
    for k in ("max_steps", "min_steps"):
        if k in es:
            (where.positive_int if k == "max_steps" else where.nonneg_int)(es[k], f"{key}.{k}")
    for k in ("max_epochs", "min_epochs"):
        if k in es and (not is_number(es[k]) or es[k] < 0 or (k == "max_epochs" and es[k] == 0)):
            raise where.error(f"{k} must be a positive number, got {es[k]!r}", f"{key}.{k}", "e.g. max_epochs: 50")
    for budget in ("steps", "epochs"):
        if train[budget] is not None:
            raise where.error(
                f"train.{budget} and train.early_stop are both set",
                key,
                "early_stop carries its own ceiling (max_steps or max_epochs): remove train.steps/epochs",
            )
    if not train["val_size"]:
        raise where.error(
            "early stopping watches the validation split, and train.val_size is 0",
            key,
            "set train.val_size (e.g. 5000: images held out of the training split)",
        )


# ----------------------------------------------------------------------------- step arithmetic


def total_steps(cfg: dict, data_size: int) -> int:
    """The run's length in steps: `steps`, `epochs` over the subset, or early stopping's ceiling."""
    es = cfg.get("early_stop")
    if es:
        return int(es["max_steps"]) if "max_steps" in es else epoch_steps(es["max_epochs"], cfg, data_size)
    if cfg["steps"] is not None:
        return int(cfg["steps"])
    return epoch_steps(cfg["epochs"], cfg, data_size)


def min_steps(cfg: dict, data_size: int) -> int:
    """Early stopping never stops before this step (0 without a min_steps/min_epochs)."""
    es = cfg.get("early_stop") or {}
    if "min_steps" in es:
        return int(es["min_steps"])
    return epoch_steps(es["min_epochs"], cfg, data_size) if "min_epochs" in es else 0


def epoch_steps(epochs: float, cfg: dict, data_size: int) -> int:
    per_epoch = math.ceil(data_size / min(cfg["batch_size"], data_size))
    return max(1, round(epochs * per_epoch))
