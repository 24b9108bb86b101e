"""ResNet family, built from `timm.models.resnet.ResNet`.

Shape keys:
    block   "basic" (two 3x3 convs, ResNet-18/34) or "bottleneck" (1x1-3x3-1x1, x4 expansion, ResNet-50+)
    layers  blocks per stage, four stages (timm's ResNet runs layer1..layer4)
    width   stem and first-stage width; stage i has width * 2**i channels; even (see build)
    stem    "imagenet": 7x7 stride-2 conv + 3x3 stride-2 max-pool (total stride 32, >= 32 px);
            "small": one 3x3 stride-2 conv, no max-pool (total stride 16, >= 16 px)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.errors import StudyError

if TYPE_CHECKING:
    from timm.models.resnet import ResNet

# One table. ImageNet rows: He et al. 2016, "Deep Residual Learning", Table 1.
# Small rows (28-64 px): ResNet-18's (2, 2, 2, 2) layout at widths 16/24/32 (xs: one block per
# stage), small stem so a 28 px image still reaches stage 4 at 2x2; 0.31/0.70/1.6/2.8 M params.
SIZES: dict[str, dict] = {
    "xs": dict(block="basic", layers=[1, 1, 1, 1], width=16, stem="small"),
    "s": dict(block="basic", layers=[2, 2, 2, 2], width=16, stem="small"),
    "m": dict(block="basic", layers=[2, 2, 2, 2], width=24, stem="small"),
    "l": dict(block="basic", layers=[2, 2, 2, 2], width=32, stem="small"),
    "18": dict(block="basic", layers=[2, 2, 2, 2], width=64, stem="imagenet"),
    "34": dict(block="basic", layers=[3, 4, 6, 3], width=64, stem="imagenet"),
    "50": dict(block="bottleneck", layers=[3, 4, 6, 3], width=64, stem="imagenet"),
    "101": dict(block="bottleneck", layers=[3, 4, 23, 3], width=64, stem="imagenet"),
}
IMAGENET = ("18", "34", "50", "101")
DEFAULT = "xs"
CHOICES = {"block": ("basic", "bottleneck"), "stem": ("small", "imagenet")}
PATCH_GRID = False  # convolutions take any size >= the total stride


def validate(shape: dict) -> None:
    if len(shape["layers"]) != 4:
        raise StudyError(f"resnet layers {shape['layers']} must list 4 stages", fix="e.g. layers: [2, 2, 2, 2]")
    if shape["width"] % 2:
        raise StudyError(f"resnet width {shape['width']} must be even", fix=f"use {shape['width'] + 1}")


def stride(shape: dict) -> int:
    return (4 if shape["stem"] == "imagenet" else 2) * 2 ** (len(shape["layers"]) - 1)


def build(shape: dict, image_size: int, in_chans: int, num_classes: int) -> ResNet:
    import torch.nn as nn  # torch and timm when a model is built, never for the table and checks above
    from timm.models.resnet import BasicBlock, Bottleneck, ResNet

    width = shape["width"]
    # timm's plain stem is fixed at 64 channels; its 'deep' stem outputs 2 * stem_width, so
    # stem_width = width / 2 sizes layer1 for `width` inputs. The stem itself is replaced below.
    model = ResNet(
        block={"basic": BasicBlock, "bottleneck": Bottleneck}[shape["block"]],
        layers=tuple(shape["layers"]),
        channels=tuple(width * 2**i for i in range(4)),
        num_classes=num_classes,
        in_chans=in_chans,
        stem_type="deep",
        stem_width=width // 2,
    )
    if shape["stem"] == "imagenet":
        model.conv1 = nn.Conv2d(in_chans, width, 7, stride=2, padding=3, bias=False)
    else:  # a 3x3 stride-2 conv and no max-pool keeps 28 px inputs at 14x14 in stage 1
        model.conv1 = nn.Conv2d(in_chans, width, 3, stride=2, padding=1, bias=False)
        model.maxpool = nn.Identity()
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")  # as timm's init
    return model
