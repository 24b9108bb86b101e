"""Datasets held in memory as uint8 tensors, deterministic stratified subsets, fast batches.

Why not a DataLoader: measured here at 28 px, a DataLoader over a TensorDataset was 10-30x
slower per pass than slicing one uint8 tensor. A split is one `[N, C, H, W]` uint8 tensor plus
labels; a batch is an index gather, then one `grid_sample` that converts to float, resizes to
the trial's resolution and applies the (optional) flip/shift augmentation in a single op.

Datasets: `fashion_mnist` (IDX .gz files), `cifar10` (the python-pickle batches),
`imagefolder` (any class-per-folder directory of images, decoded once to a native size),
`synthetic` (tests and throughput-only studies; never a stand-in for a real result).
Sharded and Hugging Face datasets (`webdataset`, `hf`) live in harness/data/streams.py (shards.py,
hf.py) and stream through the same streamed-split path (`BatchFetcher`, `eval_batches`); video
datasets (`moving_fashion_mnist`, `clipfolder`) in harness/data/video.py.

Streamed splits: an ImageFolder that does not fit `max_memory_mb` keeps its images as files
(`ImageFiles`) and DataLoader workers decode each batch ahead of the training step. `BatchFetcher`
and `eval_batches` hide the difference from `train`; both paths yield the same uint8 batches in
the same order, so the memory budget never changes a result.

On CUDA an in-memory split is moved to the GPU once per trial (`to_device`): the sampler's
permutation is uploaded once per pass (`EpochSampler.next_on`) and the gather, resize and
augmentation run on the device, so a training step copies nothing from the host.

Describing a dataset (`describe`: the config checked, files found, sizes counted) needs no torch,
so loading and expanding a study never imports it; loading one (`load`) does. The package, bottom
to top (each module imports only those above it in this list):
  info         DataInfo: what describe() found                                       -- no torch --
  checks       config checks every describer shares (only_keys, check_decoded, held_out, ...)
  builtin      Fashion-MNIST (IDX), CIFAR-10, synthetic: where their files are, their configs
  imagefolder  class-per-folder images: the config, the folder scan
  streams      what WebDataset and Hugging Face datasets share; shards (WebDataset), hf
  video        Moving-Fashion-MNIST, clip folders: the configs, the clip folder scan
  registry     describe: dataset names -> the describers above
  splits       Split, Dataset; subsets, the validation split, device-resident splits  -- torch --
  batches      Batcher, EpochSampler, BatchFetcher, eval_batches, channel_stats, decode_all
  readers      the files as tensors: IDX, CIFAR, synthetic, ImageFiles, TarMembers, HFRows; held-out splits
  clips        video clips rendered (Moving-Fashion-MNIST) and decoded (clip folders)
  loading      load, load_cached: a config -> its Dataset, cached per process
This module re-exports the names callers use (`from harness import data; data.load(...)`): the
describe path's at import, the torch modules' on first use (PEP 562 `__getattr__`).
"""

from __future__ import annotations

import importlib

from harness.data.builtin import (
    CIFAR_CLASSES,
    CIFAR_DIR,
    CIFAR_FILES,
    CIFAR_URL,
    DEBIAN_FASHION,
    FASHION_CLASSES,
    FASHION_FILES,
    SYNTHETIC_DEFAULTS,
    find_fashion,
)
from harness.data.checks import check_channels_and_test_fraction, check_decoded, held_out, only_keys
from harness.data.imagefolder import (
    IMAGE_EXTENSIONS,
    IMAGEFOLDER_DEFAULTS,
    SPLIT_SEED,
    FolderScan,
    class_dirs,
    scan_imagefolder,
)
from harness.data.info import DataInfo
from harness.data.registry import DESCRIBERS, VIDEO_DATASETS, describe

TORCH_NAMES = {  # the torch modules' names, imported on first use
    "splits": ("RESIDENT_FRACTION", "VAL_SEED", "Dataset", "Split", "is_resident", "split_validation", "subset", "to_device"),
    "batches": ("STATS_SAMPLE", "Batcher", "BatchFetcher", "EpochSampler", "channel_stats", "decode_all", "eval_batches"),
    "readers": ("ImageFiles", "decode_image", "read_idx", "split_by_class"),
    "loading": ("load", "load_cached"),
}
LAZY = {name: module for module, names in TORCH_NAMES.items() for name in names}


def __getattr__(name: str) -> object:
    if name not in LAZY:
        raise AttributeError(f"module 'harness.data' has no attribute '{name}'")
    value = getattr(importlib.import_module(f"harness.data.{LAZY[name]}"), name)
    globals()[name] = value  # once: later uses are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *LAZY})


__all__ = [
    "CIFAR_CLASSES",
    "CIFAR_DIR",
    "CIFAR_FILES",
    "CIFAR_URL",
    "DEBIAN_FASHION",
    "DESCRIBERS",
    "FASHION_CLASSES",
    "FASHION_FILES",
    "IMAGEFOLDER_DEFAULTS",
    "IMAGE_EXTENSIONS",
    "RESIDENT_FRACTION",
    "SPLIT_SEED",
    "STATS_SAMPLE",
    "SYNTHETIC_DEFAULTS",
    "VAL_SEED",
    "VIDEO_DATASETS",
    "BatchFetcher",
    "Batcher",
    "DataInfo",
    "Dataset",
    "EpochSampler",
    "FolderScan",
    "ImageFiles",
    "Split",
    "channel_stats",
    "check_channels_and_test_fraction",
    "check_decoded",
    "class_dirs",
    "decode_all",
    "decode_image",
    "describe",
    "eval_batches",
    "find_fashion",
    "held_out",
    "is_resident",
    "load",
    "load_cached",
    "only_keys",
    "read_idx",
    "scan_imagefolder",
    "split_by_class",
    "split_validation",
    "subset",
    "to_device",
]
