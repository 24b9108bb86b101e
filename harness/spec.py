"""Study files: load, validate (with precise error paths), expand into trials.

A study is one YAML file (see studies/quickstart.yaml). `load_study` returns a `Study` or
raises `StudyError` naming the file, the key path and the fix; `expand` turns it into the
cartesian product of its grid as `Trial`s, each with a stable `trial_id`: the hash of its
canonical resolved config (model shape, data, training budget, profiling), so renaming the
study or moving files never changes an id, while changing anything that changes the result does.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness import data, ssl, zoo
from harness.errors import StudyError, did_you_mean

# Defaults a study may override. Every key a study may set appears here; anything else is a typo.
TRAIN_DEFAULTS: dict[str, Any] = {
    "steps": None,  # fixed number of optimizer steps (equal compute across data sizes; 0 = profile only) ...
    "epochs": None,  # ... or passes over the subset; exactly one of the two (steps=500 if neither)
    "batch_size": 128,
    "optimizer": "adamw",
    "lr": 2.0e-3,
    "weight_decay": 0.05,
    "momentum": 0.9,  # sgd only
    "schedule": "cosine",
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
    "temperature": None,  # simclr only: NT-Xent temperature (default ssl.SIMCLR_DEFAULTS)
    "proj_dim": None,  # simclr only: projection head output width (default ssl.SIMCLR_DEFAULTS)
}
# train keys left out of the hashed config at their default, so the ids of existing studies do not change
UNHASHED_DEFAULTS = {
    "compile": False,
    "val_size": 0,
    "early_stop": None,
    "objective": "supervised",
    "temperature": None,
    "proj_dim": None,
}
BUDGET_KEYS = ("steps", "epochs", "early_stop")  # a layer that sets one of them replaces the others below it
EARLY_STOP_KEYS = {"patience", "max_steps", "max_epochs", "min_steps", "min_epochs"}
PROFILE_DEFAULTS: dict[str, Any] = {"enabled": True, "batch_size": 64, "warmup": 3, "iters": 10}
RESOURCE_DEFAULTS: dict[str, Any] = {"cpus": 1, "gpus": 0}
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
}
# tracking: {mlflow: URI, tensorboard: DIR}: where finished trials are also logged, not what runs (no id changes)
TRACKING_KEYS = {"mlflow", "tensorboard"}
SMOKE_KEYS = {"image_size"}  # grid axes a study may replace under --smoke (1024 px on a CPU takes minutes per step)
GRID_KEYS = {"model", "data_size", "image_size", "seed", "frames", "frame_stride"}
AXIS_ORDER = (
    "model",
    "data_size",
    "image_size",
    "frames",
    "frame_stride",
    "seed",
)  # expansion order; training-key axes follow in the order written
NAME_MAX = 100  # characters: results/<name>-smoke/ and the store's temporary names stay far below the 255-byte file-name limit of ext4/xfs/APFS/NTFS
MAX_SEED = 2**32 - 1  # numpy's and most generators' seed range
MAX_IMAGE_SIZE = 4096  # px: one 4096 px RGB image is 201 MB as float32, a batch of 64 is 13 GB; an 8192 px grid got the test process killed for memory
CHOICES = {
    "optimizer": ("adamw", "sgd"),
    "schedule": ("cosine", "constant"),
    "augment": ("none", "flip", "flip_shift"),
}


@dataclass(frozen=True)
class Trial:
    """One cell of the grid. `config()` is exactly what `trial_id` hashes."""

    study: str
    model: zoo.ModelSpec
    image_size: int
    data_size: int
    seed: int
    dataset: dict
    train: dict
    profile: dict
    resources: dict = field(default_factory=lambda: dict(RESOURCE_DEFAULTS))
    study_hash: str = ""
    # the study's dataset section as written (root:, download: ...): where the data lives, so it
    # reaches the worker, but not what it is, so moving a directory does not change trial ids
    data_source: dict = field(default_factory=dict)
    eval: dict = field(default_factory=dict)  # the eval section, canonical (harness/evals.py); hashed only when set
    eval_source: tuple = ()  # each eval dataset's section as written (where it lives): not hashed, like data_source
    # video datasets only (None for images, and then not in the hashed config, so image ids stay):
    # the clip length T and the stride s; a clip is native frames 0, s, ..., (T-1)s
    frames: int | None = None
    frame_stride: int | None = None

    def data_config(self) -> dict:
        return {**self.data_source, **self.dataset}

    def config(self) -> dict:
        cfg = {
            "model": self.model.identity(),  # the resolved shape, however it was spelled (vit@xs == {family: vit})
            "image_size": self.image_size,
            "data_size": self.data_size,
            "seed": self.seed,
            "dataset": self.dataset,
            "train": self.train,
            "profile": self.profile,
            **({"eval": self.eval} if self.eval else {}),  # absent: the ids of studies without one do not change
        }
        if self.frames is not None:
            cfg.update(frames=self.frames, frame_stride=self.frame_stride)
        return cfg

    @property
    def trial_id(self) -> str:
        return config_hash(self.config())

    @property
    def batch_size(self) -> int:
        """The batch training uses: the whole subset when it is smaller than train.batch_size (batch
        128 on data_size 100 trains full-batch on 100, and the row says 100). The id keeps hashing
        train.batch_size as written, so the ids of existing studies do not change."""
        return min(self.train["batch_size"], self.data_size) if self.data_size else self.train["batch_size"]

    @property
    def label(self) -> str:
        clip = f" {self.frames}f" + (f"/{self.frame_stride}" if self.frame_stride != 1 else "") if self.frames is not None else ""
        return f"{self.model.name} n={self.data_size} {self.image_size}px{clip} seed={self.seed}"


@dataclass(frozen=True)
class Study:
    name: str
    description: str
    path: str
    dataset: dict
    grid: dict  # model: [ModelSpec], data_size/image_size/seed: [int], then training-key axes: [value]
    train: dict  # the train section, checked (what every trial gets when nothing varies it)
    profile: dict
    resources: dict
    slurm: dict
    smoke: bool = False
    smoke_grid: dict = field(default_factory=dict)  # axes --smoke uses instead of the grid's (`smoke:` key)
    data_source: dict = field(default_factory=dict)  # the dataset section as written (see Trial.data_source)
    zips: tuple = ()  # groups of grid axes paired element-wise (grid.zip), each a tuple of axis names
    overrides: dict = field(default_factory=dict)  # family or model name -> train keys (a list is a sweep for it)
    train_written: dict = field(default_factory=dict)  # the train section before budget defaults: cells layer onto it
    eval: dict = field(default_factory=dict)  # the eval section, canonical (harness/evals.py); {} without one
    eval_source: tuple = ()
    tracking: dict = field(default_factory=dict)  # {mlflow: URI, tensorboard: DIR}: trials logged as they finish

    @property
    def study_hash(self) -> str:
        grid = dict(self.grid, model=[m.name + json.dumps(m.shape, sort_keys=True) for m in self.grid["model"]])
        cfg = {"dataset": self.dataset, "grid": grid, "train": self.train, "profile": self.profile}
        if self.zips or self.overrides:  # only then: hashes of existing studies stay as they were
            cfg.update(zip=[list(z) for z in self.zips], overrides=self.overrides)
        if self.eval:
            cfg["eval"] = self.eval
        return config_hash(cfg)


def config_hash(cfg: dict) -> str:
    """12 hex chars of sha256 over canonical JSON (sorted keys, no whitespace)."""
    blob = json.dumps(cfg, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


# ----------------------------------------------------------------------------- loading


class _DuplicateKey(yaml.constructor.ConstructorError):
    pass


class _StudyLoader(yaml.SafeLoader):
    """yaml.safe_load that refuses duplicate keys: PyYAML keeps the last one silently, so
    `train: {steps: 3, steps: 5}` would run 5 steps without a word."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` overrides on purpose
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node.start_mark)
            except TypeError:  # unhashable: the base class reports it
                continue
            if first is not key_node.start_mark:
                here = key_node.start_mark
                raise _DuplicateKey(
                    None,
                    None,
                    f"duplicate key '{key}' at line {here.line + 1}, column {here.column + 1} "
                    f"(first given at line {first.line + 1}, column {first.column + 1})",
                    here,
                )
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path, where: str) -> Any:
    """The parsed file, or one StudyError line: unreadable, not UTF-8, binary, bad syntax, duplicate keys."""
    try:
        blob = path.read_bytes()
    except OSError as e:
        raise StudyError(
            f"cannot read the study file: {e.strerror or e}", where=where, fix="check the path and its permissions"
        ) from None
    try:
        text = blob.decode("utf-8-sig")  # a UTF-8 BOM is harmless
    except UnicodeDecodeError as e:
        line = blob[: e.start].count(b"\n") + 1
        if b"\0" in blob and not blob.startswith((b"\xff\xfe", b"\xfe\xff")):
            raise StudyError("not a text file (binary data)", where=where, fix="give the study's .yaml file") from None
        raise StudyError(
            f"not UTF-8 text: byte 0x{blob[e.start]:02x} at line {line} cannot be decoded",
            where=where,
            fix="save the file as UTF-8",
        ) from None
    try:
        return yaml.load(text, Loader=_StudyLoader)  # noqa: S506 (a SafeLoader subclass)
    except _DuplicateKey as e:
        raise StudyError(str(e.problem), where=where, fix="keep one of them (YAML would silently keep the last)") from None
    except yaml.reader.ReaderError as e:
        line = text[: e.position].count("\n") + 1
        code = ord(e.character) if isinstance(e.character, str) else e.character
        what = "binary data" if code == 0 else f"the unprintable character #x{code:04x}"
        raise StudyError(f"{what} at line {line}", where=where, fix="a study is plain YAML text; remove the character") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        pos = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise StudyError(
            f"YAML syntax error at {pos}: {problem}", where=where, fix="fix the YAML syntax (indentation, colons, brackets)"
        ) from None


