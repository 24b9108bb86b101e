"""`harness plan`: shapes of each family whose parameters or GMACs hit given targets at a resolution.

    harness plan --family vit,swin,convnext --match params --targets 0.1M,0.5M,2M [--image-size 28]

prints one YAML flow mapping per (family, target), ready to paste into a study's `grid.model`,
with its exact parameters, GMACs and error against the target, so families can be compared at
equal size or equal compute.

Search: each family has a small grid (`grid()`): widths x depth patterns, every other shape key
taken from the family's reference row (the `xs` rung below 224 px, its ImageNet base size at 224 px
and above; `--patch` overrides the patch). Counting every cell exactly would build hundreds to
thousands of models (0.01-0.5 s each), so the counts are interpolated from a few exact ones, which
is exact because of two facts of these architectures:
- at a fixed depth every layer's size is linear in the width (heads, MLP and stage widths are
  fixed multiples of it), so parameters and MACs are quadratic in the width: 3 widths determine
  them (attention's N^2 * D is linear in D);
- blocks within a stage are identical, so the counts are affine in each stage's block count:
  the all-ones pattern and one extra block per stage determine every pattern.
That is 3 x (stages + 1) exact counts per family (6 for ViT, Mixer, MLP) whatever the grid's size.
Each chosen shape is counted exactly once more: the printed numbers are those counts, and one that
differs from its interpolation stops the plan (a grid that broke the premises is a bug).

Choice: the cell minimising relative error + 0.01 x |ln((depth / width) / the reference row's)|:
among cells about equally close to the target, the one that keeps the family's proportions (not a
width-8 ResNet 23 blocks deep), trading at most 1% of error per e-fold of aspect. Stage patterns
grow along the reference stage ratio (`depth_ladder`). Errors measured over 30 log-spaced targets
per family (printed with every shape): at 28 px, 0.5M-5M params: median 0.2-0.8%, worst 3.3%
(ViT); 0.1M-0.5M, where one block is a large share of the model: median 0.5-1.9%, worst 8.5%
(ResNet); at 224 px, 5M-300M: median 0.1-0.6%, worst 2.7% (Swin).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from harness import flops, models, zoo
from harness.errors import StudyError, did_you_mean

ASPECT_COST = 0.01  # relative error traded for proportions: 1% per e-fold of depth / width off the reference
SUFFIX = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9}
REACH = 0.10  # a target no grid cell hits within 10% is out of reach (inside the grid the worst error is 8.5%)


@dataclass(frozen=True)
class Grid:
    """Candidate shapes: every (depth pattern, width); shape() fills in the other keys."""

    depths: list[list[int]]  # stage block counts (one entry for single-stack families)
    widths: list[int]
    shape: Callable[[list[int], int], dict]
    reference: dict = field(default_factory=dict)  # the row whose other keys and proportions are kept


@dataclass(frozen=True)
class Planned:
    family: str
    target: float
    match: str  # "params" | "gmacs"
    shape: dict
    params: int
    gmacs: float

    @property
    def error_pct(self) -> float:
        value = self.params if self.match == "params" else self.gmacs
        return 100.0 * (value / self.target - 1.0)

    def yaml(self) -> str:
        """{family: vit, patch: 4, width: 96, ...}: a YAML flow mapping for grid.model."""
        return "{" + ", ".join(f"{k}: {yaml_value(v)}" for k, v in {"family": self.family, **self.shape}.items()) + "}"

    def as_dict(self) -> dict:
        return {
            "family": self.family,
            "match": self.match,
            "target": self.target,
            "shape": dict(self.shape),
            "name": zoo.resolve({"family": self.family, **self.shape}).name,
            "params": self.params,
            "fwd_gmacs": self.gmacs,
            "error_pct": round(self.error_pct, 3),
        }


# ----------------------------------------------------------------------------- grids


def _steps(lo: int, hi: int, step: int) -> list[int]:
    return list(range(lo, hi + 1, step))


def grid(family: str, image_size: int, patch: int | None = None) -> Grid:
    """The search grid of `family` at `image_size` (see the module docstring)."""
    if family not in zoo.FAMILIES:
        raise StudyError(f"unknown family '{family}'", key="--family", fix=did_you_mean(family, zoo.families()))
    if zoo.is_video(family):
        images = [f for f in zoo.families() if f != "linear" and not zoo.is_video(f)]
        raise StudyError(
            f"'{family}' is a video family; plan sizes image families", key="--family", fix=f"one of {', '.join(images)}"
        )
    small = image_size < zoo.IMAGENET_IMAGE
    ref_name = (
        "xs" if small else {"vit": "b16", "mixer": "b16", "resnet": "50", "convnext": "tiny", "swin": "tiny"}.get(family, "xs")
    )
    ref = dict(zoo.FAMILIES[family].SIZES[ref_name])
    if patch is not None:
        if "patch" not in ref:
            raise StudyError(f"family '{family}' has no patch", key="--patch", fix="leave --patch out for it")
        ref["patch"] = patch
    if family == "vit":  # params and MACs do not depend on heads: head dim 32, or 16 where 32 does not divide
        return Grid(
            [[d] for d in range(1, 17 if small else 33)],
            _steps(32, 512, 16) if small else _steps(64, 1536, 32),
            lambda n, w: dict(ref, width=w, depth=n[0], heads=_heads(w)),
            ref,
        )
    if family == "mixer":  # the paper's token MLP width / 2 and channel MLP 4 x width
        return Grid(
            [[d] for d in range(1, 25 if small else 33)],
            _steps(16, 512, 8) if small else _steps(64, 1536, 32),
            lambda n, w: dict(ref, width=w, depth=n[0], token_mlp=w // 2, channel_mlp=4 * w),
            ref,
        )
    if family == "mlp":
        return Grid([[d] for d in range(1, 7)], _steps(8, 4096, 8), lambda n, w: dict(ref, width=w, depth=n[0]), ref)
    if family == "resnet":  # stages grow in ResNet-18's 1:1:1:1 (small) or ResNet-50's 3:4:6:3
        layers = depth_ladder([1, 1, 1, 1] if small else [3, 4, 6, 3], 24 if small else 60)
        return Grid(layers, _steps(8, 128, 2), lambda n, w: dict(ref, layers=list(n), width=w), ref)
    if family == "convnext":  # stages grow in ConvNeXt-T's 1:1:3:1
        return Grid(
            depth_ladder([1, 1, 3, 1], 36),
            _steps(8, 128, 2) if small else _steps(32, 256, 4),
            lambda n, w: dict(ref, depths=list(n), dims=[w * 2**i for i in range(4)]),
            ref,
        )
    if family == "swin":  # Swin-T's 1:1:3(:1); head dim 8 (16, the small ladder's, leaves 50% width steps) or 32
        head = 8 if small else 32
        depths = depth_ladder([1, 1, 3] if small else [1, 1, 3, 1], 30 if small else 48)
        return Grid(
            depths,
            _steps(head, 192 if small else 256, head),
            lambda n, w: dict(ref, width=w, depths=list(n), heads=[w * 2**i // head for i in range(len(n))]),
            ref,
        )
    if family == "linear":  # no width or depth: its one shape, whatever the target
        return Grid([[1]], [1], lambda n, w: dict(ref), ref)
    raise StudyError(
        f"family '{family}' has no planning grid yet",
        key="--family",
        fix="add one to harness/plan.py grid(), or write its shapes by hand",
    )


def _heads(width: int) -> int:
    return width // 32 if width % 32 == 0 else width // 16


def depth_ladder(ratio: list[int], max_blocks: int) -> list[list[int]]:
    """Stage block counts from one block per stage up to `max_blocks`, one block at a time, each
    added to the stage furthest below `ratio` (ties: the earlier stage): [1,1,1,1], [1,1,2,1], ..."""
    n = [1] * len(ratio)
    out = [list(n)]
    while sum(n) < max_blocks:
        i = min(range(len(n)), key=lambda j: (n[j] / ratio[j], j))
        n[i] += 1
        out.append(list(n))
    return out


# ----------------------------------------------------------------------------- counting


def measure(family: str, shape: dict, image_size: int, in_chans: int, num_classes: int, device: str = "meta") -> tuple[int, int]:
    """Exact (parameters, forward MACs per image) from one build. Small models count 3-5x faster
    on the CPU (timm's weight init dominates on the meta device); large ones need the meta device."""
    ms = zoo.resolve({"family": family, **shape})
    on = flops.meta_build() if device == "meta" else torch.device(device)  # meta: weight initialisation skipped
    with torch.random.fork_rng(devices=[]), on:  # a CPU init must not move the caller's RNG
        model = zoo.build(ms, image_size=image_size, in_chans=in_chans, num_classes=num_classes)
        params = flops.count_params(model)
        macs = flops.count_macs(flops.unfuse_attention(model).eval(), torch.zeros(1, in_chans, image_size, image_size))
    return params, macs


CPU_LIMIT = (5e6, 2e8, 128)  # params, MACs, px: below all, counting on the CPU is the faster path


def _quadratic(xs: list[int], ys: list[int]) -> Callable[[int], float]:
    """The parabola through three points (Lagrange form)."""
    (x0, x1, x2), (y0, y1, y2) = xs, ys

    def at(x: int) -> float:
        return (
            y0 * (x - x1) * (x - x2) / ((x0 - x1) * (x0 - x2))
            + y1 * (x - x0) * (x - x2) / ((x1 - x0) * (x1 - x2))
            + y2 * (x - x0) * (x - x1) / ((x2 - x0) * (x2 - x1))
        )

    return at


def predict_all(
    family: str, g: Grid, image_size: int, in_chans: int, num_classes: int
) -> list[tuple[list[int], int, float, float]]:
    """(depths, width, params, MACs) for every cell, from 3 x (stages + 1) exact counts."""
    stages = len(g.depths[0])
    ones = [1] * stages
    basis = [ones] + [[1 + (i == j) for j in range(stages)] for i in range(stages)]
    fit_widths = g.widths[:3]
    if len(fit_widths) < 3:  # nothing to fit (linear): count the one cell
        p, m = measure(family, g.shape(g.depths[0], g.widths[0]), image_size, in_chans, num_classes, "cpu")
        return [(g.depths[0], g.widths[0], float(p), float(m))]
    device = "cpu" if image_size < CPU_LIMIT[2] else "meta"  # the smallest widths, one or two blocks per stage
    counts = {
        (tuple(n), w): measure(family, g.shape(n, w), image_size, in_chans, num_classes, device)
        for n in basis
        for w in fit_widths
    }
    curves = []  # per basis pattern: (params(w), macs(w))
    for n in basis:
        curves.append(tuple(_quadratic(fit_widths, [counts[(tuple(n), w)][k] for w in fit_widths]) for k in (0, 1)))
    cells = []
    for n in g.depths:
        for w in g.widths:
            base = [c(w) for c in curves[0]]
            value = [base[k] + sum((n[i] - 1) * (curves[i + 1][k](w) - base[k]) for i in range(stages)) for k in (0, 1)]
            cells.append((n, w, value[0], value[1]))
    return cells


# ----------------------------------------------------------------------------- planning


def plan(
    family: str,
    *,
    match: str,
    targets: list[float],
    image_size: int,
    in_chans: int = models.COUNT_CHANNELS,
    num_classes: int = models.COUNT_CLASSES,
    patch: int | None = None,
) -> list[Planned]:
    """One shape per target; `targets` are parameter counts or GMACs (per image)."""
    if match not in ("params", "gmacs"):
        raise StudyError(f"unknown --match '{match}'", key="--match", fix="use params or gmacs")
    g = grid(family, image_size, patch)
    base = zoo.resolve({"family": family, **g.shape(g.depths[0], g.widths[0])})
    try:  # stride and windows depend on the patch and the number of stages only: one check covers the grid
        zoo.check(base, image_size, in_chans)
    except StudyError as e:
        raise e.at(key="--image-size") from None
    cells = predict_all(family, g, image_size, in_chans, num_classes)
    ref_aspect = _aspect(g.reference)
    out = []
    for target in targets:
        if not target > 0:
            raise StudyError(f"targets must be positive, got {target:g}", key="--targets", fix="e.g. --targets 0.1M,0.5M,2M")
        goal = target if match == "params" else target * 1e9

        def err(cell: tuple, goal: float = goal) -> float:  # bound now: the loop moves on
            return abs((cell[2] if match == "params" else cell[3]) / goal - 1.0)

        if (
            len(cells) > 1 and min(map(err, cells)) > REACH
        ):  # not a shape at -100% error: where the grid ends (linear: its one shape, by design)
            raise _out_of_reach(family, match, target, cells, image_size)

        n, w, p_pred, m_pred = min(
            cells, key=lambda c: err(c) + ASPECT_COST * abs(math.log(_aspect(g.shape(c[0], c[1])) / ref_aspect))
        )
        shape = zoo.resolve({"family": family, **g.shape(n, w)}).shape  # the registry's key order and types
        small_model = p_pred < CPU_LIMIT[0] and m_pred < CPU_LIMIT[1]
        params, macs = measure(family, shape, image_size, in_chans, num_classes, "cpu" if small_model else "meta")
        if (params, macs) != (round(p_pred), round(m_pred)):  # the interpolation's premises failed: a bug
            raise RuntimeError(
                f"plan: {family} {shape} counts {params} params / {macs} MACs, predicted "
                f"{p_pred:.0f} / {m_pred:.0f}: its grid breaks the quadratic/affine premise"
            )
        out.append(Planned(family, target, match, shape, params, macs / 1e9))
    return out


def _out_of_reach(family: str, match: str, target: float, cells: list[tuple], image_size: int) -> StudyError:
    values = [c[2] for c in cells] if match == "params" else [c[3] / 1e9 for c in cells]
    lo, hi = min(values), max(values)
    show = (lambda v: human(float(f"{v:.3g}"))) if match == "params" else (lambda v: f"{v:.3g}")
    unit = "params" if match == "params" else "GMACs"
    return StudyError(
        f"target {show(target)} {unit} is out of reach for {family} at {image_size} px: its planning grid "
        f"reaches {show(lo)} to {show(hi)} {unit}",
        key="--targets",
        fix="use targets in that range (--image-size and --patch move it), or write the shape by hand",
    )


def _aspect(shape: dict) -> float:
    """Depth / width of a shape (total blocks / first-stage width); 1 for shapes with neither."""
    depth = shape.get("depth") or sum(shape.get("depths") or shape.get("layers") or [1])
    width = shape.get("width") or (shape.get("dims") or [1])[0]
    return depth / width


def parse_targets(text: str, match: str) -> list[float]:
    """'0.1M,500k,2e6' -> counts. For gmacs a plain number is GMACs and a suffix scales MACs
    ('20M' = 0.02 GMACs)."""
    out = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        m = re.fullmatch(r"([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([kKmMgG]?)", item)
        if not m:
            raise StudyError(
                f"cannot read target '{item}'",
                key="--targets",
                fix="numbers with an optional k/M/G suffix, comma-separated: 0.1M,500k,2e6",
            )
        value, suffix = float(m.group(1)), m.group(2).lower()
        out.append(value * SUFFIX[suffix] if match == "params" else (value * SUFFIX[suffix] / 1e9 if suffix else value))
    if not out:
        raise StudyError("no targets given", key="--targets", fix="e.g. --targets 0.1M,0.5M,2M")
    return out


def yaml_value(v: object) -> str:
    """A shape value as YAML flow text: [1, 2, 3], 0.5, 16."""
    if isinstance(v, list):
        return "[" + ", ".join(map(str, v)) + "]"
    return repr(v) if isinstance(v, float) else str(v)


def human(x: float) -> str:
    """A count with a k/M/G suffix, as targets are typed: 500k, 2M."""
    for div, s in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if x >= div:
            return f"{x / div:g}{s}"
    return f"{x:g}"


def parse_families(text: str) -> list[str]:
    """--family: a family, a comma-separated list, or 'all' (every image family but linear)."""
    if text == "all":  # linear has one shape: nothing to match; video families are not planned
        return [f for f in zoo.families() if f != "linear" and not zoo.is_video(f)]
    names = [f.strip().lower() for f in text.split(",") if f.strip()]
    for f in names:
        if f not in zoo.FAMILIES:
            raise StudyError(f"unknown family '{f}'", key="--family", fix=did_you_mean(f, [*zoo.families(), "all"]))
    return names
