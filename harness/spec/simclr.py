"""The study keys of self-supervised pretraining (`train: {objective: simclr}`; harness/ssl.py runs it):
which objectives exist, SimCLR's keys and their defaults, and what a SimCLR trial may not set."""

from __future__ import annotations

from typing import Any

from harness.errors import did_you_mean
from harness.spec.checks import Where, is_number

OBJECTIVES = ("supervised", "simclr")
SIMCLR_DEFAULTS: dict[str, Any] = {
    "temperature": 0.2,  # the paper's best at its larger batches is 0.1-0.5 (Table 5); 0.2 for ~256
    "proj_dim": 128,  # the paper's projection output
}


def fill_simclr_defaults(train: dict) -> None:
    """SimCLR's unset keys take their defaults (in place): the hashed config holds them, so ids depend on it."""
    if train.get("objective") == "simclr":
        for k, v in SIMCLR_DEFAULTS.items():
            if train.get(k) is None:
                train[k] = v


def check_train(train: dict, where: Where) -> None:
    """Validate the objective and its keys in a train config (SimCLR's defaults already filled).
    SimCLR keys on a supervised trial are an error, as are supervised-only keys on a SimCLR trial."""
    objective = train.get("objective", "supervised")
    if objective not in OBJECTIVES:
        raise where.error(f"unknown objective {objective!r}", "train.objective", did_you_mean(str(objective), OBJECTIVES))
    if objective == "supervised":
        for k in SIMCLR_DEFAULTS:
            if train.get(k) is not None:
                raise where.error(
                    f"train.{k} is a SimCLR key and this trial's objective is supervised",
                    f"train.{k}",
                    f"set objective: simclr, or remove {k}; to vary the objective, pair them in a zip group: "
                    f"zip: [{{objective: [supervised, simclr], {k}: [null, {SIMCLR_DEFAULTS[k]}]}}]",
                )
        return
    t = train["temperature"]
    if not is_number(t) or t <= 0:
        raise where.error(f"train.temperature must be a positive number, got {t!r}", "train.temperature", "e.g. temperature: 0.2")
    p = train["proj_dim"]
    if not isinstance(p, int) or isinstance(p, bool) or p <= 0:
        raise where.error(f"train.proj_dim must be a positive integer, got {p!r}", "train.proj_dim", "e.g. proj_dim: 128")
    _check_supervised_keys(train, where)


def _check_supervised_keys(train: dict, where: Where) -> None:
    """A SimCLR trial sets none of the keys that only mean something with labels."""
    why = "SimCLR trains without labels and draws its own two views"
    if train.get("early_stop") is not None:
        raise where.error(
            "early stopping watches validation accuracy, and a SimCLR trial has no classifier",
            "train.early_stop",
            "give a fixed budget (steps or epochs) for objective: simclr",
        )
    if train.get("label_smoothing", 0) != 0:
        raise where.error(f"label_smoothing has no meaning with objective: simclr ({why})", "train.label_smoothing", "remove it")
    if train.get("augment", "none") != "none":
        raise where.error(
            f"augment {train['augment']!r} is the supervised augmentation ({why}: crop, flip, intensity jitter)",
            "train.augment",
            "remove it for objective: simclr (pair them in a zip group to vary the objective)",
        )
    if train.get("batch_size", 2) < 2:
        raise where.error(
            "SimCLR needs at least 2 images per batch (the other images are the negatives)",
            "train.batch_size",
            "use batch_size >= 2 (the paper's results improve up to thousands)",
        )


def views_per_sample(train: dict) -> int:
    """Images through the backbone per training sample: SimCLR's two views (train_flops counts both)."""
    return 2 if train.get("objective") == "simclr" else 1


def require_probes(objective: str, eval_cfg: dict, where: Where) -> None:
    """A SimCLR trial has no classifier: without the study's probes it would measure nothing."""
    if objective == "simclr" and not eval_cfg:
        raise where.error(
            "objective simclr trains no classifier (test_acc is NaN), and the study has no eval section",
            "eval",
            "add eval: {linear_probe: true} (and few_shot: [10] for few-shot accuracy): the probes judge its features",
        )
