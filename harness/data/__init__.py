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

The package, bottom to top (each module imports only those above it in this list):
  splits       DataInfo, Split, Dataset; subsets, the validation split, device-resident splits
  batches      Batcher, EpochSampler, BatchFetcher, eval_batches, channel_stats, decode_all
  checks       config checks every reader shares (only_keys, check_decoded, ...)
  builtin      Fashion-MNIST (IDX), CIFAR-10, synthetic
  imagefolder  class-per-folder images: the folder scan, ImageFiles, decode_image
  streams      what WebDataset and Hugging Face datasets share; shards (WebDataset), hf
  video        Moving-Fashion-MNIST, clip folders
  registry     describe, load: dataset names -> the readers above
This module re-exports the names callers use (`from harness import data; data.load(...)`).
"""

from harness.data.batches import (
    STATS_SAMPLE,
    Batcher,
    BatchFetcher,
    EpochSampler,
    channel_stats,
    decode_all,
    eval_batches,
)
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
    read_idx,
)
from harness.data.checks import check_channels_and_test_fraction, check_decoded, only_keys
from harness.data.imagefolder import (
    IMAGE_EXTENSIONS,
    IMAGEFOLDER_DEFAULTS,
    SPLIT_SEED,
    FolderScan,
    ImageFiles,
    class_dirs,
    decode_image,
    scan_imagefolder,
    split_by_class,
)
from harness.data.registry import DESCRIBERS, VIDEO_DATASETS, describe, load, load_cached
from harness.data.splits import (
    RESIDENT_FRACTION,
    VAL_SEED,
    DataInfo,
    Dataset,
    Split,
    is_resident,
    split_validation,
    subset,
    to_device,
)

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
