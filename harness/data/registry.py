"""The dataset registry: names -> describe, a cheap check of the config (no torch, nothing decoded).
Loading the whole dataset is harness/data/loading.py; see harness/data/__init__.py.
"""

from __future__ import annotations

from harness.data import builtin, hf, imagefolder, shards, video
from harness.data.info import DataInfo
from harness.errors import StudyError, did_you_mean


def describe(cfg: dict) -> DataInfo:
    """Cheap check of a dataset config: files present, sizes known. Raises StudyError."""
    if not isinstance(cfg, dict) or "name" not in cfg:
        raise StudyError(
            "dataset needs a name", key="dataset", fix=f"e.g. dataset: {{name: fashion_mnist}}; known: {', '.join(DESCRIBERS)}"
        )
    name = cfg["name"]
    if name not in DESCRIBERS:
        raise StudyError(f"unknown dataset '{name}'", key="dataset.name", fix=did_you_mean(str(name), DESCRIBERS))
    return DESCRIBERS[name](cfg)


DESCRIBERS = {
    "fashion_mnist": builtin.describe_fashion,
    "cifar10": builtin.describe_cifar10,
    "imagefolder": imagefolder.describe_imagefolder,
    "synthetic": builtin.describe_synthetic,
    "webdataset": shards.describe_webdataset,  # harness/data/shards.py
    "hf": hf.describe_hf,  # harness/data/hf.py
    "moving_fashion_mnist": video.describe,  # harness/data/video.py
    "clipfolder": video.describe,
}
VIDEO_DATASETS = ("moving_fashion_mnist", "clipfolder")  # harness/data/video.py
