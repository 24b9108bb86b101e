"""Vision Transformer family, built from `timm.models.vision_transformer.VisionTransformer`.

Shape keys:
    patch      patch size in px; the image size must be a multiple of it
    width      token dimension D
    depth      number of transformer blocks
    heads      attention heads; must divide width
    mlp_ratio  MLP hidden size / width (4.0 in every published ViT)
Class token, token pooling and qkv bias as in the original ViT (timm's defaults).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.errors import StudyError

if TYPE_CHECKING:
    from timm.models.vision_transformer import VisionTransformer

# One table, big_vision style. ImageNet rows: Dosovitskiy et al. 2021, "An Image is Worth 16x16
# Words", Table 1 (B, L, H); Ti and S from Touvron et al. 2021 (DeiT), Table 1.
# Small rows (28-64 px): patch 4 (28 px -> 7x7 = 49 tokens + class token), head dim 32
# throughout; 0.21/0.68/1.6/3.6 M params.
SIZES: dict[str, dict] = {
    "xs": dict(patch=4, width=64, depth=4, heads=2, mlp_ratio=4.0),
    "s": dict(patch=4, width=96, depth=6, heads=3, mlp_ratio=4.0),
    "m": dict(patch=4, width=128, depth=8, heads=4, mlp_ratio=4.0),
    "l": dict(patch=4, width=192, depth=8, heads=6, mlp_ratio=4.0),
    "ti16": dict(patch=16, width=192, depth=12, heads=3, mlp_ratio=4.0),
    "s16": dict(patch=16, width=384, depth=12, heads=6, mlp_ratio=4.0),
    "b16": dict(patch=16, width=768, depth=12, heads=12, mlp_ratio=4.0),
    "l16": dict(patch=16, width=1024, depth=24, heads=16, mlp_ratio=4.0),
    "h14": dict(patch=14, width=1280, depth=32, heads=16, mlp_ratio=4.0),
}
IMAGENET = ("ti16", "s16", "b16", "l16", "h14")
DEFAULT = "xs"
PATCH_GRID = True  # tokens are whole patches; timm would silently crop the remainder


def validate(shape: dict) -> None:
    check_heads("vit", shape)


def check_heads(family: str, shape: dict) -> None:
    """Attention heads must divide the width (shared with vivit); the error names the nearest that does."""
    width, heads = shape["width"], shape["heads"]
    if width % heads:
        divisors = [h for h in range(1, width + 1) if width % h == 0]
        nearest = min(divisors, key=lambda h: (abs(h - heads), h))
        raise StudyError(
            f"{family} heads {heads} do not divide width {width}",
            fix=f"use heads: {nearest} (or a width that is a multiple of {heads})",
        )


def stride(shape: dict) -> int:
    return shape["patch"]


def build(shape: dict, image_size: int, in_chans: int, num_classes: int) -> VisionTransformer:
    from timm.models.vision_transformer import VisionTransformer  # timm when a model is built, not for the table

    return VisionTransformer(
        img_size=image_size,
        patch_size=shape["patch"],
        in_chans=in_chans,
        num_classes=num_classes,
        embed_dim=shape["width"],
        depth=shape["depth"],
        num_heads=shape["heads"],
        mlp_ratio=shape["mlp_ratio"],
    )
