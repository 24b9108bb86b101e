"""`load`: a dataset config to the whole `Dataset` (its readers: harness/data/readers.py, clips.py),
cached per process so the trials of one worker share it."""

from __future__ import annotations

import functools
import json
from pathlib import Path

from harness.data import clips, readers
from harness.data.registry import VIDEO_DATASETS, describe
from harness.data.splits import Dataset

STREAM_LOADERS = {"webdataset": readers.load_webdataset, "hf": readers.load_hf}


def load(cfg: dict) -> Dataset:
    """The whole dataset in memory (cached per process: trials in one worker share it)."""
    return load_cached(json.dumps(cfg, sort_keys=True))


@functools.lru_cache(maxsize=4)
def load_cached(cfg_json: str) -> Dataset:
    cfg = json.loads(cfg_json)
    info = describe(cfg)
    if info.name in VIDEO_DATASETS:  # clips [N, F, C, H, W]: their own loader and statistics
        return clips.load(info)
    if info.name == "fashion_mnist":
        train, test = readers.read_fashion(Path(info.source["root"]))
    elif info.name == "cifar10":
        train, test = readers.read_cifar(Path(info.source["root"]))
    elif info.name == "imagefolder":
        return readers.load_imagefolder(info)
    elif info.name in ("webdataset", "hf"):
        return STREAM_LOADERS[info.name](info)
    else:
        train, test = readers.make_synthetic(info.config)
    x = train.images.float() / 255
    dims = tuple(d for d in range(x.dim()) if d != x.dim() - 3)  # all but C of [N, C, H, W] or [N, F, C, H, W]
    mean = tuple(x.mean(dim=dims).tolist())
    std = tuple(x.std(dim=dims).clamp_min(1e-3).tolist())
    return Dataset(info, train, test, mean, std)
