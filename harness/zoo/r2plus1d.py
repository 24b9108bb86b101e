"""R(2+1)D: ResNet whose 3x3x3 convs are split into a spatial 1x3x3 and a temporal 3x1x1 conv,
built from torchvision's video ResNet parts (harness/zoo/video_resnet.py; the network: `VideoResNetW`,
harness/zoo/nets.py).

Source: Tran et al. 2018, "A Closer Look at Spatiotemporal Convolutions for Action Recognition",
Section 3.5 and Table 1 (R(2+1)D: the middle width M_i = floor(t d^2 N_{i-1} N_i / (d^2 N_{i-1} + t N_i))
keeps each block's parameters equal to R3D's); torchvision's `r2plus1d_18` (31,505,325
parameters with its 400-class head, 40.52 GFLOPS at 16x112x112 per torchvision's model table).

Shape keys:
    block   "basic" (R(2+1)D-18/34) or "bottleneck"
    layers  blocks per stage, four stages
    width   stem and first-stage width; stage i has width * 2**i channels (the stem's middle
            width is torchvision's 45 scaled by width / 64)
Input [B, C, T, H, W]; any T >= 1; H, W >= 16.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.zoo import video_resnet

if TYPE_CHECKING:
    import torch.nn as nn

# One table. 18: torchvision r2plus1d_18 (Tran et al. 2018, R(2+1)D-18); 34: R(2+1)D-34 of the
# same paper (torchvision has no r2plus1d_34; not checked against a library count).
# Small rows (32-64 px clips): R(2+1)D-18's layout at widths 16/24/32 (xs: one block per stage).
SIZES: dict[str, dict] = {
    "xs": dict(block="basic", layers=[1, 1, 1, 1], width=16),
    "s": dict(block="basic", layers=[2, 2, 2, 2], width=16),
    "m": dict(block="basic", layers=[2, 2, 2, 2], width=24),
    "l": dict(block="basic", layers=[2, 2, 2, 2], width=32),
    "18": dict(block="basic", layers=[2, 2, 2, 2], width=64),
    "34": dict(block="basic", layers=[3, 4, 6, 3], width=64),
}
IMAGENET = ("18", "34")  # the published (Kinetics, 112 px) configs
CANONICAL_IMAGE = 112
SMALL_IMAGE = 32  # the ladder's default clip size (28-px Fashion-MNIST frames sit on larger canvases)
DEFAULT = "xs"
CHOICES = {"block": ("basic", "bottleneck")}
PATCH_GRID = False
VIDEO = True


def validate(shape: dict) -> None:
    video_resnet.validate("r2plus1d", shape)


stride = video_resnet.stride
check_frames = video_resnet.check_frames


def build(shape: dict, image_size: int, in_chans: int, num_classes: int, frames: int) -> nn.Module:
    return video_resnet.build("r2plus1d", shape, image_size, in_chans, num_classes, frames)
