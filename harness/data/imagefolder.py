"""`imagefolder`: any class-per-folder directory of images, decoded once to a native size, or kept
as files (`ImageFiles`) and decoded per batch when it does not fit `max_memory_mb`. The folder scan
(`class_dirs`, `split_by_class`) is shared with clip folders (harness/data/video.py).
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import torch

from harness.data.batches import STATS_SAMPLE, channel_stats, decode_all
from harness.data.checks import check_decoded, only_keys
from harness.data.splits import DataInfo, Dataset, Split, subset
from harness.errors import StudyError

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


def describe_imagefolder(cfg: dict) -> DataInfo:
    only_keys(cfg, {"name", "root", "image_size", "channels", "test_fraction", "max_memory_mb", "workers", "fingerprint"})
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
    scan = scan_imagefolder(str(root), float(tf))
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


@functools.lru_cache(maxsize=8)
def scan_imagefolder(root_str: str, test_fraction: float) -> FolderScan:
    """Classes are the sorted sub-folder names (torchvision's ImageFolder rule), images found recursively."""
    root = Path(root_str)
    held_out = next((d for d in ("test", "val") if (root / d).is_dir()), None)
    if (root / "train").is_dir() and held_out:
        classes = class_dirs(root / "train")
        train = _images_by_class(root / "train", classes)
        test_classes = class_dirs(root / held_out)
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
        classes = class_dirs(root)
        everything = _images_by_class(root, classes)
        train, test = split_by_class(everything, classes, test_fraction)
        layout = "flat"
    digest = hashlib.sha256()
    for path, _ in sorted(train + test):
        digest.update(f"{os.path.relpath(path, root)}\t{os.path.getsize(path)}\n".encode())
    return FolderScan(tuple(classes), tuple(train), tuple(test), layout, digest.hexdigest()[:12])


def class_dirs(folder: Path) -> list[str]:
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


def split_by_class(items: list[tuple[str, int]], classes: list[str], test_fraction: float) -> tuple[list, list]:
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


def load_imagefolder(info: DataInfo) -> Dataset:
    cfg, src = info.config, info.source
    scan = scan_imagefolder(src["root"], float(cfg.get("test_fraction", IMAGEFOLDER_DEFAULTS["test_fraction"])))

    def files(items: tuple[tuple[str, int], ...]) -> Split:
        return Split(
            ImageFiles([p for p, _ in items], info.native_size, info.in_chans, src["workers"]),
            torch.tensor([c for _, c in items], dtype=torch.long),
        )

    train, test = files(scan.train), files(scan.test)
    need_mb = (len(train) + len(test)) * info.in_chans * info.native_size**2 / 2**20
    if need_mb <= src["max_memory_mb"]:
        train, test = decode_all(train), decode_all(test)
    mean, std = channel_stats(subset(train, STATS_SAMPLE, seed=0))
    return Dataset(info, train, test, mean, std)