def load_study(path: str | Path, overrides: Sequence[str] = ()) -> Study:
    """`overrides`: command-line `key=value` / `key+=value` (harness/overrides.py), applied to the file's
    mapping before it is validated; an error they cause names the override."""
    from harness import overrides as cli_overrides

    ovs = cli_overrides.parse_all(overrides)
    raw = read_study_mapping(path)
    try:
        return parse_study(cli_overrides.apply(raw, ovs), where=str(path))
    except StudyError as e:
        raise cli_overrides.blame(e, ovs) from None


def read_study_mapping(path: str | Path) -> dict:
    """The study file's top-level mapping, unvalidated (StudyError when missing, unreadable or not a mapping)."""
    path = Path(path)
    where = str(path)
    if not path.is_file():
        hint = ", ".join(sorted(p.name for p in Path("studies").glob("*.yaml"))) if Path("studies").is_dir() else ""
        raise StudyError("study file not found", where=where, fix=f"check the path{'; shipped studies: ' + hint if hint else ''}")
    raw = read_yaml(path, where)
    if not isinstance(raw, dict):
        got = "empty" if raw is None else f"a YAML {type(raw).__name__}"
        raise StudyError(
            f"a study must be a YAML mapping, this file is {got}",
            where=where,
            fix="start with 'name: ...' and 'grid: ...' (see studies/quickstart.yaml)",
        )
    return raw


