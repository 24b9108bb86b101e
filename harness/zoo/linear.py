"""Linear classifier on pixels: the first baseline of a lecture (logits = W x + b).

No shape keys: the model is fixed by the input (channels x image x image pixels) and the number
of classes, so the family has one size, `linear@xs`, and no ladder (a bigger linear classifier on
the same pixels does not exist). Parameters grow with the image: (C * H * W + 1) * classes.

Why not timm: timm has no classifier on raw pixels (its `Mlp` is a block inside models, not a
model taking images), so the module is written here (harness/zoo/nets.py): flatten, one `nn.Linear`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.zoo.nets import LinearClassifier

SIZES: dict[str, dict] = {"xs": {}}  # 7,850 params at 28 px, 1 channel, 10 classes
IMAGENET: tuple[str, ...] = ()
DEFAULT = "xs"
PATCH_GRID = False  # any image size


def validate(shape: dict) -> None:
    """Nothing to check: the family has no shape keys."""


def stride(shape: dict) -> int:
    return 1


def build(shape: dict, image_size: int, in_chans: int, num_classes: int) -> LinearClassifier:
    from harness.zoo.nets import LinearClassifier  # torch when a model is built, not for the table

    return LinearClassifier(image_size, in_chans, num_classes)
