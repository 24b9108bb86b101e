"""Datasets held in memory as uint8 tensors, deterministic stratified subsets, fast batches.

Why not a DataLoader: measured here at 28 px, a DataLoader over a TensorDataset was 10-30x
slower per pass than slicing one uint8 tensor. A split is one `[N, C, H, W]` uint8 tensor plus
labels; a batch is an index gather, then one `grid_sample` that converts to float, resizes to
the trial's resolution and applies the (optional) flip/shift augmentation in a single op.

Datasets: `fashion_mnist` (IDX .gz files), `cifar10` (the python-pickle batches),
`imagefolder` (any class-per-folder directory of images, decoded once to a native size),
`synthetic` (tests and throughput-only studies; never a stand-in for a real result).
Sharded and Hugging Face datasets (`webdataset`, `hf`) live in harness/streams.py and stream
through the same streamed-split path (`BatchFetcher`, `eval_batches`).

Streamed splits: an ImageFolder that does not fit `max_memory_mb` keeps its images as files
(`ImageFiles`) and DataLoader workers decode each batch ahead of the training step. `BatchFetcher`
and `eval_batches` hide the difference from `train`; both paths yield the same uint8 batches in
the same order, so the memory budget never changes a result.

On CUDA an in-memory split is moved to the GPU once per trial (`to_device`): the sampler's
permutation is uploaded once per pass (`EpochSampler.next_on`) and the gather, resize and
augmentation run on the device, so a training step copies nothing from the host.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import itertools
import json
import os
import pickle
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import torch
import torch.nn.functional as F

from harness.errors import StudyError, did_you_mean

FASHION_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")  # apt-get install dataset-fashion-mnist
FASHION_CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"]

SYNTHETIC_DEFAULTS = {"num_classes": 10, "channels": 1, "image_size": 28, "train_size": 2000, "test_size": 500, "seed": 0}


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


@dataclass
class Split:
    images: torch.Tensor | ImageFiles  # uint8 [N, C, H, W] ([N, F, C, H, W] clips), or files decoded per batch (streamed)
    labels: torch.Tensor  # int64 [N]

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class Dataset:
    info: DataInfo
    train: Split
    test: Split
    mean: tuple[float, ...]  # per channel, in [0, 1] units, from the training split
    std: tuple[float, ...]


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


def _describe_fashion(cfg: dict) -> DataInfo:
    _only_keys(cfg, {"name", "root", "download"})
    root = _find_fashion(cfg)
    return DataInfo("fashion_mnist", 10, 1, 28, 60000, 10000, config={"name": "fashion_mnist"}, source={"root": str(root)})


def _fashion_candidates(cfg: dict) -> list[Path]:
    roots = []
    if cfg.get("root"):
        roots.append(Path(cfg["root"]).expanduser())
    if os.environ.get("HARNESS_DATA"):
        roots.append(Path(os.environ["HARNESS_DATA"]).expanduser())
    roots.append(DEBIAN_FASHION)
    # each root may hold the files directly or in the usual sub-folders (torchvision's included)
    subdirs = ["", "fashion-mnist", "fashion_mnist", "FashionMNIST/raw"]
    return [r / s if s else r for r in roots for s in subdirs]


def _find_fashion(cfg: dict) -> Path:
    for d in _fashion_candidates(cfg):
        if all((d / f).is_file() for f in FASHION_FILES.values()):
            return d
    if cfg.get("download"):
        return _download_fashion(Path(cfg.get("root") or os.environ.get("HARNESS_DATA") or "data").expanduser())
    looked = ", ".join(str(d) for d in _fashion_candidates(cfg)[::4])
    raise StudyError(
        f"Fashion-MNIST IDX files ({FASHION_FILES['train_images']}, ...) not found in {looked}",
        key="dataset.root",
        fix="run 'apt-get install dataset-fashion-mnist' (Debian), or set dataset.root / HARNESS_DATA to a directory holding the four .gz files, or set dataset.download: true (torchvision downloads them)",
    )


def _download_fashion(root: Path) -> Path:
    from torchvision.datasets import FashionMNIST  # only when asked: it needs the network

    try:
        FashionMNIST(str(root), train=True, download=True)
        FashionMNIST(str(root), train=False, download=True)
    except Exception as e:  # network errors come in many types; name the cause, keep it one line
        raise StudyError(
            f"download of Fashion-MNIST failed ({type(e).__name__}: {e})",
            key="dataset.download",
            fix="install the Debian package dataset-fashion-mnist or put the IDX .gz files in dataset.root",
        ) from None
    return root / "FashionMNIST" / "raw"


def _describe_synthetic(cfg: dict) -> DataInfo:
    _only_keys(cfg, {"name", "frames", *SYNTHETIC_DEFAULTS})
    frames = cfg.get("frames", 0)
    if not isinstance(frames, int) or isinstance(frames, bool) or frames < 0:
        raise StudyError(
            f"dataset.frames must be a whole number >= 0, got {frames!r}",
            key="dataset.frames",
            fix="e.g. frames: 16 for clips of 16 frames (0 or left out: images)",
        )
    cfg = {k: v for k, v in cfg.items() if k != "frames"}  # in the hashed config only when set: image ids stay
    full = {**SYNTHETIC_DEFAULTS, **cfg}
    for k in SYNTHETIC_DEFAULTS:
        if not isinstance(full[k], int) or full[k] < (0 if k == "seed" else 1):
            raise StudyError(
                f"dataset.{k} must be a positive integer, got {full[k]!r}", key=f"dataset.{k}", fix="use a whole number"
            )
    if full["num_classes"] < 2:
        raise StudyError(
            "a classification dataset needs at least 2 classes", key="dataset.num_classes", fix="use num_classes >= 2"
        )
    return DataInfo(
        "synthetic",
        full["num_classes"],
        full["channels"],
        full["image_size"],
        full["train_size"],
        full["test_size"],
        config=dict(sorted({**full, **({"frames": frames} if frames else {})}.items())),
        source={},
        frames=frames,
    )


# ----------------------------------------------------------------------------- CIFAR-10

CIFAR_DIR = "cifar-10-batches-py"  # what cifar-10-python.tar.gz unpacks to
CIFAR_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _describe_cifar10(cfg: dict) -> DataInfo:
    _only_keys(cfg, {"name", "root", "download"})
    root = _find_cifar(cfg)
    # A trial reloads the data from the hashed config alone, so a directory that HARNESS_DATA does
    # not point at travels in it (found through HARNESS_DATA, the config is machine-independent).
    found = root.parent if root.name == CIFAR_DIR else root
    env = os.environ.get("HARNESS_DATA")
    via_env = bool(env) and found == Path(env).expanduser().resolve()
    config = {"name": "cifar10", **({} if via_env else {"root": str(found)})}
    return DataInfo("cifar10", 10, 3, 32, 50000, 10000, config=config, source={"root": str(root)})


def _cifar_candidates(cfg: dict) -> list[Path]:
    roots = [Path(r).expanduser().resolve() for r in (cfg.get("root"), os.environ.get("HARNESS_DATA")) if r]
    return [d for r in roots for d in (r, r / CIFAR_DIR)]


def _find_cifar(cfg: dict) -> Path:
    for d in _cifar_candidates(cfg):
        if all((d / f).is_file() for f in CIFAR_FILES):
            return d
    if cfg.get("download"):
        return _download_cifar(Path(cfg.get("root") or os.environ.get("HARNESS_DATA") or "data").expanduser().resolve())
    partial = [d for d in _cifar_candidates(cfg) if (d / CIFAR_FILES[0]).is_file()]
    if partial:
        missing = [f for f in CIFAR_FILES if not (partial[0] / f).is_file()]
        raise StudyError(
            f"CIFAR-10 in {partial[0]} is incomplete: {', '.join(missing)} missing",
            key="dataset.root",
            fix=f"unpack cifar-10-python.tar.gz ({CIFAR_URL}) again there, or set dataset.download: true",
        )
    looked = ", ".join(str(d) for d in _cifar_candidates(cfg)[::2]) or "nowhere (no dataset.root, HARNESS_DATA unset)"
    raise StudyError(
        f"CIFAR-10 python batches ({CIFAR_DIR}/data_batch_1..5, test_batch) not found; looked in {looked}",
        key="dataset.root",
        fix=f"download {CIFAR_URL}, unpack it ('tar xzf cifar-10-python.tar.gz') in a directory and set dataset.root "
        "or HARNESS_DATA to it, or set dataset.download: true (torchvision downloads it)",
    )


def _download_cifar(root: Path) -> Path:
    from torchvision.datasets import CIFAR10  # only when asked: it needs the network

    try:
        CIFAR10(str(root), train=True, download=True)
    except Exception as e:  # network errors come in many types; name the cause, keep it one line
        raise StudyError(
            f"download of CIFAR-10 failed ({type(e).__name__}: {e})",
            key="dataset.download",
            fix=f"put the unpacked {CIFAR_DIR} ({CIFAR_URL}) in dataset.root",
        ) from None
    return root / CIFAR_DIR


def _read_cifar(root: Path) -> tuple[Split, Split]:
    """The python batches: pickled dicts, b"data" uint8 [N, 3072] (R, G, B planes of 32x32), b"labels"."""

    def read(names: list[str]) -> Split:
        images, labels = [], []
        for name in names:
            with open(root / name, "rb") as f:
                batch = pickle.load(f, encoding="bytes")  # the format is pickle; the files are the user's own
            images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.extend(batch[b"labels"])
        return Split(torch.from_numpy(np.concatenate(images)), torch.tensor(labels, dtype=torch.long))

    return read(CIFAR_FILES[:5]), read(CIFAR_FILES[5:])


# ----------------------------------------------------------------------------- ImageFolder

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")  # torchvision's
IMAGEFOLDER_DEFAULTS = {"channels": 3, "test_fraction": 0.2, "max_memory_mb": 4096, "workers": 2}
SPLIT_SEED = 0  # the per-class shuffle that picks test_fraction of each class as the test split


@dataclass(frozen=True)
class FolderScan:
    classes: tuple[str, ...]
    train: tuple[tuple[str, int], ...]  # (path, label), sorted by class then path
    test: tuple[tuple[str, int], ...]
    layout: str  # "train/test", "train/val" or "flat"
    fingerprint: str  # 12 hex of sha256 over (relative path, bytes) of every image


def _describe_imagefolder(cfg: dict) -> DataInfo:
    _only_keys(cfg, {"name", "root", "image_size", "channels", "test_fraction", "max_memory_mb", "workers", "fingerprint"})
    if not cfg.get("root"):
        raise StudyError(
            "an imagefolder dataset needs its root directory",
            key="dataset.root",
            fix="e.g. dataset: {name: imagefolder, root: ~/data/flowers, image_size: 64}",
        )
    root = Path(cfg["root"]).expanduser().resolve()
    if not root.is_dir():
        raise StudyError(
            f"ImageFolder root {root} is not a directory",
            key="dataset.root",
            fix="point dataset.root at a directory with one sub-folder of images per class "
            "(or train/ and test/ or val/ folders holding those)",
        )
    full = check_decoded(cfg, IMAGEFOLDER_DEFAULTS, example="image_size: 64")
    tf = full["test_fraction"]
    scan = _scan_imagefolder(str(root), float(tf))
    if scan.layout != "flat" and "test_fraction" in cfg:
        raise StudyError(
            f"{root} has its own {scan.layout} split, so test_fraction does not apply",
            key="dataset.test_fraction",
            fix="remove test_fraction (or use a folder of class folders)",
        )
    if "fingerprint" in cfg and cfg["fingerprint"] != scan.fingerprint:
        raise StudyError(
            f"the images in {root} changed since this study was planned (fingerprint "
            f"{scan.fingerprint}, expected {cfg['fingerprint']})",
            key="dataset.root",
            fix="restore the folder, or run the study again under a new name (its trial ids change)",
        )
    # Hashed: what the images are (fingerprint, decode size, channels, split) and, because a trial
    # reloads the data from this config alone, where they live and how to load them (root,
    # max_memory_mb, workers: those never change a result; see the module docstring).
    config = {
        "name": "imagefolder",
        "root": str(root),
        "image_size": full["image_size"],
        "channels": full["channels"],
        **({"test_fraction": float(tf)} if scan.layout == "flat" else {}),
        **{k: cfg[k] for k in ("max_memory_mb", "workers") if k in cfg},
        "fingerprint": scan.fingerprint,
    }
    return DataInfo(
        "imagefolder",
        len(scan.classes),
        full["channels"],
        full["image_size"],
        len(scan.train),
        len(scan.test),
        config=config,
        source={
            "root": str(root),
            "layout": scan.layout,
            "classes": list(scan.classes),
            "max_memory_mb": full["max_memory_mb"],
            "workers": full["workers"],
        },
    )


def check_decoded(cfg: dict, defaults: dict, *, example: str) -> dict:
    """The keys every decoded-on-the-fly dataset shares (imagefolder, webdataset, hf): image_size,
    max_memory_mb, workers, channels, test_fraction; returns `cfg` over `defaults`."""
    if "image_size" not in cfg:
        raise StudyError(
            f"a {cfg['name']} dataset needs image_size, the size its images are decoded to",
            key="dataset.image_size",
            fix=f"e.g. {example} (shorter side resized, centre crop)",
        )
    full = {**defaults, **cfg}
    for key in ("image_size", "max_memory_mb", "workers"):  # max_memory_mb 0: always stream
        if not isinstance(full[key], int) or isinstance(full[key], bool) or full[key] < (key == "image_size"):
            raise StudyError(
                f"dataset.{key} must be a {'positive' if key == 'image_size' else 'non-negative'} integer, got {full[key]!r}",
                key=f"dataset.{key}",
                fix="use a whole number",
            )
    check_channels_and_test_fraction(full)
    return full


def check_channels_and_test_fraction(full: dict) -> None:
    """`channels` 1 or 3 and `test_fraction` in (0, 1): the keys of every dataset decoded from files."""
    if full["channels"] not in (1, 3):
        raise StudyError(
            f"dataset.channels must be 1 (grey) or 3 (RGB), got {full['channels']!r}",
            key="dataset.channels",
            fix="use channels: 3 or channels: 1",
        )
    tf = full["test_fraction"]
    if not isinstance(tf, (int, float)) or isinstance(tf, bool) or not 0 < tf < 1:
        raise StudyError(
            f"dataset.test_fraction must be between 0 and 1, got {tf!r}",
            key="dataset.test_fraction",
            fix="e.g. test_fraction: 0.2",
        )


@functools.lru_cache(maxsize=8)
def _scan_imagefolder(root_str: str, test_fraction: float) -> FolderScan:
    """Classes are the sorted sub-folder names (torchvision's ImageFolder rule), images found recursively."""
    root = Path(root_str)
    held_out = next((d for d in ("test", "val") if (root / d).is_dir()), None)
    if (root / "train").is_dir() and held_out:
        classes = _class_dirs(root / "train")
        train = _images_by_class(root / "train", classes)
        test_classes = _class_dirs(root / held_out)
        unknown = sorted(set(test_classes) - set(classes))
        if unknown:
            raise StudyError(
                f"{root / held_out} has classes that train/ lacks: {', '.join(unknown[:5])}",
                key="dataset.root",
                fix="give every test class a train/ folder of the same name",
            )
        test = _images_by_class(root / held_out, test_classes, labels={c: classes.index(c) for c in test_classes})
        layout = f"train/{held_out}"
    else:
        classes = _class_dirs(root)
        everything = _images_by_class(root, classes)
        train, test = _split_by_class(everything, classes, test_fraction)
        layout = "flat"
    digest = hashlib.sha256()
    for path, _ in sorted(train + test):
        digest.update(f"{os.path.relpath(path, root)}\t{os.path.getsize(path)}\n".encode())
    return FolderScan(tuple(classes), tuple(train), tuple(test), layout, digest.hexdigest()[:12])


def _class_dirs(folder: Path) -> list[str]:
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    if len(classes) < 2:
        raise StudyError(
            f"{folder} holds {len(classes)} class folder(s); a classification dataset needs at least 2",
            key="dataset.root",
            fix="put each class's images in its own sub-folder (e.g. cat/, dog/)",
        )
    return classes


def _images_by_class(folder: Path, classes: list[str], labels: dict[str, int] | None = None) -> list[tuple[str, int]]:
    out = []
    for i, name in enumerate(classes):
        found = sorted(
            os.path.join(d, f)
            for d, _, files in os.walk(folder / name, followlinks=True)
            for f in files
            if f.lower().endswith(IMAGE_EXTENSIONS)
        )
        if not found:
            raise StudyError(
                f"class folder {folder / name} has no images ({', '.join(IMAGE_EXTENSIONS)})",
                key="dataset.root",
                fix="remove the empty folder or add its images",
            )
        label = labels[name] if labels else i
        out.extend((p, label) for p in found)
    return out


def _split_by_class(items: list[tuple[str, int]], classes: list[str], test_fraction: float) -> tuple[list, list]:
    """Per class, a fixed-seed shuffle; its first round(test_fraction * n) images (>= 1, < n) are test."""
    by_class: list[list[tuple[str, int]]] = [[] for _ in classes]
    for item in items:
        by_class[item[1]].append(item)
    train, test = [], []
    for c, members in enumerate(by_class):
        if len(members) < 2:
            raise StudyError(
                f"class {classes[c]} has {len(members)} image; test_fraction needs at least 2 per class",
                key="dataset.root",
                fix="add images, or give train/ and test/ folders",
            )
        g = torch.Generator().manual_seed(SPLIT_SEED * 1_000_003 + c)
        order = torch.randperm(len(members), generator=g).tolist()
        k = min(max(1, round(test_fraction * len(members))), len(members) - 1)
        held = set(order[:k])
        test.extend(m for j, m in enumerate(members) if j in held)
        train.extend(m for j, m in enumerate(members) if j not in held)
    return train, test


DESCRIBERS = {
    "fashion_mnist": _describe_fashion,
    "cifar10": _describe_cifar10,
    "imagefolder": _describe_imagefolder,
    "synthetic": _describe_synthetic,
    "webdataset": lambda cfg: _streams().DESCRIBERS["webdataset"](cfg),  # harness/streams.py
    "hf": lambda cfg: _streams().DESCRIBERS["hf"](cfg),
    "moving_fashion_mnist": lambda cfg: _video().describe(cfg),
    "clipfolder": lambda cfg: _video().describe(cfg),
}
VIDEO_DATASETS = ("moving_fashion_mnist", "clipfolder")  # harness/video_data.py


def _video():  # harness.video_data, imported on first use (it imports this module)
    from harness import video_data

    return video_data


def _streams():  # imported on use: streams imports this module
    from harness import streams

    return streams


def _only_keys(cfg: dict, allowed: set[str]) -> None:
    for k in cfg:
        if k not in allowed:
            raise StudyError(
                f"unknown key '{k}' for dataset '{cfg['name']}'", key=f"dataset.{k}", fix=did_you_mean(str(k), allowed)
            )


# ----------------------------------------------------------------------------- loading


def load(cfg: dict) -> Dataset:
    """The whole dataset in memory (cached per process: trials in one worker share it)."""
    return _load_cached(json.dumps(cfg, sort_keys=True))


@functools.lru_cache(maxsize=4)
def _load_cached(cfg_json: str) -> Dataset:
    cfg = json.loads(cfg_json)
    info = describe(cfg)
    if info.name in VIDEO_DATASETS:  # clips [N, F, C, H, W]: their own loader and statistics
        return _video().load(info)
    if info.name == "fashion_mnist":
        root = Path(info.source["root"])
        train = Split(_read_idx(root / FASHION_FILES["train_images"]), _read_idx(root / FASHION_FILES["train_labels"]))
        test = Split(_read_idx(root / FASHION_FILES["test_images"]), _read_idx(root / FASHION_FILES["test_labels"]))
    elif info.name == "cifar10":
        train, test = _read_cifar(Path(info.source["root"]))
    elif info.name == "imagefolder":
        return _load_imagefolder(info)
    elif info.name in ("webdataset", "hf"):
        return _streams().LOADERS[info.name](info)
    else:
        train, test = _make_synthetic(info.config)
    x = train.images.float() / 255
    dims = tuple(d for d in range(x.dim()) if d != x.dim() - 3)  # all but C of [N, C, H, W] or [N, F, C, H, W]
    mean = tuple(x.mean(dim=dims).tolist())
    std = tuple(x.std(dim=dims).clamp_min(1e-3).tolist())
    return Dataset(info, train, test, mean, std)


def _read_idx(path: Path) -> torch.Tensor:
    """IDX format (LeCun): magic 0x0000 0x08 ndim, then ndim big-endian int32 dims, then uint8 data."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">i4", count=ndim, offset=4)
    arr = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)
    t = torch.from_numpy(arr.copy())
    return t.unsqueeze(1) if ndim == 3 else t.long()  # images -> [N, 1, H, W]; labels -> int64


def _make_synthetic(cfg: dict) -> tuple[Split, Split]:
    """Learnable, deterministic: each class is a random smooth prototype plus per-image noise.
    With `frames: F`, clips [N, F, C, H, W]: frame f is the class prototype rolled f px to the right
    (plus fresh noise), for tests and throughput studies; not a motion benchmark."""
    g = torch.Generator().manual_seed(cfg["seed"])
    k, c, s = cfg["num_classes"], cfg["channels"], cfg["image_size"]
    coarse = torch.rand(k, c, max(2, s // 4), max(2, s // 4), generator=g)
    protos = F.interpolate(coarse, size=(s, s), mode="bilinear", align_corners=False)
    frames = cfg.get("frames", 0)
    if frames:
        protos = torch.stack([protos.roll(f, dims=-1) for f in range(frames)], dim=1)  # [k, F, C, H, W]

    def split(n: int) -> Split:
        labels = torch.arange(n) % k
        labels = labels[torch.randperm(n, generator=g)]
        x = protos[labels] + 0.35 * torch.randn(n, *protos.shape[1:], generator=g)
        return Split((x.clamp(0, 1) * 255).round().to(torch.uint8), labels)

    return split(cfg["train_size"]), split(cfg["test_size"])


# ----------------------------------------------------------------------------- subsets


def subset(split: Split, size: int, seed: int) -> Split:
    """Deterministic stratified subset, nested across sizes: for one seed, the 1k subset is
    contained in the 4k subset (each class is a fixed permutation, and we take its prefix)."""
    if size >= len(split):
        return split
    labels = split.labels
    classes, counts = torch.unique(labels, return_counts=True)
    quota = _largest_remainder(counts.double() * size / len(labels))
    picked = []
    for cls, q in zip(classes.tolist(), quota.tolist()):
        members = torch.nonzero(labels == cls).flatten()
        g = torch.Generator().manual_seed(seed * 1_000_003 + cls)
        picked.append(members[torch.randperm(len(members), generator=g)[:q]])
    idx = torch.cat(picked).sort().values
    images = split.images[idx] if isinstance(split.images, torch.Tensor) else split.images.take(idx)
    return Split(images, labels[idx])


VAL_SEED = 20_231_011  # the validation split's per-class permutations: one fixed draw, the same for every trial seed


def split_validation(split: Split, val_size: int) -> tuple[Split, Split | None]:
    """(the pool `data_size` subsets are drawn from, the validation split). The validation split is
    stratified (class quotas by largest remainder) and fixed: the last images of one permutation
    per class, drawn with VAL_SEED whatever the trial's seed, so every trial of a study, every
    learning rate and every seed is selected on the same images. The pool is the rest, so no
    subset of it can overlap the validation split. `val_size` 0: (split, None), today's subsets."""
    if not val_size:
        return split, None
    labels = split.labels
    classes, counts = torch.unique(labels, return_counts=True)
    quota = _largest_remainder(counts.double() * val_size / len(labels))
    held = []
    for cls, q in zip(classes.tolist(), quota.tolist()):
        members = torch.nonzero(labels == cls).flatten()
        g = torch.Generator().manual_seed(VAL_SEED * 1_000_003 + cls)
        perm = members[torch.randperm(len(members), generator=g)]
        held.append(perm[len(perm) - q :])
    val_idx = torch.cat(held).sort().values
    keep = torch.ones(len(labels), dtype=torch.bool)
    keep[val_idx] = False
    return _take(split, torch.nonzero(keep).flatten()), _take(split, val_idx)


def _take(split: Split, idx: torch.Tensor) -> Split:
    images = split.images[idx] if isinstance(split.images, torch.Tensor) else split.images.take(idx)
    return Split(images, split.labels[idx])


RESIDENT_FRACTION = 0.25  # an in-memory split moves to the GPU when it takes at most this share of free memory


def to_device(split: Split, device: torch.device) -> Split:
    """The split's uint8 images and labels on `device` (once per trial), so batches are gathered,
    resized and augmented there. Unchanged on CPU, for streamed splits, and for a split too large
    for RESIDENT_FRACTION of the free GPU memory (then each batch is copied, as before)."""
    if device.type == "cpu" or not isinstance(split.images, torch.Tensor) or split.images.device == device:
        return split
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        if split.images.nbytes + split.labels.nbytes > RESIDENT_FRACTION * free:
            return split
    return Split(split.images.to(device), split.labels.to(device))


def is_resident(split: Split) -> bool:
    return isinstance(split.images, torch.Tensor) and split.images.device.type != "cpu"


def _largest_remainder(shares: torch.Tensor) -> torch.Tensor:
    """Integer quotas summing to round(sum(shares)), off by at most one from each share."""
    base = shares.floor().long()
    short = int(round(float(shares.sum()))) - int(base.sum())
    if short > 0:
        base[torch.argsort(shares - base, descending=True)[:short]] += 1
    return base


# ----------------------------------------------------------------------------- batches


class Batcher:
    """Turns uint8 images into normalised float batches at `image_size` on `device`.

    Clips (uint8 [B, F, C, H, W]) become [B, C, T, S, S] with T = `frames` taken as frames
    0, s, 2s, ..., (T-1)s of each clip (s = `frame_stride`; frames 0: all F); every frame is resized
    like an image, and augmentation draws one flip/shift per clip, applied to all its frames."""

    def __init__(
        self, ds: Dataset, image_size: int, device: torch.device, augment: str = "none", frames: int = 0, frame_stride: int = 1
    ) -> None:
        self.image_size, self.device, self.augment = image_size, device, augment
        self.mean = torch.tensor(ds.mean, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(ds.std, device=device).view(1, -1, 1, 1)
        self.native = ds.info.native_size
        self.frames, self.frame_stride = frames, frame_stride

    def __call__(self, images: torch.Tensor, train: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        if images.dim() == 5:
            return self._clips(images, train, generator)
        x = images.to(self.device, non_blocking=True).float().div_(255)
        if train and self.augment != "none":
            x = self._augment(x, generator)
        elif x.shape[-1] != self.image_size:
            # antialias when shrinking, so downsampled inputs are not aliased
            x = F.interpolate(
                x,
                size=(self.image_size, self.image_size),
                mode="bilinear",
                align_corners=False,
                antialias=self.image_size < x.shape[-1],
            )
        return (x - self.mean) / self.std

    def _clips(self, clips: torch.Tensor, train: bool, generator: torch.Generator | None) -> torch.Tensor:
        """[B, F, C, H, W] uint8 -> [B, C, T, S, S] float: the frame path of images on B*T frames."""
        b, f = clips.shape[:2]
        t = self.frames or f
        if (t - 1) * self.frame_stride >= f:
            raise ValueError(
                f"{t} frames at stride {self.frame_stride} need clips of {(t - 1) * self.frame_stride + 1} frames; these have {f}"
            )
        idx = torch.arange(t, device=clips.device) * self.frame_stride
        x = clips.index_select(1, idx).to(self.device, non_blocking=True).flatten(0, 1).float().div_(255)  # [B*T, C, H, W]
        if train and self.augment != "none":
            x = self._augment(x, generator, repeat=t)
        elif x.shape[-1] != self.image_size:
            x = F.interpolate(
                x,
                size=(self.image_size, self.image_size),
                mode="bilinear",
                align_corners=False,
                antialias=self.image_size < x.shape[-1],
            )
        x = (x - self.mean) / self.std
        return x.unflatten(0, (b, t)).transpose(1, 2).contiguous()  # [B, C, T, S, S]

    def _augment(self, x: torch.Tensor, g: torch.Generator | None, repeat: int = 1) -> torch.Tensor:
        """Random horizontal flip (+ shift of up to 2 native pixels) and resize in one grid_sample.
        The draws come from `g` on its own device: a CUDA generator keeps the whole batch path on the
        GPU (a CPU-made theta would be a blocking host-to-device copy, i.e. a sync, every step).
        `repeat`: x holds clips of that many consecutive frames; each clip draws once for all its frames."""
        n = x.shape[0] // repeat
        gd = g.device if g is not None else torch.device("cpu")
        theta = torch.zeros(n, 2, 3, device=gd)
        flip = torch.where(torch.rand(n, generator=g, device=gd) < 0.5, -1.0, 1.0)
        theta[:, 0, 0], theta[:, 1, 1] = flip, 1.0
        if self.augment == "flip_shift":
            # grid units: 2 / native per pixel; integer shifts keep the pixels sharp
            shift = torch.randint(-2, 3, (n, 2), generator=g, device=gd).float() * 2 / self.native
            theta[:, :, 2] = shift
        theta = theta.repeat_interleave(repeat, dim=0) if repeat > 1 else theta
        grid = F.affine_grid(theta.to(x.device), [x.shape[0], x.shape[1], self.image_size, self.image_size], align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class EpochSampler:
    """Indices of the next batch: a fresh permutation every pass, no sample repeated within a pass."""

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        self.n, self.batch_size = n, min(batch_size, n)
        self.g = torch.Generator().manual_seed(seed)
        self.perm, self.pos = torch.randperm(n, generator=self.g), 0
        self._on_device: tuple[torch.Tensor, torch.Tensor] | None = None  # (host perm, its device copy)

    def copy(self) -> EpochSampler:
        """An independent sampler that draws the same indices from here on."""
        twin = EpochSampler.__new__(EpochSampler)
        twin.n, twin.batch_size, twin.pos, twin.perm = self.n, self.batch_size, self.pos, self.perm.clone()
        twin._on_device = None
        twin.g = torch.Generator().manual_seed(0)
        twin.g.set_state(self.g.get_state())
        return twin

    def next(self) -> torch.Tensor:
        if self.pos + self.batch_size > self.n:
            self.perm, self.pos = torch.randperm(self.n, generator=self.g), 0
        idx = self.perm[self.pos : self.pos + self.batch_size]
        self.pos += self.batch_size
        return idx

    def next_on(self, device: torch.device) -> torch.Tensor:
        """`next()`'s indices as a slice of a device copy of the permutation. The permutation is
        still drawn on the CPU generator (same order as on CPU, same checkpoint state) and uploaded
        once per pass, asynchronously from pinned memory: no host-to-device copy per step."""
        self.next()
        if self._on_device is None or self._on_device[0] is not self.perm:  # new pass, or restored from a checkpoint
            host = self.perm.pin_memory() if device.type == "cuda" else self.perm
            self._on_device = (self.perm, host.to(device, non_blocking=True))
        return self._on_device[1][self.pos - self.batch_size : self.pos]


# ----------------------------------------------------------------------------- ImageFolder loading


class ImageFiles(torch.utils.data.Dataset):
    """Image files decoded on demand to uint8 [C, S, S]: shorter side resized to S, centre crop."""

    def __init__(self, paths: list[str], image_size: int, channels: int, workers: int) -> None:
        self.paths, self.image_size, self.channels, self.workers = paths, image_size, channels, workers

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        return decode_image(self.paths[i], self.image_size, self.channels)

    def take(self, idx: torch.Tensor) -> ImageFiles:
        return ImageFiles([self.paths[i] for i in idx.tolist()], self.image_size, self.channels, self.workers)


def decode_image(path: str | IO[bytes], size: int, channels: int) -> torch.Tensor:
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB" if channels == 3 else "L")
        scale = size / min(im.size)
        w, h = max(size, round(im.width * scale)), max(size, round(im.height * scale))
        im = im.resize((w, h), Image.Resampling.BILINEAR)  # PIL filters over the source when shrinking
        left, top = (w - size) // 2, (h - size) // 2
        arr = np.asarray(im.crop((left, top, left + size, top + size)), dtype=np.uint8)
    return torch.from_numpy(arr.reshape(size, size, channels).transpose(2, 0, 1).copy())


STATS_SAMPLE = 5000  # training images the ImageFolder mean/std come from (a fixed stratified subset)


def _load_imagefolder(info: DataInfo) -> Dataset:
    cfg, src = info.config, info.source
    scan = _scan_imagefolder(src["root"], float(cfg.get("test_fraction", IMAGEFOLDER_DEFAULTS["test_fraction"])))

    def files(items: tuple[tuple[str, int], ...]) -> Split:
        return Split(
            ImageFiles([p for p, _ in items], info.native_size, info.in_chans, src["workers"]),
            torch.tensor([c for _, c in items], dtype=torch.long),
        )

    train, test = files(scan.train), files(scan.test)
    need_mb = (len(train) + len(test)) * info.in_chans * info.native_size**2 / 2**20
    if need_mb <= src["max_memory_mb"]:
        train, test = _decode_all(train), _decode_all(test)
    mean, std = _channel_stats(subset(train, STATS_SAMPLE, seed=0))
    return Dataset(info, train, test, mean, std)


def _decode_all(split: Split) -> Split:
    """Every image of a streamed split, decoded once (by the DataLoader workers) into one uint8 tensor."""
    files = split.images
    out = torch.empty(len(files), files.channels, files.image_size, files.image_size, dtype=torch.uint8)
    pos = 0
    for images, _ in eval_batches(split, 256):
        out[pos : pos + len(images)] = images
        pos += len(images)
    return Split(out, split.labels)


def _channel_stats(split: Split) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std in [0, 1] units, in float64 batch sums: the same numbers whether
    the split is in memory or streamed."""
    total = total_sq = None
    n = 0
    for images, _ in eval_batches(split, 500):
        x = images.double().div_(255).transpose(0, 1).flatten(1)  # [C, pixels]
        total = x.sum(1) if total is None else total + x.sum(1)
        total_sq = (x * x).sum(1) if total_sq is None else total_sq + (x * x).sum(1)
        n += x.shape[1]
    mean = total / n
    std = ((total_sq - n * mean * mean) / max(1, n - 1)).clamp_min(0).sqrt().clamp_min(1e-3)
    return tuple(mean.tolist()), tuple(std.tolist())


# ----------------------------------------------------------------------------- batch streams


class BatchFetcher:
    """(uint8 images, labels) for the indices the training loop's EpochSampler drew: an index
    gather from memory, or for a streamed split the next batch of a DataLoader whose workers decode
    ahead along a copy of the same sampler (created at the first call, so a sampler restored from a
    checkpoint is followed too; every batch is checked against the drawn indices)."""

    def __init__(self, split: Split, sampler: EpochSampler) -> None:
        self.split, self.sampler = split, sampler
        self._stream: Iterator | None = None

    def __call__(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(self.split.images, torch.Tensor):
            return self.split.images[idx], self.split.labels[idx]
        if self._stream is None:
            ahead = itertools.chain([idx.tolist()], _EndlessBatches(self.sampler.copy()))
            self._stream = iter(_loader(self.split, ahead))
        got, images, labels = next(self._stream)
        if not torch.equal(got, idx):
            raise RuntimeError("streamed batch out of step with the sampler (indices drawn elsewhere?)")
        return images, labels


def eval_batches(split: Split, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The split in order, `batch_size` at a time, as (uint8 images, labels)."""
    if isinstance(split.images, torch.Tensor):
        for i in range(0, len(split), batch_size):
            yield split.images[i : i + batch_size], split.labels[i : i + batch_size]
        return
    order = list(range(len(split)))
    for _, images, labels in _loader(split, [order[i : i + batch_size] for i in range(0, len(split), batch_size)]):
        yield images, labels


class _Indexed(torch.utils.data.Dataset):
    """(index, decoded image, label): the index lets BatchFetcher check the order."""

    def __init__(self, split: Split) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor, torch.Tensor]:
        return i, self.split.images[i], self.split.labels[i]


class _EndlessBatches:
    def __init__(self, sampler: EpochSampler) -> None:
        self.sampler = sampler

    def __iter__(self) -> Iterator[list[int]]:
        while True:
            yield self.sampler.next().tolist()


def _loader(split: Split, batch_sampler: Iterable[list[int]]) -> torch.utils.data.DataLoader:
    workers = split.images.workers  # decoding runs in these processes; 0 = in this one
    return torch.utils.data.DataLoader(
        _Indexed(split), batch_sampler=batch_sampler, num_workers=workers, prefetch_factor=4 if workers else None
    )