def parse_study(raw: dict, *, where: str = "<study>") -> Study:
    _check_keys(raw, TOP_KEYS, where, "")
    for key in ("name", "grid"):
        if key not in raw:
            raise StudyError(
                f"missing required key '{key}'", where=where, key=key, fix="see studies/quickstart.yaml for the shape of a study"
            )
    name = raw["name"]
    _check_name(name, where)
    if not isinstance(raw.get("description", ""), (str, type(None))):
        raise StudyError(
            f"description must be text, got {type(raw['description']).__name__}",
            where=where,
            key="description",
            fix='quote it: description: "..."',
        )

    dataset = _section(raw, "dataset", {"name": "fashion_mnist"}, where)
    try:
        info = data.describe(dataset)
    except StudyError as e:
        raise e.at(where, e.key or "dataset") from None
    data_source, dataset = dataset, info.config  # canonical: name + the keys that change the data (not where it lives)

    train = _merged(raw, "train", TRAIN_DEFAULTS, where)
    train_written = copy.deepcopy(train)
    _check_train(train, where)
    profile = _merged(raw, "profile", PROFILE_DEFAULTS, where)
    if not isinstance(profile["enabled"], bool):
        raise StudyError(
            f"profile.enabled must be true or false, got {profile['enabled']!r}",
            where=where,
            key="profile.enabled",
            fix="write enabled: false (unquoted)",
        )
    # train.steps 0 with profiling off is a count-only study (params and GMACs, nothing timed or
    # trained: studies/vit_sizes.yaml); its rows carry those counts, so it is allowed
    for key in ("batch_size", "iters"):
        _positive_int(profile[key], where, f"profile.{key}")
    _nonneg_int(profile["warmup"], where, "profile.warmup")
    resources = _merged(raw, "resources", RESOURCE_DEFAULTS, where)
    _check_resources(resources, where)
    slurm = _section(raw, "slurm", {}, where)
    tracking = _tracking(raw, where)

    if train["eval_size"] is not None and train["eval_size"] > info.test_size:
        raise StudyError(
            f"train.eval_size {train['eval_size']} is larger than the {info.name} test split ({info.test_size} images)",
            where=where,
            key="train.eval_size",
            fix=f"use at most {info.test_size}, or leave it out for the full split",
        )
    eval_cfg, eval_source = {}, ()
    if raw.get("eval") is not None:
        from harness import evals

        eval_cfg, sources = evals.check_section(raw["eval"], where, main=info, val_size=train.get("val_size", 0))
        eval_source = tuple(sources)
    grid, zips = _parse_grid(raw["grid"], info, train, where, keep_data_size=bool(eval_cfg))
    overrides = _parse_overrides(raw, grid, where)
    smoke_grid = _parse_smoke(raw, grid, info, where)
    study = Study(
        name=name,
        description=str(raw.get("description", "")),
        path=where,
        dataset=dataset,
        grid=grid,
        train=train,
        profile=profile,
        resources=resources,
        slurm=slurm,
        smoke_grid=smoke_grid,
        data_source=data_source,
        zips=zips,
        overrides=overrides,
        train_written=train_written,
        eval=eval_cfg,
        eval_source=eval_source,
        tracking=tracking,
    )
    _check_cells(study, info, where)
    return study


