"""ConvNeXt family, built from `timm.models.convnext.ConvNeXt`.

Shape keys:
    patch   stride (= kernel) of the patchify stem: 4 for ImageNet, 2 for the small ladder
    depths  blocks per stage, four stages (timm's ConvNeXt always builds four)
    dims    channels per stage, four values
Three 2x downsamples follow the stem, so the total stride is patch * 8: 32 px minimum with the
ImageNet stem, 16 px with the stride-2 stem of the small ladder (so 28 px Fashion-MNIST works).

The ImageNet sizes are named `tiny/small/base/large` (timm's convnext_tiny...), not the paper's
T/S/B/L: `s` and `l` are rungs of the small-image ladder xs/s/m/l shared by every family.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.errors import StudyError

if TYPE_CHECKING:
    from timm.models.convnext import ConvNeXt

# One table. ImageNet rows: Liu et al. 2022, "A ConvNet for the 2020s", section 2.6 (T/S/B/L).
# Small rows (28-64 px): stride-2 stem, ConvNeXt-T's 1:1:3:1 stage ratio, dims 16/24/32 x
# (1, 2, 4, 8) like the ResNet ladder's widths (xs: one block per ratio unit);
# 0.31/0.83/1.8/3.2 M params.
SIZES: dict[str, dict] = {
    "xs": dict(patch=2, depths=[1, 1, 3, 1], dims=[16, 32, 64, 128]),
    "s": dict(patch=2, depths=[3, 3, 9, 3], dims=[16, 32, 64, 128]),
    "m": dict(patch=2, depths=[3, 3, 9, 3], dims=[24, 48, 96, 192]),
    "l": dict(patch=2, depths=[3, 3, 9, 3], dims=[32, 64, 128, 256]),
    "tiny": dict(patch=4, depths=[3, 3, 9, 3], dims=[96, 192, 384, 768]),
    "small": dict(patch=4, depths=[3, 3, 27, 3], dims=[96, 192, 384, 768]),
    "base": dict(patch=4, depths=[3, 3, 27, 3], dims=[128, 256, 512, 1024]),
    "large": dict(patch=4, depths=[3, 3, 27, 3], dims=[192, 384, 768, 1536]),
}
IMAGENET = ("tiny", "small", "base", "large")
DEFAULT = "xs"
PATCH_GRID = False  # convolutions take any size >= the total stride


def validate(shape: dict) -> None:
    if not len(shape["depths"]) == len(shape["dims"]) == 4:
        raise StudyError(
            f"convnext depths {shape['depths']} and dims {shape['dims']} must list 4 stages each",
            fix="e.g. depths: [3, 3, 9, 3], dims: [96, 192, 384, 768]",
        )


def stride(shape: dict) -> int:
    return shape["patch"] * 2 ** (len(shape["dims"]) - 1)


def build(shape: dict, image_size: int, in_chans: int, num_classes: int) -> ConvNeXt:
    import torch.nn as nn  # torch and timm when a model is built, never for the table and checks above
    from timm.models.convnext import ConvNeXt

    model = ConvNeXt(
        in_chans=in_chans,
        num_classes=num_classes,
        depths=tuple(shape["depths"]),
        dims=tuple(shape["dims"]),
        patch_size=shape["patch"],
    )
    if shape["patch"] == 2:
        # timm reads a stride-2 stem as half of a stride-4 one and gives stage 0 its own 2x
        # downsample (total stride still 32: 28 px fails at stage 4). Dropping it leaves the stem
        # as the only reduction before stage 1: total stride 16, 28 px -> 14, 7, 3, 1.
        model.stages[0].downsample = nn.Identity()
    return model
