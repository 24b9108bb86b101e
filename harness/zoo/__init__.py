"""Model zoo: architecture families built from timm's classes, sizes decoded from one table each.

A model is written `family@size` ("vit@xs", "resnet@50"), or as a mapping: an explicit shape
({family: vit, patch: 4, width: 96, depth: 6, heads: 3}; keys left out take the family's `xs`
values) or a table size with overrides ({family: vit, size: xs, depth: 8}). Each family module's
docstring lists its shape keys. Every family has the small-image ladder xs/s/m/l (28-64 px) and
its published ImageNet sizes (224 px); the pixel baselines have no ImageNet sizes, and `linear`,
whose shape the input fixes, has the one size xs.

Video families (`VIDEO = True`: r3d, r2plus1d, vivit, vivit_fact) take [B, C, T, H, W] clips; their
`build` and `check_frames` take the clip length T (`frames`), which image families never get
(frames = 0 means an image model). Their published sizes are Kinetics configs (112 or 224 px,
`CANONICAL_IMAGE`), listed in IMAGENET like the image families' ImageNet sizes.

Adding a family: one module with the `Family` attributes below, and one line in FAMILIES.

Everything but `build` is torch-free (tables, names, shape checks, strides): a family module imports
timm, torchvision or torch inside its `build`, and the nn.Module classes written here live in
harness/zoo/nets.py, which only `build` imports. So loading and expanding a study imports no torch.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from harness.errors import StudyError, did_you_mean
from harness.zoo import convnext, linear, mixer, mlp, r2plus1d, r3d, resnet, swin, vit, vivit, vivit_fact

if TYPE_CHECKING:
    import torch.nn as nn

SMALL_IMAGE = 28  # Fashion-MNIST; the default input of every non-ImageNet size
IMAGENET_IMAGE = 224
DEFAULT_FRAMES = 16  # clip length video models are listed and profiled at when none is given (torchvision's 16x112x112)


class Family(Protocol):
    """What a family module provides (modules satisfy it structurally)."""

    SIZES: dict[str, dict]  # the one table: size name -> shape (key order = shape key order)
    IMAGENET: tuple[str, ...]  # the sizes that are published ImageNet configs
    DEFAULT: str  # the size whose shape fills the keys an explicit shape leaves out
    PATCH_GRID: bool  # True: the image size must be a multiple of stride() (a grid of tokens)
    # optional: CHOICES: dict[str, tuple[str, ...]], the allowed values of string-valued keys
    # optional: check_image(shape, image_size) -> str | None, why an image size >= stride() does
    #           not fit beyond PATCH_GRID (Swin: its windows must tile every stage), None if it does
    # optional (video families): VIDEO = True; CANONICAL_IMAGE: the published sizes' input (px);
    #           check_frames(shape, frames) -> str | None; build takes a 5th argument, frames

    def validate(self, shape: dict) -> None: ...  # image-independent constraints -> StudyError

    def stride(self, shape: dict) -> int: ...  # total downsampling = the smallest image size

    def build(self, shape: dict, image_size: int, in_chans: int, num_classes: int) -> nn.Module: ...


FAMILIES: dict[str, Family] = {
    "resnet": resnet,
    "vit": vit,
    "mixer": mixer,
    "convnext": convnext,
    "swin": swin,
    "linear": linear,
    "mlp": mlp,
    "r3d": r3d,
    "r2plus1d": r2plus1d,
    "vivit": vivit,
    "vivit_fact": vivit_fact,
}


@dataclass(frozen=True)
class ModelSpec:
    family: str
    size: str  # table name, "" for an explicit shape
    shape: dict  # fully resolved shape, plain JSON values, in the family table's key order
    name: str  # "vit@xs", "vit@xs{depth=8}", "vit{depth=6,heads=3,mlp_ratio=4,patch=4,width=96}"
    canonical: bool  # a published ImageNet config, unmodified

    def __hash__(self) -> int:  # the dict field would make the generated hash raise
        return hash((self.family, self.size, self.name, json.dumps(self.shape)))

    def identity(self) -> dict:
        """What a trial id hashes: the family and the resolved shape, whatever spelling produced it.
        `size` is the table row the shape equals ("" when it equals none: overrides, explicit shapes),
        so `vit@xs` keeps the id it always had and `{family: vit}` (the same shape) shares it."""
        return {"family": self.family, "size": _table_size(_family(self.family), self.shape, self.size), "shape": self.shape}


def families() -> list[str]:
    return list(FAMILIES)


def sizes(family: str) -> list[str]:
    return list(_family(family).SIZES)


def list_models(family: str | None = None) -> list[ModelSpec]:
    names = [family] if family is not None else families()
    return [resolve(f"{f}@{s}") for f in names for s in sizes(f)]


def resolve(spec: str | dict) -> ModelSpec:
    if isinstance(spec, str):
        family, at, size = spec.strip().lower().partition("@")
        if not at or not size:
            _family(family)
            raise StudyError(f"model '{spec}' names no size", fix=f"add one: {', '.join(_names(family))}")
        return _make(family, size, {})
    if isinstance(spec, Mapping):
        raw = dict(spec)
        if "family" not in raw:
            raise StudyError("a model mapping needs a 'family' key", fix=f"one of {', '.join(FAMILIES)}")
        family = str(raw.pop("family")).strip().lower()
        size = raw.pop("size", None)
        return _make(family, "" if size is None else str(size).strip().lower(), raw)
    raise StudyError(
        f"a model is 'family@size' or a mapping, not {type(spec).__name__}",
        fix="e.g. vit@xs or {family: vit, size: xs, depth: 8}",
    )


def is_video(ms: ModelSpec | str) -> bool:
    """True for a family that takes [B, C, T, H, W] clips (a ModelSpec or a family name)."""
    return bool(getattr(_family(ms if isinstance(ms, str) else ms.family), "VIDEO", False))


def default_frames(ms: ModelSpec) -> int:
    """DEFAULT_FRAMES for a video model, 0 (no time axis) for an image model."""
    return DEFAULT_FRAMES if is_video(ms) else 0


def check_frames(ms: ModelSpec, frames: int) -> None:
    """A video model needs a clip length it takes (ViViT: a multiple of its tubelet); an image model none."""
    if not is_video(ms):
        if frames:
            raise StudyError(
                f"{ms.name} is an image model; it takes no frames ({frames} given)",
                fix=f"use a video family ({', '.join(f for f in FAMILIES if is_video(f))}) or leave frames out",
            )
        return
    if not _posint(frames):
        raise StudyError(f"{ms.name} is a video model and needs frames >= 1, not {frames!r}", fix="e.g. frames: 16")
    problem = _family(ms.family).check_frames(ms.shape, frames)
    if problem:
        t = ms.shape.get("tubelet", 1)
        below, above = max(t, frames // t * t), (frames // t + 1) * t
        raise StudyError(f"{ms.name} cannot take {frames} frames: {problem}", fix=f"use frames {below} or {above}")


def check(ms: ModelSpec, image_size: int, in_chans: int = 3, frames: int | None = None) -> None:
    """Raise StudyError unless `ms` takes this input; `frames` None: the clip length is not checked."""
    fam = _family(ms.family)
    fam.validate(ms.shape)
    if frames is not None:
        check_frames(ms, frames)
    for key, value in (("image_size", image_size), ("in_chans", in_chans)):
        if not _posint(value):
            raise StudyError(f"{key} must be a positive integer, not {value!r}")
    stride = fam.stride(ms.shape)
    if image_size < stride:
        others = [f"{ms.family}@{s}" for s, row in fam.SIZES.items() if _fits(fam, row, image_size)]
        hint = f", or a size that takes {image_size} px: {', '.join(others)}" if others else ""
        raise StudyError(
            f"image size {image_size} px is too small for {ms.name}, which downsamples by {stride}",
            fix=f"use image_size >= {stride}{hint}",
        )
    if fam.PATCH_GRID and image_size % stride:
        below, above = image_size // stride * stride, (image_size // stride + 1) * stride
        raise StudyError(
            f"image size {image_size} px is not a multiple of the patch size {stride} of {ms.name}",
            fix=f"use image_size {below} or {above}",
        )
    problem = _image_problem(fam, ms.shape, image_size)
    if problem:
        near = sorted(
            (s for s in range(max(stride, image_size - 64), image_size + 65) if _fits(fam, ms.shape, s)),
            key=lambda s: (abs(s - image_size), s),
        )[:2]
        hint = f"use image_size {' or '.join(map(str, sorted(near)))}" if near else "see the family's docstring"
        raise StudyError(f"image size {image_size} px does not fit {ms.name}: {problem}", fix=hint)


def build(ms: ModelSpec, *, image_size: int, in_chans: int, num_classes: int, frames: int = 0) -> nn.Module:
    """The model; a video family's takes [B, C, frames, image_size, image_size] clips."""
    check(ms, image_size, in_chans, frames)
    if not _posint(num_classes):
        raise StudyError(f"num_classes must be a positive integer, not {num_classes!r}")
    if frames:
        return _family(ms.family).build(ms.shape, image_size, in_chans, num_classes, frames)
    return _family(ms.family).build(ms.shape, image_size, in_chans, num_classes)