def _parse_grid(grid: Any, info: data.DataInfo, train: dict, where: str, keep_data_size: bool = False) -> tuple[dict, tuple]:
    """The axes (model, data_size, image_size, seed, then training keys) and the zip groups.
    `keep_data_size`: with train.steps 0, a data_size axis is kept (the probes of an untrained model fit on it)."""
    if not isinstance(grid, dict):
        raise StudyError(
            "grid must be a mapping of axes to lists",
            where=where,
            key="grid",
            fix="e.g. grid: {model: [vit@xs], data_size: [1000]}",
        )
    for k in grid:
        if isinstance(k, str) and k.startswith("train.") and k[6:] in TRAIN_DEFAULTS:
            raise StudyError(
                f"write a training-key axis without 'train.': {k[6:]}",
                where=where,
                key=f"grid.{k}",
                fix=f"grid: {{{k[6:]}: [...]}} (any key of the train section may be an axis)",
            )
    _check_keys(grid, GRID_KEYS | set(TRAIN_DEFAULTS) | {"zip"}, where, "grid")
    axes: dict[str, list] = {}
    paths: dict[str, str] = {}  # axis -> where its list is written (grid.lr or grid.zip[0].lr), for errors
    for k in grid:
        if k != "zip":
            axes[k], paths[k] = _as_list(grid[k]), f"grid.{k}"
    zips = []
    groups = grid.get("zip", [])
    if not isinstance(groups, list) or not all(isinstance(g, dict) and g for g in groups):
        raise StudyError(
            "grid.zip must be a list of mappings of axes to equal-length lists",
            where=where,
            key="grid.zip",
            fix="e.g. zip: [{model: [swin@xs, swin@s], image_size: [32, 64]}]",
        )
    for gi, group in enumerate(groups):
        _check_keys(group, GRID_KEYS | set(TRAIN_DEFAULTS), where, f"grid.zip[{gi}]")
        lists = {k: _as_list(v) for k, v in group.items()}
        for k in lists:
            if k in axes:
                raise StudyError(
                    f"axis '{k}' is given twice ({paths[k]} and grid.zip[{gi}].{k})",
                    where=where,
                    key=f"grid.zip[{gi}].{k}",
                    fix="keep it in one place: in the zip group to pair it, or in grid to cross it",
                )
        lengths = {k: len(v) for k, v in lists.items()}
        if len(set(lengths.values())) > 1:
            raise StudyError(
                f"zip group lists differ in length ({', '.join(f'{k}: {n}' for k, n in lengths.items())})",
                where=where,
                key=f"grid.zip[{gi}]",
                fix="give every axis of a zip group as many values (they are paired element-wise)",
            )
        for k, v in lists.items():
            axes[k], paths[k] = v, f"grid.zip[{gi}].{k}"
        zips.append(tuple(lists))
    profile_only = train["steps"] == 0 and not (keep_data_size and "data_size" in axes)
    for key in ("model",) if profile_only else ("model", "data_size"):
        if key not in axes:
            raise StudyError(
                f"missing required axis '{key}'",
                where=where,
                key=f"grid.{key}",
                fix="every grid needs model and data_size lists (data_size may be left out when train.steps is 0: profile only)",
            )
    if profile_only:
        axes["data_size"], paths["data_size"] = (
            [0],
            "grid.data_size",
        )  # nothing is trained: one trial per model x resolution x seed
    for k, values in axes.items():
        if not values:
            raise StudyError("empty axis", where=where, key=paths[k], fix="give at least one value")
    models = []
    for i, m in enumerate(axes["model"]):
        try:
            models.append(zoo.resolve(m))
        except StudyError as e:
            raise e.at(where, f"{paths['model']}[{i}]") from None
    image_sizes = axes.get("image_size", [info.native_size])
    seeds = axes.get("seed", [0])
    pd_, pi_, ps_ = paths["data_size"], paths.get("image_size", "grid.image_size"), paths.get("seed", "grid.seed")
    for i, v in enumerate(axes["data_size"] if not profile_only else []):
        _positive_int(v, where, f"{pd_}[{i}]")
        if v > info.train_size:
            raise StudyError(
                f"data_size {v} is larger than the {info.name} training split ({info.train_size} images)",
                where=where,
                key=f"{pd_}[{i}]",
                fix=f"use at most {info.train_size}",
            )
        if v < info.num_classes:
            raise StudyError(
                f"data_size {v} is smaller than the number of classes ({info.num_classes})",
                where=where,
                key=f"{pd_}[{i}]",
                fix=f"use at least {info.num_classes} so every class is seen",
            )
    for i, v in enumerate(image_sizes):
        _positive_int(v, where, f"{pi_}[{i}]")
        if v > MAX_IMAGE_SIZE:
            raise StudyError(
                f"image_size {v} px is above the {MAX_IMAGE_SIZE} px limit",
                where=where,
                key=f"{pi_}[{i}]",
                fix=f"use at most {MAX_IMAGE_SIZE} (images are resized on the fly; one {v} px image alone is {3 * 4 * v * v / 1e9:.3g} GB)",
            )
    for i, v in enumerate(seeds):
        _nonneg_int(v, where, f"{ps_}[{i}]")
        if v > MAX_SEED:
            raise StudyError(f"seed {v} is above {MAX_SEED}", where=where, key=f"{ps_}[{i}]", fix="use a seed in 0 .. 2**32 - 1")
    # every model must take every resolution it is paired with: an impossible cell is a bad study, not a failed trial
    paired = any({"model", "image_size"} <= set(z) for z in zips)
    pairs = [(i, i) for i in range(len(models))] if paired else itertools.product(range(len(models)), range(len(image_sizes)))
    for i, j in pairs:
        m, s = models[i], image_sizes[j]
        try:
            zoo.check(m, s, info.in_chans)
        except StudyError as e:
            raise StudyError(
                f"{m.name} cannot take {s} px input: {e.what}", where=where, key=f"{paths['model']}[{i}] x {pi_}[{j}]", fix=e.fix
            ) from None
    out = {"model": models, "data_size": list(axes["data_size"]), "image_size": list(image_sizes), "seed": list(seeds)}
    out.update(_parse_frames(axes, paths, models, info, zips, where))  # video datasets only: frames, frame_stride
    out.update({k: v for k, v in axes.items() if k not in out})  # training-key axes, in the order written
    return out, tuple(zips)


