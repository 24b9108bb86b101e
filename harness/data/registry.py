"""The dataset registry: names -> describe (a cheap check of the config) and load (the whole dataset,
cached per process). It sits on top of the readers; see harness/data/__init__.py.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from harness.data import builtin, hf, imagefolder, shards, video
from harness.data.splits import DataInfo, Dataset
from harness.errors import StudyError, did_you_mean

# ----------------------------------------------------------------------------- describe


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
STREAM_LOADERS = {"webdataset": shards.load_webdataset, "hf": hf.load_hf}


# ----------------------------------------------------------------------------- loading


def load(cfg: dict) -> Dataset:
    """The whole dataset in memory (cached per process: trials in one worker share it)."""
    return load_cached(json.dumps(cfg, sort_keys=True))


@functools.lru_cache(maxsize=4)
def load_cached(cfg_json: str) -> Dataset:
    cfg = json.loads(cfg_json)
    info = describe(cfg)
    if info.name in VIDEO_DATASETS:  # clips [N, F, C, H, W]: their own loader and statistics
        return video.load(info)
    if info.name == "fashion_mnist":
        train, test = builtin.read_fashion(Path(info.source["root"]))
    elif info.name == "cifar10":
        train, test = builtin.read_cifar(Path(info.source["root"]))
    elif info.name == "imagefolder":
        return imagefolder.load_imagefolder(info)
    elif info.name in ("webdataset", "hf"):
        return STREAM_LOADERS[info.name](info)
    else:
        train, test = builtin.make_synthetic(info.config)
    x = train.images.float() / 255
    dims = tuple(d for d in range(x.dim()) if d != x.dim() - 3)  # all but C of [N, C, H, W] or [N, F, C, H, W]
    mean = tuple(x.mean(dim=dims).tolist())
    std = tuple(x.std(dim=dims).clamp_min(1e-3).tolist())
    return Dataset(info, train, test, mean, std)
