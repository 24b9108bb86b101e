"""The networks timm lacks, written here as nn.Module classes: the pixel baselines (`linear`, `mlp`),
the video ResNets at any width (`r3d`, `r2plus1d`) and ViViT (`vivit`, `vivit_fact`).

Only the families' `build` imports this module, so the tables, shape checks and strides of
harness/zoo stay free of torch, timm and torchvision: loading and expanding a study never imports
them. Each family module's docstring gives its source and shape keys.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from timm.layers import Attention, trunc_normal_
from timm.models.vision_transformer import Block
from torchvision.models.video.resnet import BasicBlock, Bottleneck, Conv2Plus1D, Conv3DSimple, VideoResNet

# ----------------------------------------------------------------------------- pixel baselines (linear.py, mlp.py)


class LinearClassifier(nn.Sequential):
    def __init__(self, image_size: int, in_chans: int, num_classes: int) -> None:
        super().__init__(nn.Flatten(), nn.Linear(in_chans * image_size * image_size, num_classes))


class PixelMLP(nn.Sequential):
    def __init__(self, image_size: int, in_chans: int, num_classes: int, width: int, depth: int) -> None:
        layers: list[nn.Module] = [nn.Flatten()]
        fan_in = in_chans * image_size * image_size
        for _ in range(depth):
            layers += [nn.Linear(fan_in, width), nn.ReLU()]
            fan_in = width
        super().__init__(*layers, nn.Linear(fan_in, num_classes))


# ----------------------------------------------------------------------------- video ResNets (video_resnet.py)

VIDEO_BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}
VIDEO_CONVS = {"r3d": Conv3DSimple, "r2plus1d": Conv2Plus1D}
R2PLUS1D_STEM_MID = 45  # torchvision's R2Plus1dStem: 45 channels between its (1,7,7) and (3,1,1) convs at width 64


class VideoResNetW(VideoResNet):
    """torchvision's VideoResNet at any width and input channel count, with timm's feature API
    (`forward_features` -> [B, C, T', H', W'], `forward_head(x, pre_logits)`, `num_classes`).

    Built from torchvision's `torchvision.models.video.resnet` parts (`VideoResNet._make_layer`,
    `BasicBlock`, `Bottleneck`, `Conv3DSimple`, `Conv2Plus1D`), with two things torchvision fixes
    made shape keys: the width (torchvision: 64, stage i has 64 * 2**i channels) and the input
    channels (torchvision: 3). At width 64 and 3 input channels the stems below are torchvision's
    `BasicStem` / `R2Plus1dStem` layer for layer, so `r3d@18` and `r2plus1d@18` have torchvision's
    `r3d_18` / `r2plus1d_18` parameter counts to the unit (tests/test_video_models.py)."""

    def __init__(self, kind: str, block: str, layers: list[int], width: int, in_chans: int, num_classes: int) -> None:
        nn.Module.__init__(self)  # VideoResNet.__init__ hard-codes width 64 and 3 input channels
        self.inplanes = width
        self.stem = _stem(kind, in_chans, width)
        conv, blk = VIDEO_CONVS[kind], VIDEO_BLOCKS[block]
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

    def get_classifier(self) -> nn.Module:  # timm's name for the head (harness.evals leaves it out)
        return self.fc

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


# ----------------------------------------------------------------------------- ViViT (vivit.py)


class FactorisedBlock(nn.Module):
    """ViViT Model 3 block: spatial attention (timm Block's attn), temporal attention, MLP (the Block's mlp)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.block = Block(dim, heads, mlp_ratio=mlp_ratio, qkv_bias=True)  # norm1+attn: spatial; norm2+mlp
        self.norm_t = nn.LayerNorm(dim, eps=1e-6)  # timm ViT's LayerNorm eps
        self.attn_t = Attention(dim, num_heads=heads, qkv_bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, T', N, D]
        b, t, n, d = x.shape
        s = x.reshape(b * t, n, d)
        s = s + self.block.attn(self.block.norm1(s))  # within each frame
        u = s.reshape(b, t, n, d).transpose(1, 2).reshape(b * n, t, d)
        u = u + self.attn_t(self.norm_t(u))  # across frames, at each position
        x = u.reshape(b, n, t, d).transpose(1, 2)
        return x + self.block.mlp(self.block.norm2(x))


class ViViT(nn.Module):
    """Tubelet embedding -> blocks -> LayerNorm -> mean of tokens -> linear head (timm's feature API)."""

    def __init__(self, shape: dict, image_size: int, in_chans: int, num_classes: int, frames: int) -> None:
        super().__init__()
        t, p, d = shape["tubelet"], shape["patch"], shape["width"]
        self.attention = shape["attention"]
        self.grid = (frames // t, image_size // p, image_size // p)
        self.patch_embed = nn.Conv3d(in_chans, d, kernel_size=(t, p, p), stride=(t, p, p))
        self.pos_time = nn.Parameter(torch.zeros(1, self.grid[0], 1, d))
        self.pos_space = nn.Parameter(torch.zeros(1, 1, self.grid[1] * self.grid[2], d))
        heads, ratio = shape["heads"], shape["mlp_ratio"]
        if self.attention == "joint":
            blocks = [Block(d, heads, mlp_ratio=ratio, qkv_bias=True) for _ in range(shape["depth"])]
        else:
            blocks = [FactorisedBlock(d, heads, ratio) for _ in range(shape["depth"])]
        self.blocks = nn.Sequential(*blocks)
        self.norm = nn.LayerNorm(d, eps=1e-6)
        self.num_classes, self.num_features = num_classes, d
        self.head = nn.Linear(d, num_classes)
        for param in (self.pos_time, self.pos_space):
            trunc_normal_(param, std=0.02)
        self.apply(_init)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, T, H, W] -> tokens [B, T'·N, D] (normalised)."""
        x = self.patch_embed(x)  # [B, D, T', h, w]
        b, d = x.shape[:2]
        x = x.flatten(3).permute(0, 2, 3, 1) + self.pos_time + self.pos_space  # [B, T', N, D]
        t, n = x.shape[1:3]
        if self.attention == "joint":
            x = self.blocks(x.reshape(b, t * n, d))
        else:
            x = self.blocks(x).reshape(b, t * n, d)
        return self.norm(x)

    def get_classifier(self) -> nn.Module:  # timm's name for the head (harness.evals leaves it out)
        return self.head

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.mean(dim=1)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _init(m: nn.Module) -> None:
    """timm ViT's default ('jax'-less) init: truncated normal linears, zero biases."""
    if isinstance(m, nn.Linear):
        trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
