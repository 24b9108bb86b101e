"""What the video ResNets (R3D, R(2+1)D) of harness/zoo/r3d.py and harness/zoo/r2plus1d.py share:
the shape check, the stride and `build`. The network is `VideoResNetW` (harness/zoo/nets.py), built
from torchvision's video ResNet parts at any width and input channel count.

Input [B, C, T, H, W]. Downsampling: the stem halves H and W (not T); stages 2-4 halve T, H and
W (stride-2 3x3x3 convs, padding 1, so any T >= 1 runs: T = 1 stays 1). Total spatial stride 16.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.errors import StudyError

if TYPE_CHECKING:
    from harness.zoo.nets import VideoResNetW


def validate(family: str, shape: dict) -> None:
    if len(shape["layers"]) != 4:
        raise StudyError(f"{family} layers {shape['layers']} must list 4 stages", fix="e.g. layers: [2, 2, 2, 2]")


def stride(shape: dict) -> int:
    return 16  # stem 2 x stages 2-4 (2 each); the smallest image size


def check_frames(shape: dict, frames: int) -> str | None:
    return None  # padded stride-2 temporal convs take any clip length >= 1


def build(kind: str, shape: dict, image_size: int, in_chans: int, num_classes: int, frames: int) -> VideoResNetW:
    from harness.zoo.nets import VideoResNetW  # torch and torchvision when a model is built, not for the checks

    return VideoResNetW(kind, shape["block"], shape["layers"], shape["width"], in_chans, num_classes)
