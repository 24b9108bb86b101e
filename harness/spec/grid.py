"""The grid grammar: axes (model, data_size, image_size, seed, frames, then training keys), zip groups
that pair axes element-wise, and per-family/per-model overrides of train keys."""

from __future__ import annotations

import itertools
from typing import Any

from harness import data, zoo
from harness.errors import StudyError, did_you_mean
from harness.spec.checks import Where, as_list
from harness.spec.train_keys import TRAIN_DEFAULTS

GRID_KEYS = {"model", "data_size", "image_size", "seed", "frames", "frame_stride"}
AXIS_ORDER = (
    "model",
    "data_size",
    "image_size",
    "frames",
    "frame_stride",
    "seed",
)  # expansion order; training-key axes follow in the order written
MAX_SEED = 2**32 - 1  # numpy's and most generators' seed range
MAX_IMAGE_SIZE = 4096  # px: one 4096 px RGB image is 201 MB as float32, a batch of 64 is 13 GB; an 8192 px grid got the test process killed for memory


def parse_grid(grid: Any, info: data.DataInfo, train: dict, where: Where, keep_data_size: bool = False) -> tuple[dict, tuple]:
    """The axes (model, data_size, image_size, seed, then training keys) and the zip groups.
    `keep_data_size`: with train.steps 0, a data_size axis is kept (the probes of an untrained model fit on it)."""
    axes, paths, zips = _axes(grid, where)
    profile_only = _required_axes(axes, paths, train, keep_data_size, where)
    models = []
    for i, m in enumerate(axes["model"]):
        try:
            models.append(zoo.resolve(m))
        except StudyError as e:
            raise where.at(e, f"{paths['model']}[{i}]") from None
    image_sizes = axes.get("image_size", [info.native_size])
    seeds = axes.get("seed", [0])
    _check_values(axes, paths, info, profile_only, where)
    _check_resolutions(models, image_sizes, zips, paths, info, where)
    out = {"model": models, "data_size": list(axes["data_size"]), "image_size": list(image_sizes), "seed": list(seeds)}
    out.update(parse_frames(axes, paths, models, info, zips, where))  # video datasets only: frames, frame_stride
    out.update({k: v for k, v in axes.items() if k not in out})  # training-key axes, in the order written
    return out, tuple(zips)


def _axes(grid: Any, where: Where) -> tuple[dict[str, list], dict[str, str], list[tuple]]:
    """(axis -> its values, axis -> where its list is written, the zip groups): the grid's shape checked."""
    if not isinstance(grid, dict):
        raise StudyError(
            "grid must be a mapping of axes to lists",
            where=where.path,
            key="grid",
            fix="e.g. grid: {model: [vit@xs], data_size: [1000]}",
        )
    for k in grid:
        if isinstance(k, str) and k.startswith("train.") and k[6:] in TRAIN_DEFAULTS:
            raise StudyError(
                f"write a training-key axis without 'train.': {k[6:]}",
                where=where.path,
                key=f"grid.{k}",
                fix=f"grid: {{{k[6:]}: [...]}} (any key of the train section may be an axis)",
            )
    where.keys(grid, GRID_KEYS | set(TRAIN_DEFAULTS) | {"zip"}, "grid")
    axes: dict[str, list] = {}
    paths: dict[str, str] = {}  # axis -> where its list is written (grid.lr or grid.zip[0].lr), for errors
    for k in grid:
        if k != "zip":
            axes[k], paths[k] = as_list(grid[k]), f"grid.{k}"
    zips = []
    groups = grid.get("zip", [])
    if not isinstance(groups, list) or not all(isinstance(g, dict) and g for g in groups):
        raise StudyError(
            "grid.zip must be a list of mappings of axes to equal-length lists",
            where=where.path,
            key="grid.zip",
            fix="e.g. zip: [{model: [swin@xs, swin@s], image_size: [32, 64]}]",
        )
    for gi, group in enumerate(groups):
        where.keys(group, GRID_KEYS | set(TRAIN_DEFAULTS), f"grid.zip[{gi}]")
        lists = {k: as_list(v) for k, v in group.items()}
        for k in lists:
            if k in axes:
                raise StudyError(
                    f"axis '{k}' is given twice ({paths[k]} and grid.zip[{gi}].{k})",
                    where=where.path,
                    key=f"grid.zip[{gi}].{k}",
                    fix="keep it in one place: in the zip group to pair it, or in grid to cross it",
                )
        lengths = {k: len(v) for k, v in lists.items()}
        if len(set(lengths.values())) > 1:
            raise StudyError(
                f"zip group lists differ in length ({', '.join(f'{k}: {n}' for k, n in lengths.items())})",
                where=where.path,
                key=f"grid.zip[{gi}]",
                fix="give every axis of a zip group as many values (they are paired element-wise)",
            )
        for k, v in lists.items():
            axes[k], paths[k] = v, f"grid.zip[{gi}].{k}"
        zips.append(tuple(lists))
    return axes, paths, zips


