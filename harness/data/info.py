"""`DataInfo`: what `describe` found out about a dataset config, without loading it.

Torch-free, like every module of the describe path (checks, builtin, imagefolder, streams, shards,
hf, video, registry): loading and expanding a study reads only these (see harness/data/__init__.py).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DataInfo:
    name: str
    num_classes: int
    in_chans: int
    native_size: int
    train_size: int
    test_size: int
    config: dict  # canonical dataset config: what the trial hashes (name + content keys, not paths)
    source: dict  # where to load from (paths), not hashed
    frames: int = 0  # a video dataset's native clip length (Split.images is [N, F, C, H, W]); 0: images