def default_image_size(ms: ModelSpec) -> int:
    """224 for ImageNet sizes, also with overrides (a video family's CANONICAL_IMAGE for its
    published sizes), else the smallest valid size >= 28 px (a family's SMALL_IMAGE: video, 32)."""
    fam = _family(ms.family)
    if ms.size in fam.IMAGENET:
        return getattr(fam, "CANONICAL_IMAGE", IMAGENET_IMAGE)
    stride = fam.stride(ms.shape)
    smallest = max(getattr(fam, "SMALL_IMAGE", SMALL_IMAGE), stride)  # video ladders: 32 px clips
    first = -(-smallest // stride) * stride if fam.PATCH_GRID else smallest
    return next((s for s in range(first, first + 64 * stride) if _fits(fam, ms.shape, s)), first)


def _family(family: str) -> Family:
    if family not in FAMILIES:
        raise StudyError(f"unknown model family '{family}'", fix=did_you_mean(family, FAMILIES))
    return FAMILIES[family]


def _names(family: str) -> list[str]:
    return [f"{family}@{s}" for s in sizes(family)]


def _make(family: str, size: str, overrides: dict) -> ModelSpec:
    fam = _family(family)
    if size and size not in fam.SIZES:
        raise _unknown_size(family, size)
    base = fam.SIZES[size or fam.DEFAULT]
    for key in overrides:
        if key not in base:
            raise StudyError(f"unknown shape key '{key}' for family '{family}'", fix=did_you_mean(str(key), ["size", *base]))
    shape = {k: _coerce(fam, family, k, overrides.get(k, v), v) for k, v in base.items()}
    fam.validate(shape)
    named = _table_size(fam, shape, size)
    if named:  # a table row however it was written ({family: vit} is vit@xs): one name, one trial id
        return ModelSpec(family, named, shape, f"{family}@{named}", named in fam.IMAGENET)
    if not size:
        return ModelSpec(family, "", shape, family + _braces(shape), False)
    changed = {k: v for k, v in shape.items() if v != base[k]}
    return ModelSpec(family, size, shape, f"{family}@{size}{_braces(changed)}", size in fam.IMAGENET and not changed)


def _table_size(fam: Family, shape: dict, prefer: str = "") -> str:
    """The size whose table row equals `shape` (`prefer` first, then table order), else ""."""
    for name in ([prefer] if prefer in fam.SIZES else []) + list(fam.SIZES):
        if fam.SIZES[name] == shape:
            return name
    return ""


def _unknown_size(family: str, size: str) -> StudyError:
    names = _names(family)
    # a paper's initial names one size: convnext@t -> convnext@tiny (difflib would offer convnext@s)
    longer = [n for n in names if n.startswith(f"{family}@{size}")]
    fix = (
        f"did you mean {' or '.join(longer)}? (known: {', '.join(sorted(names))})"
        if longer
        else did_you_mean(f"{family}@{size}", names)
    )
    return StudyError(f"unknown size '{size}' for family '{family}'", fix=fix)


def _coerce(fam: Family, family: str, key: str, value: object, like: object) -> object:
    """`value` as the type of the table's `like`: a choice, a list of counts, a ratio or a count."""
    what = f"{family} {key}"
    if isinstance(like, str):
        choices = getattr(fam, "CHOICES", {}).get(key, ())
        if str(value).lower() not in choices:
            raise StudyError(f"{what} '{value}' is not valid", fix=did_you_mean(str(value), choices))
        return str(value).lower()
    if isinstance(like, list):
        if not isinstance(value, (list, tuple)) or not value or not all(map(_posint, value)):
            raise StudyError(f"{what} must be a list of positive integers, not {value!r}", fix=f"e.g. {like}")
        return [int(v) for v in value]
    if isinstance(like, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
            raise StudyError(f"{what} must be a positive number, not {value!r}", fix=f"e.g. {like}")
        return float(value)
    if not _posint(value):
        raise StudyError(f"{what} must be a positive integer, not {value!r}", fix=f"e.g. {like}")
    return int(value)


def _posint(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _braces(shape: dict) -> str:
    """{depth=6,heads=3}: sorted keys, so the name does not depend on how the shape was written."""
    return "{" + ",".join(f"{k}={_text(shape[k])}" for k in sorted(shape)) + "}" if shape else ""


def _text(value: object) -> str:
    if isinstance(value, list):
        return "[" + ",".join(map(str, value)) + "]"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _fits(fam: Family, shape: dict, image_size: int) -> bool:
    stride = fam.stride(shape)
    return image_size >= stride and not (fam.PATCH_GRID and image_size % stride) and not _image_problem(fam, shape, image_size)


def _image_problem(fam: Family, shape: dict, image_size: int) -> str | None:
    check_image = getattr(fam, "check_image", None)
    return check_image(shape, image_size) if check_image else None
