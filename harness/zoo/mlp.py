"""MLP on pixels: the second baseline of a lecture (flatten, hidden layers with ReLU, linear head).

Shape keys:
    width  units per hidden layer
    depth  number of hidden layers (Linear + ReLU each); depth 0 is not allowed: that is `linear@xs`
The first layer sees every pixel, so parameters grow with the image: C * H * W * width of them.

Why not timm: timm has no classifier on raw pixels (its `Mlp` is a two-layer block inside
models, not a model taking images), so the module is written here (harness/zoo/nets.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.zoo.nets import PixelMLP

# One table. Widths and depths of the classic fully connected MNIST baselines (LeCun et al. 1998,
# "Gradient-based learning applied to document recognition", Fig. 9: 300-1000 hidden units, one
# or two hidden layers), made a ladder: 0.20/0.67/1.9/3.6 M params at 28 px, 1 channel.
SIZES: dict[str, dict] = {
    "xs": dict(width=256, depth=1),
    "s": dict(width=512, depth=2),
    "m": dict(width=1024, depth=2),
    "l": dict(width=1536, depth=2),
}
IMAGENET: tuple[str, ...] = ()
DEFAULT = "xs"
PATCH_GRID = False  # any image size


def validate(shape: dict) -> None:
    """Every positive width and depth is buildable (the registry has checked the types)."""


def stride(shape: dict) -> int:
    return 1


def build(shape: dict, image_size: int, in_chans: int, num_classes: int) -> PixelMLP:
    from harness.zoo.nets import PixelMLP  # torch when a model is built, not for the table

    return PixelMLP(image_size, in_chans, num_classes, shape["width"], shape["depth"])
