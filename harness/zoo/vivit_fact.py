"""ViViT with factorised self-attention (Model 3): harness/zoo/vivit.py's table with
`attention: factorised`, as a family of its own so `vivit_fact@xs` names it in a grid and its
rows carry their own family label. `{family: vivit, size: xs, attention: factorised}` builds the
same network (a different trial id: the family is part of it).
"""

from __future__ import annotations

from harness.zoo.vivit import (
    CANONICAL_IMAGE,
    CHOICES,
    DEFAULT,
    PATCH_GRID,
    SMALL_IMAGE,
    VIDEO,
    build,
    check_frames,
    stride,
    validate,
)
from harness.zoo.vivit import SIZES as _JOINT

SIZES: dict[str, dict] = {name: dict(row, attention="factorised") for name, row in _JOINT.items()}
IMAGENET = ("b",)

__all__ = [
    "CANONICAL_IMAGE",
    "CHOICES",
    "DEFAULT",
    "IMAGENET",
    "PATCH_GRID",
    "SIZES",
    "SMALL_IMAGE",
    "VIDEO",
    "build",
    "check_frames",
    "stride",
    "validate",
]
