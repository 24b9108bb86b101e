"""`imagefolder`: any class-per-folder directory of images, decoded once to a native size, or kept
as files (`ImageFiles`, harness/data/readers.py) and decoded per batch when it does not fit
`max_memory_mb`. Here: the config and the folder scan (`class_dirs`, `held_out_size`), shared with
clip folders (harness/data/video.py); no torch.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from harness.data.checks import check_decoded, held_out, only_keys
from harness.data.info import DataInfo
from harness.errors import StudyError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")  # torchvision's
IMAGEFOLDER_DEFAULTS = {"channels": 3, "test_fraction": 0.2, "max_memory_mb": 4096, "workers": 2}
SPLIT_SEED = 0  # the per-class shuffle that picks test_fraction of each class as the test split


@dataclass(frozen=True)
class FolderScan:
    classes: tuple[str, ...]
    train: tuple[tuple[str, int], ...]  # (path, label), sorted by class then path; a flat folder: every image
    test: tuple[tuple[str, int], ...]  # the test/ or val/ folder's; a flat folder: () (held out when read)
    layout: str  # "train/test", "train/val" or "flat"
    fingerprint: str  # 12 hex of sha256 over (relative path, bytes) of every image
    held_out: int = 0  # a flat folder: how many of `train` are test images (readers.folder_splits picks them)

    @property
    def sizes(self) -> tuple[int, int]:
        """(training, test) images once a flat folder's test images are held out."""
        return len(self.train) - self.held_out, len(self.test) + self.held_out


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
        *scan.sizes,
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
        train, test = _images_by_class(root, classes), []
        layout = "flat"
    digest = hashlib.sha256()
    for path, _ in sorted(train + test):
        digest.update(f"{os.path.relpath(path, root)}\t{os.path.getsize(path)}\n".encode())
    held = held_out_size(train, classes, test_fraction) if layout == "flat" else 0
    return FolderScan(tuple(classes), tuple(train), tuple(test), layout, digest.hexdigest()[:12], held)


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


def held_out_size(items: list[tuple[str, int]], classes: list[str], test_fraction: float) -> int:
    """How many of a flat folder's (path, label) items are test items: `checks.held_out` of each
    class (the readers' `split_by_class` picks which). A class needs at least 2 items."""
    counts = Counter(label for _, label in items)
    for c, name in enumerate(classes):
        if counts[c] < 2:
            raise StudyError(
                f"class {name} has {counts[c]} image; test_fraction needs at least 2 per class",
                key="dataset.root",
                fix="add images, or give train/ and test/ folders",
            )
    return sum(held_out(counts[c], test_fraction) for c in range(len(classes)))