def _parse_frames(axes: dict, paths: dict, models: list, info: data.DataInfo, zips: list, where: str) -> dict:
    """`frames` / `frame_stride` axes of a video dataset (default: its native length, stride 1)."""
    if not info.frames:
        for k in ("frames", "frame_stride"):
            if k in axes:
                raise StudyError(
                    f"{k} is an axis of video datasets; {info.name} holds images",
                    where=where,
                    key=paths[k],
                    fix="remove it, or use a video dataset (e.g. dataset: {name: synthetic, frames: 16})",
                )
        for i, m in enumerate(models):
            if zoo.is_video(m):
                raise StudyError(
                    f"{m.name} is a video model; {info.name} holds images",
                    where=where,
                    key=f"{paths['model']}[{i}]",
                    fix="use an image family, or a video dataset (e.g. dataset: {name: synthetic, frames: 16})",
                )
        return {}
    frames, strides = axes.get("frames", [info.frames]), axes.get("frame_stride", [1])
    pf, ps = paths.get("frames", "grid.frames"), paths.get("frame_stride", "grid.frame_stride")
    for values, key in ((frames, pf), (strides, ps)):
        for i, v in enumerate(values):
            _positive_int(v, where, f"{key}[{i}]")
    paired = any({"frames", "frame_stride"} <= set(z) for z in zips)
    for i, j in [(i, i) for i in range(len(frames))] if paired else itertools.product(range(len(frames)), range(len(strides))):
        span = (frames[i] - 1) * strides[j] + 1  # frames 0, s, ..., (T-1)s
        if span > info.frames:
            raise StudyError(
                f"{frames[i]} frames at stride {strides[j]} need clips of {span} frames; {info.name} clips have {info.frames}",
                where=where,
                key=f"{pf}[{i}] x {ps}[{j}]",
                fix=f"keep (frames - 1) x frame_stride + 1 <= {info.frames}",
            )
    with_model = any({"model", "frames"} <= set(z) for z in zips)  # a zip group pairs each model with its clip length
    for i, j in [(i, i) for i in range(len(models))] if with_model else itertools.product(range(len(models)), range(len(frames))):
        m, t = models[i], frames[j]
        try:
            zoo.check_frames(m, t)
        except StudyError as e:
            raise StudyError(
                f"{m.name} cannot take {t} frames: {e.what}", where=where, key=f"{paths['model']}[{i}] x {pf}[{j}]", fix=e.fix
            ) from None
    return {"frames": list(frames), "frame_stride": list(strides)}


def _parse_overrides(raw: dict, grid: dict, where: str) -> dict:
    """`overrides: {vit: {lr: 1.0e-3}, "resnet@s": {batch_size: 64}}`: train keys per family or model."""
    section = _section(raw, "overrides", {}, where)
    families = {m.family for m in grid["model"]}
    for name, keys in section.items():
        key = f"overrides.{name}"
        if not isinstance(name, str):
            raise StudyError(
                f"an override is named by a family or a model, got {name!r}",
                where=where,
                key=key,
                fix="e.g. overrides: {vit: {lr: 1.0e-3}}",
            )
        if "@" in name:
            try:
                ms = zoo.resolve(name)
            except StudyError as e:
                raise e.at(where, key) from None
            if all(m.identity() != ms.identity() for m in grid["model"]):
                raise StudyError(
                    f"model {name} is not in grid.model",
                    where=where,
                    key=key,
                    fix=did_you_mean(name, [m.name for m in grid["model"]]),
                )
        elif name not in zoo.families():
            raise StudyError(f"unknown family '{name}'", where=where, key=key, fix=did_you_mean(name, zoo.families()))
        elif name not in families:
            raise StudyError(
                f"no model of family '{name}' in grid.model",
                where=where,
                key=key,
                fix=f"override a family of the grid: {', '.join(sorted(families))}",
            )
        if not isinstance(keys, dict) or not keys:
            raise StudyError(
                "an override is a mapping of train keys to values (a list sweeps them for this family)",
                where=where,
                key=key,
                fix=f"e.g. {name}: {{lr: 1.0e-3}}",
            )
        _check_keys(keys, set(TRAIN_DEFAULTS), where, key)
        for k, v in keys.items():
            if isinstance(v, list) and not v:
                raise StudyError("empty list", where=where, key=f"{key}.{k}", fix="give at least one value")
    return section


