"""ViViT: video transformer on tubelet tokens, built from timm's ViT `Block` (and its `Attention`).

Source: Arnab et al. 2021, "ViViT: A Video Vision Transformer". Tubelet embedding (Section 3.2,
a Conv3d with kernel = stride = t x p x p); ViViT-B: the ViT-Base encoder (width 768, depth 12,
heads 12, MLP 3072; Dosovitskiy et al. 2021 Table 1) on 2x16x16 tubelets (Section 4.1, "ViViT-B/16x2").

attention:
    joint       Model 1, "spatio-temporal attention": every block attends over all T'·N tokens
                (T' = T / t tubelets in time, N = (H / p)^2 per frame). Attention MACs per block
                2·(T'·N)²·D: quadratic in the number of frames.
    factorised  Model 3, "factorised self-attention": each block attends spatially among the N
                tokens of one frame, then temporally among the T' tokens at one position, then its
                MLP. Attention MACs per block 2·D·(T'·N² + N·T'²): linear in frames plus a temporal
                term T'/N the size of the spatial one (it is quadratic in T' too, but small while T' << N).
Both: learned positional embeddings factorised as spatial (N) + temporal (T') and added (T'·D of
the parameters grow with the clip); no class token: the head takes the mean of the final tokens
(as the paper's Model 3 does; we use it for Model 1 too so the variants differ only in attention).
Factorised blocks add a temporal attention and its LayerNorm, 4·D² + 6·D parameters per block
(+28.4M, +33%, at ViViT-B). qkv bias as timm's ViT. The family `vivit_fact` is this table with
attention: factorised.

Shape keys:
    tubelet    frames per token (t); the clip length must be a multiple of it
    patch      pixels per token side (p); the image size must be a multiple of it
    width      token dimension D
    depth      number of blocks
    heads      attention heads; must divide width
    mlp_ratio  MLP hidden size / width
    attention  "joint" or "factorised"
Input [B, C, T, H, W].
"""

from __future__ import annotations

import torch
import torch.nn as nn
from timm.layers import Attention, trunc_normal_
from timm.models.vision_transformer import Block

from harness.zoo import vit

# One table. b: ViViT-B/16x2 (Arnab et al. 2021, Section 4.1; its encoder is ViT-B, Dosovitskiy
# et al. 2021 Table 1). Small rows (32-64 px clips): the image ViT ladder (harness/zoo/vit.py:
# patch 4, head dim 32) with 2-frame tubelets.
SIZES: dict[str, dict] = {
    "xs": dict(tubelet=2, patch=4, width=64, depth=4, heads=2, mlp_ratio=4.0, attention="joint"),
    "s": dict(tubelet=2, patch=4, width=96, depth=6, heads=3, mlp_ratio=4.0, attention="joint"),
    "m": dict(tubelet=2, patch=4, width=128, depth=8, heads=4, mlp_ratio=4.0, attention="joint"),
    "l": dict(tubelet=2, patch=4, width=192, depth=8, heads=6, mlp_ratio=4.0, attention="joint"),
    "b": dict(tubelet=2, patch=16, width=768, depth=12, heads=12, mlp_ratio=4.0, attention="joint"),
}
IMAGENET = ("b",)  # the published (Kinetics, 224 px) config
CANONICAL_IMAGE = 224
SMALL_IMAGE = 32  # the ladder's default clip size (28-px Fashion-MNIST frames sit on larger canvases)
DEFAULT = "xs"
CHOICES = {"attention": ("joint", "factorised")}
PATCH_GRID = True
VIDEO = True


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


def validate(shape: dict) -> None:
    vit.check_heads("vivit", shape)


def stride(shape: dict) -> int:
    return shape["patch"]


def check_frames(shape: dict, frames: int) -> str | None:
    t = shape["tubelet"]
    return f"{frames} frames are not a multiple of the tubelet length {t}" if frames % t else None


def build(shape: dict, image_size: int, in_chans: int, num_classes: int, frames: int) -> ViViT:
    return ViViT(shape, image_size, in_chans, num_classes, frames)
