"""The datasets decoded whole into memory from their own files: Fashion-MNIST (IDX .gz files),
CIFAR-10 (the python-pickle batches), and `synthetic` (tests and throughput-only studies; never a
stand-in for a real result): where their files are and their configs. Their readers (IDX, the
pickled batches, the synthetic generator) are in harness/data/readers.py.
"""

from __future__ import annotations

import os
from pathlib import Path

from harness.data.checks import only_keys
from harness.data.info import DataInfo
from harness.errors import StudyError

FASHION_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")  # apt-get install dataset-fashion-mnist
FASHION_CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"]

SYNTHETIC_DEFAULTS = {"num_classes": 10, "channels": 1, "image_size": 28, "train_size": 2000, "test_size": 500, "seed": 0}


def describe_fashion(cfg: dict) -> DataInfo:
    only_keys(cfg, {"name", "root", "download"})
    root = find_fashion(cfg)
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


def find_fashion(cfg: dict) -> Path:
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


def describe_synthetic(cfg: dict) -> DataInfo:
    only_keys(cfg, {"name", "frames", *SYNTHETIC_DEFAULTS})
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


def describe_cifar10(cfg: dict) -> DataInfo:
    only_keys(cfg, {"name", "root", "download"})
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
