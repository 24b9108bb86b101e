"""ViViT: video transformer on tubelet tokens, built from timm's ViT `Block` (and its `Attention`);
the network (`ViViT`, `FactorisedBlock`) is in harness/zoo/nets.py.

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

from typing import TYPE_CHECKING

from harness.zoo import vit

if TYPE_CHECKING:
    from harness.zoo.nets import ViViT

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


def validate(shape: dict) -> None:
    vit.check_heads("vivit", shape)


def stride(shape: dict) -> int:
    return shape["patch"]


def check_frames(shape: dict, frames: int) -> str | None:
    t = shape["tubelet"]
    return f"{frames} frames are not a multiple of the tubelet length {t}" if frames % t else None


def build(shape: dict, image_size: int, in_chans: int, num_classes: int, frames: int) -> ViViT:
    from harness.zoo.nets import ViViT  # torch and timm when a model is built, not for the table and checks

    return ViViT(shape, image_size, in_chans, num_classes, frames)