def _required_axes(axes: dict, paths: dict, train: dict, keep_data_size: bool, where: Where) -> bool:
    """Whether the study is profile only (train.steps 0: data_size may be left out), after checking
    that the required axes are given and none is empty."""
    profile_only = train["steps"] == 0 and not (keep_data_size and "data_size" in axes)
    for key in ("model",) if profile_only else ("model", "data_size"):
        if key not in axes:
            raise StudyError(
                f"missing required axis '{key}'",
                where=where.path,
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
            raise StudyError("empty axis", where=where.path, key=paths[k], fix="give at least one value")
    return profile_only


def _check_values(axes: dict, paths: dict, info: data.DataInfo, profile_only: bool, where: Where) -> None:
    """data_size within the training split, image_size within the limit, seeds in range."""
    image_sizes = axes.get("image_size", [info.native_size])
    seeds = axes.get("seed", [0])
    pd_, pi_, ps_ = paths["data_size"], paths.get("image_size", "grid.image_size"), paths.get("seed", "grid.seed")
    for i, v in enumerate(axes["data_size"] if not profile_only else []):
        where.positive_int(v, f"{pd_}[{i}]")
        if v > info.train_size:
            raise StudyError(
                f"data_size {v} is larger than the {info.name} training split ({info.train_size} images)",
                where=where.path,
                key=f"{pd_}[{i}]",
                fix=f"use at most {info.train_size}",
            )
        if v < info.num_classes:
            raise StudyError(
                f"data_size {v} is smaller than the number of classes ({info.num_classes})",
                where=where.path,
                key=f"{pd_}[{i}]",
                fix=f"use at least {info.num_classes} so every class is seen",
            )
    for i, v in enumerate(image_sizes):
        where.positive_int(v, f"{pi_}[{i}]")
        if v > MAX_IMAGE_SIZE:
            raise StudyError(
                f"image_size {v} px is above the {MAX_IMAGE_SIZE} px limit",
                where=where.path,
                key=f"{pi_}[{i}]",
                fix=f"use at most {MAX_IMAGE_SIZE} (images are resized on the fly; one {v} px image alone is {3 * 4 * v * v / 1e9:.3g} GB)",
            )
    for i, v in enumerate(seeds):
        where.nonneg_int(v, f"{ps_}[{i}]")
        if v > MAX_SEED:
            raise StudyError(
                f"seed {v} is above {MAX_SEED}", where=where.path, key=f"{ps_}[{i}]", fix="use a seed in 0 .. 2**32 - 1"
            )


def _check_resolutions(models: list, image_sizes: list, zips: list, paths: dict, info: data.DataInfo, where: Where) -> None:
    """Every model takes every resolution it is paired with (its zip partner, or all of them)."""
    pi_ = paths.get("image_size", "grid.image_size")
    # every model must take every resolution it is paired with: an impossible cell is a bad study, not a failed trial
    paired = any({"model", "image_size"} <= set(z) for z in zips)
    pairs = [(i, i) for i in range(len(models))] if paired else itertools.product(range(len(models)), range(len(image_sizes)))
    for i, j in pairs:
        m, s = models[i], image_sizes[j]
        try:
            zoo.check(m, s, info.in_chans)
        except StudyError as e:
            raise StudyError(
                f"{m.name} cannot take {s} px input: {e.what}",
                where=where.path,
                key=f"{paths['model']}[{i}] x {pi_}[{j}]",
                fix=e.fix,
            ) from None


def parse_frames(axes: dict, paths: dict, models: list, info: data.DataInfo, zips: list, where: Where) -> dict:
    """`frames` / `frame_stride` axes of a video dataset (default: its native length, stride 1)."""
    if not info.frames:
        for k in ("frames", "frame_stride"):
            if k in axes:
                raise StudyError(
                    f"{k} is an axis of video datasets; {info.name} holds images",
                    where=where.path,
                    key=paths[k],
                    fix="remove it, or use a video dataset (e.g. dataset: {name: synthetic, frames: 16})",
                )
        for i, m in enumerate(models):
            if zoo.is_video(m):
                raise StudyError(
                    f"{m.name} is a video model; {info.name} holds images",
                    where=where.path,
                    key=f"{paths['model']}[{i}]",
                    fix="use an image family, or a video dataset (e.g. dataset: {name: synthetic, frames: 16})",
                )
        return {}
    frames, strides = axes.get("frames", [info.frames]), axes.get("frame_stride", [1])
    pf, ps = paths.get("frames", "grid.frames"), paths.get("frame_stride", "grid.frame_stride")
    for values, key in ((frames, pf), (strides, ps)):
        for i, v in enumerate(values):
            where.positive_int(v, f"{key}[{i}]")
    paired = any({"frames", "frame_stride"} <= set(z) for z in zips)
    for i, j in [(i, i) for i in range(len(frames))] if paired else itertools.product(range(len(frames)), range(len(strides))):
        span = (frames[i] - 1) * strides[j] + 1  # frames 0, s, ..., (T-1)s
        if span > info.frames:
            raise StudyError(
                f"{frames[i]} frames at stride {strides[j]} need clips of {span} frames; {info.name} clips have {info.frames}",
                where=where.path,
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
                f"{m.name} cannot take {t} frames: {e.what}",
                where=where.path,
                key=f"{paths['model']}[{i}] x {pf}[{j}]",
                fix=e.fix,
            ) from None
    return {"frames": list(frames), "frame_stride": list(strides)}


def parse_overrides(raw: dict, grid: dict, where: Where) -> dict:
    """`overrides: {vit: {lr: 1.0e-3}, "resnet@s": {batch_size: 64}}`: train keys per family or model."""
    section = where.section(raw, "overrides", {})
    families = {m.family for m in grid["model"]}
    for name, keys in section.items():
        key = f"overrides.{name}"
        if not isinstance(name, str):
            raise StudyError(
                f"an override is named by a family or a model, got {name!r}",
                where=where.path,
                key=key,
                fix="e.g. overrides: {vit: {lr: 1.0e-3}}",
            )
        if "@" in name:
            try:
                ms = zoo.resolve(name)
            except StudyError as e:
                raise where.at(e, key) from None
            if all(m.identity() != ms.identity() for m in grid["model"]):
                raise StudyError(
                    f"model {name} is not in grid.model",
                    where=where.path,
                    key=key,
                    fix=did_you_mean(name, [m.name for m in grid["model"]]),
                )
        elif name not in zoo.families():
            raise StudyError(f"unknown family '{name}'", where=where.path, key=key, fix=did_you_mean(name, zoo.families()))
        elif name not in families:
            raise StudyError(
                f"no model of family '{name}' in grid.model",
                where=where.path,
                key=key,
                fix=f"override a family of the grid: {', '.join(sorted(families))}",
            )
        if not isinstance(keys, dict) or not keys:
            raise StudyError(
                "an override is a mapping of train keys to values (a list sweeps them for this family)",
                where=where.path,
                key=key,
                fix=f"e.g. {name}: {{lr: 1.0e-3}}",
            )
        where.keys(keys, set(TRAIN_DEFAULTS), key)
        for k, v in keys.items():
            if isinstance(v, list) and not v:
                raise StudyError("empty list", where=where.path, key=f"{key}.{k}", fix="give at least one value")
    return section
