"""Swin Transformer family, built from `timm.models.swin_transformer.SwinTransformer`.

Shape keys:
    patch      patch size in px; the image size must be a multiple of it
    width      channels C of stage 1; stage i has C * 2**(i-1) (a patch-merging layer doubles them)
    depths     blocks per stage; the number of stages is len(depths)
    heads      attention heads per stage; heads[i] must divide that stage's channels
    windows    windows per side of the patch grid: the window is (image / patch) / windows tokens
               (timm's `window_ratio`), kept for every stage
    mlp_ratio  MLP hidden size / channels (4.0 in every published Swin)

Why `windows`, not a window in tokens: no window divides the token grids of both 28 px and
32 px inputs (patch 2: 14x14 and 16x16 tokens), so a fixed window would pad (timm pads, and the
zero tokens then take part in attention and in the FLOP count). A window that is a fixed fraction
of the grid always divides it: 7 tokens at 28 px, 8 at 32 px. It is the rule timm's
`SwinTransformer.set_input_size` uses to move a Swin to a new resolution, and it reproduces both
published windows: windows 8 gives 224 / 4 / 8 = 7 (swin_*_patch4_window7_224) and 384 / 4 / 8 = 12
(swin_base_patch4_window12_384, which matches swin@base at 384 px to the unit). The relative
position bias table has (2 * window - 1)**2 entries per head, so parameters grow a little with the
image size (as the Mixer's token MLP does).

Valid image sizes (`check_image`; `stride` is the smallest):
- a multiple of `patch`, and at least patch * 2**(stages - 1) (each patch merging halves >= 2 tokens);
- the patch grid (image / patch) a multiple of `windows`;
- every stage's grid either fits in one window (Swin's rule: attention is then global and the
  shift is off) or is a multiple of the window. Patch merging rounds odd grids up (timm pads one
  row), so at 28 px with patch 2 the stages see 14, 7 and 4 tokens per side: window 7 -> 2x2
  windows, one window, one window. `validate` rejects `windows` that no image size satisfies.
So the small ladder (patch 2, windows 2, three stages) takes every multiple of 4 px from 8 px on
(28 px: window 7, 32 px: window 8, 64 px: window 16); the ImageNet sizes (patch 4, windows 8, four
stages) take multiples of 32 px (224 -> window 7, 256 -> 8, 384 -> 12).

The ImageNet sizes are named `tiny/small/base/large` (timm's swin_tiny...), not the paper's
T/S/B/L: `s` and `l` are rungs of the small-image ladder xs/s/m/l shared by every family.
Stochastic depth is off (timm's class default is 0.1, a training recipe, not an architecture;
the other families' timm classes default to 0).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.errors import StudyError

if TYPE_CHECKING:
    from timm.models.swin_transformer import SwinTransformer

# One table. ImageNet rows: Liu et al. 2021, "Swin Transformer", section 3.3 (Swin-T/S/B/L:
# C = 96/96/128/192, layers {2,2,6,2} / {2,2,18,2}, head dim 32, window 7 at 224 px).
# Small rows (28-64 px): patch 2 and three stages (28 px -> 14, 7, 4 tokens per side; a fourth
# stage would see 2x2), windows 2 (2x2 windows in stage 1), head dim 16, Swin-T's first three
# stages {2, 2, 6} for m and l; 0.14/0.57/1.4/3.1 M params at 28 px.
SIZES: dict[str, dict] = {
    "xs": dict(patch=2, width=16, depths=[2, 2, 2], heads=[1, 2, 4], windows=2, mlp_ratio=4.0),
    "s": dict(patch=2, width=32, depths=[2, 2, 2], heads=[2, 4, 8], windows=2, mlp_ratio=4.0),
    "m": dict(patch=2, width=32, depths=[2, 2, 6], heads=[2, 4, 8], windows=2, mlp_ratio=4.0),
    "l": dict(patch=2, width=48, depths=[2, 2, 6], heads=[3, 6, 12], windows=2, mlp_ratio=4.0),
    "tiny": dict(patch=4, width=96, depths=[2, 2, 6, 2], heads=[3, 6, 12, 24], windows=8, mlp_ratio=4.0),
    "small": dict(patch=4, width=96, depths=[2, 2, 18, 2], heads=[3, 6, 12, 24], windows=8, mlp_ratio=4.0),
    "base": dict(patch=4, width=128, depths=[2, 2, 18, 2], heads=[4, 8, 16, 32], windows=8, mlp_ratio=4.0),
    "large": dict(patch=4, width=192, depths=[2, 2, 18, 2], heads=[6, 12, 24, 48], windows=8, mlp_ratio=4.0),
}
IMAGENET = ("tiny", "small", "base", "large")
DEFAULT = "xs"
PATCH_GRID = False  # the image must be a multiple of the patch, not of the stride: check_image


def validate(shape: dict) -> None:
    depths, heads, width = shape["depths"], shape["heads"], shape["width"]
    if len(depths) != len(heads):
        raise StudyError(
            f"swin depths {depths} and heads {heads} must list the same number of stages",
            fix=f"give {len(depths)} heads, e.g. heads: {[max(1, width * 2**i // 32) for i in range(len(depths))]}",
        )
    for i, h in enumerate(heads):
        channels = width * 2**i
        if channels % h:
            divisors = [d for d in range(1, channels + 1) if channels % d == 0]
            nearest = min(divisors, key=lambda d: (abs(d - h), d))
            raise StudyError(
                f"swin heads[{i}] = {h} do not divide stage {i + 1}'s {channels} channels",
                fix=f"use {nearest} (or a width whose stage {i + 1} channels are a multiple of {h})",
            )
    r, stages = shape["windows"], len(depths)
    # stage i's grid is grid / 2**i and the window grid / r: it must divide or fit in one window,
    # i.e. r / 2**i is a whole number or at most 1 (e.g. windows 3 with two stages never fits)
    if any(r > 2**i and r % 2**i for i in range(stages)):
        ok = [2**k for k in range(stages)] + [2 ** (stages - 1) * m for m in (2, 3)]
        raise StudyError(
            f"swin windows {r} cannot tile all {stages} stages (stage grids halve, so "
            "windows / 2**stage must stay whole until it reaches 1)",
            fix=f"use windows: one of {', '.join(map(str, sorted(set(ok))))}",
        )


def stride(shape: dict) -> int:
    return shape["patch"] * 2 ** (len(shape["depths"]) - 1)


def stage_grids(shape: dict, image_size: int) -> list[int]:
    """Tokens per side in each stage: patch grid, then halved and rounded up by patch merging."""
    grids = [image_size // shape["patch"]]
    for _ in shape["depths"][1:]:
        grids.append(-(-grids[-1] // 2))
    return grids


def window(shape: dict, image_size: int) -> int:
    return image_size // shape["patch"] // shape["windows"]


def check_image(shape: dict, image_size: int) -> str | None:
    """Why `image_size` does not suit this shape (None when it does); see the module docstring."""
    patch, r = shape["patch"], shape["windows"]
    if image_size % patch:
        return f"{image_size} px is not a multiple of the patch size {patch}"
    grid = image_size // patch
    if grid % r:
        return f"its {grid}x{grid} patch grid does not split into {r}x{r} windows"
    win = grid // r
    for i, g in enumerate(stage_grids(shape, image_size)):
        if g > win and g % win:
            return f"stage {i + 1}'s {g}x{g} tokens are not a multiple of the {win}x{win} window"
    return None


def build(shape: dict, image_size: int, in_chans: int, num_classes: int) -> SwinTransformer:
    from timm.models.swin_transformer import SwinTransformer  # timm when a model is built, not for check_image

    # a window larger than a stage's grid is clamped to it by timm (global attention, no shift)
    return SwinTransformer(
        img_size=image_size,
        patch_size=shape["patch"],
        in_chans=in_chans,
        num_classes=num_classes,
        embed_dim=shape["width"],
        depths=tuple(shape["depths"]),
        num_heads=tuple(shape["heads"]),
        window_size=window(shape, image_size),
        mlp_ratio=shape["mlp_ratio"],
        drop_path_rate=0.0,
    )
