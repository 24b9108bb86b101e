"""The video ResNets (R3D, R(2+1)D) shared by harness/zoo/r3d.py and harness/zoo/r2plus1d.py.

Built from torchvision's `torchvision.models.video.resnet` parts (`VideoResNet._make_layer`,
`BasicBlock`, `Bottleneck`, `Conv3DSimple`, `Conv2Plus1D`), with two things torchvision fixes
made shape keys: the width (torchvision: 64, stage i has 64 * 2**i channels) and the input
channels (torchvision: 3). At width 64 and 3 input channels the stems below are torchvision's
`BasicStem` / `R2Plus1dStem` layer for layer, so `r3d@18` and `r2plus1d@18` have torchvision's
`r3d_18` / `r2plus1d_18` parameter counts to the unit (tests/test_video_models.py).

Input [B, C, T, H, W]. Downsampling: the stem halves H and W (not T); stages 2-4 halve T, H and
W (stride-2 3x3x3 convs, padding 1, so any T >= 1 runs: T = 1 stays 1). Total spatial stride 16.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torchvision.models.video.resnet import BasicBlock, Bottleneck, Conv2Plus1D, Conv3DSimple, VideoResNet

from harness.errors import StudyError

BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}
CONVS = {"r3d": Conv3DSimple, "r2plus1d": Conv2Plus1D}
R2PLUS1D_STEM_MID = 45  # torchvision's R2Plus1dStem: 45 channels between its (1,7,7) and (3,1,1) convs at width 64


class VideoResNetW(VideoResNet):
    """torchvision's VideoResNet at any width and input channel count, with timm's feature API
    (`forward_features` -> [B, C, T', H', W'], `forward_head(x, pre_logits)`, `num_classes`)."""

    def __init__(self, kind: str, block: str, layers: list[int], width: int, in_chans: int, num_classes: int) -> None:
        nn.Module.__init__(self)  # VideoResNet.__init__ hard-codes width 64 and 3 input channels
        self.inplanes = width
        self.stem = _stem(kind, in_chans, width)
        conv, blk = CONVS[kind], BLOCKS[block]
        self.layer1 = self._make_layer(blk, conv, width, layers[0], stride=1)
        self.layer2 = self._make_layer(blk, conv, width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(blk, conv, width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(blk, conv, width * 8, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool3d((1, 1, 1))
        self.num_classes = num_classes
        self.num_features = width * 8 * blk.expansion
        self.fc = nn.Linear(self.num_features, num_classes)
        for m in self.modules():  # torchvision's init, verbatim
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.constant_(m.bias, 0)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.avgpool(x).flatten(1)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _stem(kind: str, in_chans: int, width: int) -> nn.Sequential:
    if kind == "r3d":  # torchvision BasicStem
        return nn.Sequential(
            nn.Conv3d(in_chans, width, kernel_size=(3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False),
            nn.BatchNorm3d(width),
            nn.ReLU(inplace=True),
        )
    mid = max(1, round(R2PLUS1D_STEM_MID * width / 64))  # torchvision R2Plus1dStem, its 45 scaled with the width
    return nn.Sequential(
        nn.Conv3d(in_chans, mid, kernel_size=(1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False),
        nn.BatchNorm3d(mid),
        nn.ReLU(inplace=True),
        nn.Conv3d(mid, width, kernel_size=(3, 1, 1), stride=(1, 1, 1), padding=(1, 0, 0), bias=False),
        nn.BatchNorm3d(width),
        nn.ReLU(inplace=True),
    )


def validate(family: str, shape: dict) -> None:
    if len(shape["layers"]) != 4:
        raise StudyError(f"{family} layers {shape['layers']} must list 4 stages", fix="e.g. layers: [2, 2, 2, 2]")


def stride(shape: dict) -> int:
    return 16  # stem 2 x stages 2-4 (2 each); the smallest image size


def check_frames(shape: dict, frames: int) -> str | None:
    return None  # padded stride-2 temporal convs take any clip length >= 1


def build(kind: str, shape: dict, image_size: int, in_chans: int, num_classes: int, frames: int) -> VideoResNetW:
    return VideoResNetW(kind, shape["block"], shape["layers"], shape["width"], in_chans, num_classes)