def _parse_smoke(raw: dict, grid: dict, info: data.DataInfo, where: str) -> dict:
    """`smoke: {image_size: [...]}`: one smaller resolution per grid value (so the trial count stays)."""
    section = _section(raw, "smoke", {}, where)
    _check_keys(section, SMOKE_KEYS, where, "smoke")
    if "image_size" not in section:
        return {}
    sizes = _as_list(section["image_size"])
    distinct = list(dict.fromkeys(grid["image_size"]))  # a zip group may repeat a resolution
    if len(sizes) != len(distinct) or len(set(sizes)) != len(sizes):
        raise StudyError(
            f"smoke.image_size needs {len(distinct)} distinct values, one per grid.image_size",
            where=where,
            key="smoke.image_size",
            fix="list as many smaller resolutions as the grid has",
        )
    for j, s in enumerate(sizes):
        _positive_int(s, where, f"smoke.image_size[{j}]")
        for i, m in enumerate(grid["model"]):
            try:
                zoo.check(m, s, info.in_chans)
            except StudyError as e:
                raise StudyError(
                    f"{m.name} cannot take {s} px input: {e.what}",
                    where=where,
                    key=f"grid.model[{i}] x smoke.image_size[{j}]",
                    fix=e.fix,
                ) from None
    lookup = dict(zip(distinct, sizes))
    return {"image_size": [lookup[v] for v in grid["image_size"]]}


def _check_train(train: dict, where: str) -> None:
    if train["steps"] is not None and train["epochs"] is not None:
        raise StudyError(
            "both train.steps and train.epochs are set",
            where=where,
            key="train",
            fix="give one budget: steps (equal compute across data sizes) or epochs",
        )
    _nonneg_int(train["val_size"], where, "train.val_size")
    if train["early_stop"] is not None:
        _check_early_stop(train, where)
    elif train["steps"] is None and train["epochs"] is None:
        train["steps"] = 500
    budget = "early_stop" if train["early_stop"] is not None else "steps" if train["steps"] is not None else "epochs"
    if budget == "early_stop":
        pass
    elif budget == "steps":
        _nonneg_int(train["steps"], where, "train.steps")  # 0 = profile only (throughput/FLOPs studies)
    elif not _number(train["epochs"]) or train["epochs"] <= 0:
        raise StudyError(
            f"train.epochs must be a positive number, got {train['epochs']!r}",
            where=where,
            key="train.epochs",
            fix="e.g. epochs: 10",
        )
    _positive_int(train["batch_size"], where, "train.batch_size")
    _nonneg_int(train["warmup_steps"], where, "train.warmup_steps")
    for key in ("lr", "weight_decay", "momentum", "label_smoothing"):
        v = train[key]
        if not _number(v) or v < 0:
            raise StudyError(
                f"train.{key} must be a non-negative number, got {v!r}",
                where=where,
                key=f"train.{key}",
                fix="e.g. lr: 2.0e-3 (YAML needs the '.0' before 'e')",
            )
    if train["lr"] == 0:
        raise StudyError(
            "train.lr is 0: training would change nothing",
            where=where,
            key="train.lr",
            fix="e.g. lr: 2.0e-3; for a profile-only study use steps: 0",
        )
    for key, why in (("label_smoothing", "1 would leave no mass on the true class"), ("momentum", "1 or more diverges")):
        if train[key] >= 1:
            raise StudyError(
                f"train.{key} must be in [0, 1), got {train[key]!r}",
                where=where,
                key=f"train.{key}",
                fix=f"use a value below 1 ({why}), e.g. 0.1",
            )
    for key, allowed in CHOICES.items():
        if train[key] not in allowed:
            raise StudyError(
                f"unknown {key} {train[key]!r}", where=where, key=f"train.{key}", fix=did_you_mean(str(train[key]), allowed)
            )
    for key in ("eval_every", "eval_size"):
        if train[key] is not None:
            _positive_int(train[key], where, f"train.{key}")
    _positive_int(train["curve_eval_size"], where, "train.curve_eval_size")
    if not isinstance(train["compile"], bool):
        raise StudyError(
            f"train.compile must be true or false, got {train['compile']!r}",
            where=where,
            key="train.compile",
            fix="compile: true (torch.compile the model) or leave it out",
        )
    ssl.check_train(train, where)  # the objective and its keys (fills SimCLR's defaults)
    for key, default in UNHASHED_DEFAULTS.items():
        if train[key] == default:
            del train[key]  # the default stays out of the hashed config: trial ids of existing studies do not change


