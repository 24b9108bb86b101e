"""Loading a study: the file (with command-line overrides applied) to a checked `Study`."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path

from harness import data
from harness.errors import StudyError
from harness.spec import limits
from harness.spec import overrides as cli_overrides
from harness.spec.checks import Where
from harness.spec.eval_section import check_section
from harness.spec.expand import check_cells
from harness.spec.grid import parse_grid, parse_overrides
from harness.spec.model import PROFILE_DEFAULTS, RESOURCE_DEFAULTS, Study, Trial
from harness.spec.reading import read_study_mapping
from harness.spec.sections import (
    TOP_KEYS,
    check_description,
    check_name,
    check_profile,
    check_resources,
    check_search,
    check_tracking,
    parse_smoke,
)
from harness.spec.train_keys import TRAIN_DEFAULTS, check_train


def load_study(path: str | Path, overrides: Sequence[str] = ()) -> Study:
    """`overrides`: command-line `key=value` / `key+=value` (harness/spec/overrides.py), applied to the file's
    mapping before it is validated; an error they cause names the override."""
    return load_expanded(path, overrides)[0]


def load_expanded(path: str | Path, overrides: Sequence[str] = ()) -> tuple[Study, list[Trial]]:
    """`load_study` and the study's trials (`expand(study)`): loading checks every cell by expanding the
    grid, and these are those trials, so a caller that needs both expands once (at 100,000 trials an
    expansion is ~3 s)."""
    ovs = cli_overrides.parse_all(overrides)
    raw = read_study_mapping(path)
    try:
        return parse_expanded(cli_overrides.apply(raw, ovs), where=str(path))
    except StudyError as e:
        raise cli_overrides.blame(e, ovs) from None


def parse_study(raw: dict, *, where: str = "<study>") -> Study:
    return parse_expanded(raw, where=where)[0]


def parse_expanded(raw: dict, *, where: str = "<study>") -> tuple[Study, list[Trial]]:
    """The checked `Study` of a study mapping and its trials (`expand(study)`, made while checking its cells)."""
    at = Where(where)
    at.keys(raw, TOP_KEYS, "")
    for key in ("name", "grid"):
        if key not in raw:
            raise at.error(f"missing required key '{key}'", key, "see studies/quickstart.yaml for the shape of a study")
    check_name(raw["name"], at)
    check_description(raw, at)

    data_source = at.section(raw, "dataset", {"name": "fashion_mnist"})
    try:
        info = data.describe(data_source)
    except StudyError as e:
        raise at.at(e, e.key or "dataset") from None
    # canonical dataset (info.config): name + the keys that change the data (not where it lives)

    train_written = at.merged(raw, "train", TRAIN_DEFAULTS)
    train = check_train(train_written, at)
    profile = at.merged(raw, "profile", PROFILE_DEFAULTS)
    check_profile(profile, at)
    resources = at.merged(raw, "resources", RESOURCE_DEFAULTS)
    check_resources(resources, at)
    slurm = at.section(raw, "slurm", {})
    tracking = check_tracking(raw, at)
    search = check_search(raw, train.get("val_size", 0), at)

    if train["eval_size"] is not None and train["eval_size"] > info.test_size:
        raise at.error(
            f"train.eval_size {train['eval_size']} is larger than the {info.name} test split ({info.test_size} images)",
            "train.eval_size",
            f"use at most {info.test_size}, or leave it out for the full split",
        )
    eval_cfg, eval_source = {}, ()
    if raw.get("eval") is not None:
        eval_cfg, sources = check_section(raw["eval"], where, main=info, val_size=train.get("val_size", 0))
        eval_source = tuple(sources)
    grid, zips = parse_grid(raw["grid"], info, train, at, keep_data_size=bool(eval_cfg))
    overrides = parse_overrides(raw, grid, at)
    smoke_grid = parse_smoke(raw, grid, info, at)
    study = Study(
        name=raw["name"],
        description=str(raw.get("description", "")),
        path=where,
        dataset=info.config,
        grid=grid,
        train=train,
        profile=profile,
        resources=resources,
        slurm=slurm,
        smoke_grid=smoke_grid,
        data_source=data_source,
        zips=zips,
        overrides=overrides,
        train_written=copy.deepcopy(train_written),
        eval=eval_cfg,
        eval_source=eval_source,
        tracking=tracking,
        search=search,
    )
    limits.check_study(study, info, at)  # before anything is built or expanded
    trials = check_cells(study, info, at)
    limits.check_memory(study, trials, info, at, count_params=False)  # the rest: check_run_memory
    return study, trials


def check_run_memory(study: Study, trials: Sequence[Trial]) -> None:
    """The memory cap over the trials about to run, their models counted (torch): `harness run` checks
    the trials not done yet, `--dry-run` all of them (load checked what needs no model)."""
    info = data.describe({**study.data_source, **study.dataset})
    limits.check_memory(study, list(trials), info, Where(study.path))
