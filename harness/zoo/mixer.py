"""MLP-Mixer family, built from `timm.models.mlp_mixer.MlpMixer`.

Shape keys:
    patch        patch size in px; the image size must be a multiple of it
    width        channel dimension C
    depth        number of mixer blocks
    token_mlp    hidden size of the token-mixing MLP (D_S in the paper)
    channel_mlp  hidden size of the channel-mixing MLP (D_C in the paper)
The token MLP acts across patches, so parameters grow with the number of tokens (image size).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from timm.models.mlp_mixer import MlpMixer

# One table. ImageNet rows: Tolstikhin et al. 2021, "MLP-Mixer", Table 1 (S/16, B/16, L/16).
# Small rows (28-64 px): patch 4, the paper's ratios D_S = C/2 and D_C = 4C, widths as the ViT
# ladder; 0.22/0.64/1.7/3.7 M params at 28 px.
SIZES: dict[str, dict] = {
    "xs": dict(patch=4, width=64, depth=6, token_mlp=32, channel_mlp=256),
    "s": dict(patch=4, width=96, depth=8, token_mlp=48, channel_mlp=384),
    "m": dict(patch=4, width=128, depth=12, token_mlp=64, channel_mlp=512),
    "l": dict(patch=4, width=192, depth=12, token_mlp=96, channel_mlp=768),
    "s16": dict(patch=16, width=512, depth=8, token_mlp=256, channel_mlp=2048),
    "b16": dict(patch=16, width=768, depth=12, token_mlp=384, channel_mlp=3072),
    "l16": dict(patch=16, width=1024, depth=24, token_mlp=512, channel_mlp=4096),
}
IMAGENET = ("s16", "b16", "l16")
DEFAULT = "xs"
PATCH_GRID = True  # tokens are whole patches; timm would silently crop the remainder


def validate(shape: dict) -> None:
    """Every positive shape is buildable (the registry has checked the types)."""


def stride(shape: dict) -> int:
    return shape["patch"]


def _ratio(hidden: int, width: int) -> float:
    # timm computes int(ratio * width); the +0.5 keeps float rounding from landing on hidden - 1
    return (hidden + 0.5) / width


def build(shape: dict, image_size: int, in_chans: int, num_classes: int) -> MlpMixer:
    from timm.models.mlp_mixer import MlpMixer  # timm when a model is built, never for the table and checks above

    width = shape["width"]
    return MlpMixer(
        num_classes=num_classes,
        img_size=image_size,
        in_chans=in_chans,
        patch_size=shape["patch"],
        num_blocks=shape["depth"],
        embed_dim=width,
        mlp_ratio=(_ratio(shape["token_mlp"], width), _ratio(shape["channel_mlp"], width)),
    )