def _check_early_stop(train: dict, where: str) -> None:
    es, key = train["early_stop"], "train.early_stop"
    if not isinstance(es, dict):
        raise StudyError(
            f"early_stop must be a mapping, got {es!r}",
            where=where,
            key=key,
            fix="e.g. early_stop: {patience: 5, max_steps: 4000}",
        )
    _check_keys(es, EARLY_STOP_KEYS, where, key)
    if "patience" not in es:
        raise StudyError(
            "early_stop needs patience (evaluations without a better val accuracy before stopping)",
            where=where,
            key=key,
            fix="e.g. early_stop: {patience: 5, max_steps: 4000}",
        )
    _positive_int(es["patience"], where, f"{key}.patience")
    if ("max_steps" in es) == ("max_epochs" in es):
        raise StudyError(
            "early_stop needs one ceiling: max_steps or max_epochs",
            where=where,
            key=key,
            fix="e.g. early_stop: {patience: 5, max_steps: 4000} (training stops there at the latest)",
        )
    if "min_steps" in es and "min_epochs" in es:
        raise StudyError("early_stop takes min_steps or min_epochs, not both", where=where, key=key, fix="keep one")
    for k in ("max_steps", "min_steps"):
        if k in es:
            (_positive_int if k == "max_steps" else _nonneg_int)(es[k], where, f"{key}.{k}")
    for k in ("max_epochs", "min_epochs"):
        if k in es and (not _number(es[k]) or es[k] < 0 or (k == "max_epochs" and es[k] == 0)):
            raise StudyError(
                f"{k} must be a positive number, got {es[k]!r}", where=where, key=f"{key}.{k}", fix="e.g. max_epochs: 50"
            )
    for budget in ("steps", "epochs"):
        if train[budget] is not None:
            raise StudyError(
                f"train.{budget} and train.early_stop are both set",
                where=where,
                key=key,
                fix="early_stop carries its own ceiling (max_steps or max_epochs): remove train.steps/epochs",
            )
    if not train["val_size"]:
        raise StudyError(
            "early stopping watches the validation split, and train.val_size is 0",
            where=where,
            key=key,
            fix="set train.val_size (e.g. 5000: images held out of the training split)",
        )


def _check_resources(res: dict, where: str) -> None:
    for key in ("cpus", "gpus"):
        v = res[key]
        if not _number(v) or v < 0:
            raise StudyError(
                f"resources.{key} must be a non-negative number, got {v!r}",
                where=where,
                key=f"resources.{key}",
                fix="e.g. resources: {cpus: 1, gpus: 0.25}",
            )
    if res["cpus"] < 1 or int(res["cpus"]) != res["cpus"]:
        raise StudyError(
            f"resources.cpus must be a whole number >= 1, got {res['cpus']!r}",
            where=where,
            key="resources.cpus",
            fix="each trial runs one torch thread per CPU; use 1, 2, ...",
        )
    if res["gpus"] > 1 and int(res["gpus"]) != res["gpus"]:
        raise StudyError(
            "fractional GPUs above 1 are not schedulable",
            where=where,
            key="resources.gpus",
            fix="use a fraction below 1 (packing) or a whole number",
        )


# ----------------------------------------------------------------------------- expansion


def expand(study: Study) -> list[Trial]:
    """The grid's cells, duplicates dropped. Axes cross in the order model, data_size, image_size,
    seed, then the training-key axes as written; a zip group moves as one axis (at the place of its
    first member) and pairs its lists element-wise. Each cell's train config layers, lowest first:
    the train section, the cell's training-key axes, the family's override, the model's override
    (a list in an override sweeps that key for that family or model). A layer that sets a budget
    (steps, epochs or early_stop) replaces the other two below it. Invalid cells raise StudyError."""
    trials, seen = [], set()
    g = study.grid
    for cell in _cells(study):
        model = g["model"][cell["model"][0]]
        base = {k: g[k][i] for k, (i, _) in cell.items() if k not in AXIS_ORDER}
        for train in _resolve_train(study, model, base, {k: p for k, (_, p) in cell.items()}):
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
                study_hash=study.study_hash,
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
            _check_train(cfg, study.path)
        except StudyError as e:
            k = e.key.split(".")[1] if e.key.startswith("train.") else ""
            raise (e.at(study.path, source[k] + e.key[len("train." + k) :]) if k in source else e) from None
        out.append(_smoke_train(cfg) if study.smoke else cfg)
    return out


def _check_cells(study: Study, info: data.DataInfo, where: str) -> None:
    """Every cell resolves (raises on the first bad one), and its subset fits beside its validation split."""
    for t in expand(study):
        ssl.require_probes(t.train.get("objective", "supervised"), study.eval, where)
        val = t.train.get("val_size", 0)
        if val and t.data_size + val > info.train_size:
            raise StudyError(
                f"data_size {t.data_size} + val_size {val} is larger than the {info.name} training split "
                f"({info.train_size} images)",
                where=where,
                key="grid.data_size",
                fix=f"use data_size at most {info.train_size - val}, or a smaller train.val_size",
            )


def varying_train_keys(trials: list[Trial]) -> list[str]:
    """Train keys whose resolved value differs between trials (the dry-run and analysis columns)."""
    keys = list(dict.fromkeys(k for t in trials for k in t.train))
    return [k for k in keys if len({json.dumps(t.train.get(k), sort_keys=True) for t in trials}) > 1]


SMOKE_STEPS = 3
SMOKE_DATA_DIVISOR = 50  # 1k/4k/16k -> 20/80/320: keeps the grid's shape, runs in seconds


def _smoke_sizes(sizes: list[int], floor: int) -> list[int]:
    """n -> ceil(n / 50), at least `floor`, kept distinct and in the same order (500 and 1000 must not
    both become 20: the smoke grid has as many trials as the real one)."""
    small: dict[int, int] = {}
    for n in sorted(set(sizes)):
        s = max(floor, math.ceil(n / SMOKE_DATA_DIVISOR)) if n else 0
        small[n] = max(s, max(small.values(), default=-1) + 1) if n else 0
    return [small[n] for n in sizes]


def _smoke_resources(resources: dict) -> dict:
    """A GPU study's smoke run proves on a CPU-only machine (CI) that it loads and runs: its trials run on
    the CPU there instead of being refused (a real run still refuses gpus > 0 without CUDA). Resources are
    not part of a trial's id, so this changes no id."""
    import torch

    if resources.get("gpus", 0) > 0 and not torch.cuda.is_available():
        return dict(resources, gpus=0)
    return resources


def smoke(study: Study) -> Study:
    """Same grid shape, tiny budget: every axis value kept, steps/subsets/profiling shrunk."""
    info = data.describe({**study.data_source, **study.dataset})
    floor = 2 * info.num_classes
    sizes = _smoke_sizes(study.grid["data_size"], floor)
    train = _smoke_train(study.train)
    profile = dict(study.profile, batch_size=min(study.profile["batch_size"], 8), warmup=1, iters=2)
    return Study(
        name=study.name + "-smoke",
        description=study.description,
        path=study.path,
        dataset=study.dataset,
        grid=dict(study.grid, data_size=sizes, **study.smoke_grid),
        train=train,
        profile=profile,
        resources=_smoke_resources(study.resources),
        slurm=study.slurm,
        smoke=True,
        data_source=study.data_source,
        zips=study.zips,
        overrides=study.overrides,
        train_written=study.train_written,
        eval=study.eval,
        eval_source=study.eval_source,
        tracking=study.tracking,
    )


SMOKE_VAL_SIZE = 100  # validation images under --smoke


def _smoke_train(train: dict) -> dict:
    """A checked train config shrunk to seconds: 3 steps (or an early-stop ceiling of 3), batch <= 32,
    one curve point and 128 test images."""
    out = dict(
        train,
        steps=SMOKE_STEPS if train.get("steps") != 0 else 0,
        epochs=None,
        batch_size=min(train["batch_size"], 32),
        warmup_steps=1,
        eval_every=SMOKE_STEPS,  # one curve point, at the end: evaluation was most of a smoke trial's time (video clips)
        curve_eval_size=64,
        eval_size=128,
    )
    if train.get("early_stop"):
        out.update(steps=None, early_stop={"patience": train["early_stop"]["patience"], "max_steps": SMOKE_STEPS})
    if train.get("val_size"):
        out["val_size"] = min(train["val_size"], SMOKE_VAL_SIZE)
    return out


# ----------------------------------------------------------------------------- helpers


def _section(raw: dict, key: str, default: dict, where: str) -> dict:
    value = raw.get(key, default)
    if value is None:
        value = default
    if not isinstance(value, dict):
        raise StudyError(
            f"'{key}' must be a mapping, got {type(value).__name__}", where=where, key=key, fix=f"write it as '{key}: {{...}}'"
        )
    return copy.deepcopy(value)


def _tracking(raw: dict, where: str) -> dict:
    """tracking: {mlflow: URI, tensorboard: DIR}, each a non-empty string (harness/analysis/export.py)."""
    section = _section(raw, "tracking", {}, where)
    _check_keys(section, TRACKING_KEYS, where, "tracking")
    for k, v in section.items():
        if not isinstance(v, str) or not v.strip():
            example = "http://127.0.0.1:5000" if k == "mlflow" else "runs/tb"
            raise StudyError(
                f"must be a non-empty string, got {v!r}", where=where, key=f"tracking.{k}", fix=f"e.g. {k}: {example}"
            )
    return section


def _merged(raw: dict, key: str, defaults: dict, where: str) -> dict:
    section = _section(raw, key, {}, where)
    _check_keys(section, set(defaults), where, key)
    return {**defaults, **section}


def _check_keys(section: dict, allowed: set[str], where: str, prefix: str) -> None:
    for k in section:
        if k not in allowed:
            path = f"{prefix}.{k}" if prefix else str(k)
            raise StudyError(f"unknown key '{k}'", where=where, key=path, fix=did_you_mean(str(k), allowed))


def _check_name(name: Any, where: str) -> None:
    """The study name is one directory under the results root: a single safe path component."""

    def bad(
        what: str,
        fix: str = f"use letters, digits, '_', '-', '.', starting with a letter or digit, at most {NAME_MAX} characters (it names the results directory)",
    ) -> StudyError:
        return StudyError(what, where=where, key="name", fix=fix)

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


def _number(v: Any) -> bool:
    """A finite int or float (not a bool, which YAML gives for yes/no)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _as_list(v: Any) -> list:
    return list(v) if isinstance(v, (list, tuple)) else [v]


def _positive_int(v: Any, where: str, key: str) -> None:
    if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
        raise StudyError(f"must be a positive integer, got {v!r}", where=where, key=key, fix="use a whole number > 0")


def _nonneg_int(v: Any, where: str, key: str) -> None:
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise StudyError(f"must be a non-negative integer, got {v!r}", where=where, key=key, fix="use a whole number >= 0")
