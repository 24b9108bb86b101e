"""Video datasets: clips held in memory as uint8 `[N, F, C, H, W]` (frame-major), labels int64 `[N]`.

`moving_fashion_mnist`: Fashion-MNIST items (28x28) moving with constant velocity on a canvas; the
label is the direction of motion (`label: direction`, 8 or 4 directions) or direction x item class
(`label: direction_class`, 80 or 40 labels). Generated deterministically from the IDX files and the
config's `seed` (part of the dataset's identity, so of every trial id), vectorised, in a few seconds
per 10k clips; cached per process by `data.load`, not on disk.

Why the canvas is a torus (an item leaving on the right re-enters on the left): with constant
velocity and no wrap, an item that must stay on the canvas for all F frames starts on the side it
moves away from (moving right over 30 px of a 36 px range, it starts in the leftmost 6 px), so one
frame's position gives the direction away. On a torus the start is uniform over every position and
every frame is an item at a uniform position, whatever the direction: a single frame carries no
information about the label, exactly (tests/test_video_data.py measures it). The price is an item
cut at one edge and continued at the opposite one; `gutter: G` adds G hidden columns/rows to the
torus, so an item passes behind the edge instead (G >= 28: never visible at two edges at once).
No bounce: a bounce changes the direction, i.e. the label, mid-clip.

`clipfolder`: a class-per-folder tree of short clips, each a video file (decoded with PyAV; the
video functions of torchvision.io were removed in torchvision 0.24) or a folder of frame images,
F frames sampled at the centres of F equal segments, each frame resized (shorter side) and centre
cropped to `image_size`, decoded once into memory.

Here: the configs and the clip folder scan (no torch); the clips themselves are rendered and decoded
by harness/data/clips.py.
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from harness.data.builtin import find_fashion
from harness.data.checks import check_channels_and_test_fraction, only_keys
from harness.data.imagefolder import IMAGE_EXTENSIONS, class_dirs, held_out_size
from harness.data.info import DataInfo
from harness.errors import StudyError

ITEM = 28  # Fashion-MNIST image side
MOVING_DEFAULTS = {
    "frames": 16,
    "canvas": 64,
    "label": "direction",
    "directions": 8,
    "speed": 2,  # pixels per frame along each moving axis (a diagonal step moves speed*sqrt(2))
    "gutter": 0,
    "seed": 0,
    # 10k x 16 x 64 x 64 bytes = 655 MB (+131 MB test): the full 60k would be 3.9 GB
    "train_size": 10000,
    "test_size": 2000,
}
LABELS = ("direction", "direction_class")
# (dy, dx) per direction, counter-clockwise from "right" (image rows grow downwards)
STEPS = {
    8: ((0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1), (1, 0), (1, 1)),
    4: ((0, 1), (-1, 0), (0, -1), (1, 0)),
}
DIRECTION_NAMES = {8: ("E", "NE", "N", "NW", "W", "SW", "S", "SE"), 4: ("E", "N", "W", "S")}


def describe(cfg: dict) -> DataInfo:
    return DESCRIBERS[cfg["name"]](cfg)


# ----------------------------------------------------------------------------- Moving-Fashion-MNIST


def _describe_moving(cfg: dict) -> DataInfo:
    only_keys(cfg, {"name", "root", "download", *MOVING_DEFAULTS})
    full = {**MOVING_DEFAULTS, **cfg}
    for k in ("frames", "canvas", "directions", "speed", "gutter", "seed", "train_size", "test_size"):
        v = full[k]
        if not isinstance(v, int) or isinstance(v, bool) or v < (0 if k in ("seed", "gutter") else 1):
            raise StudyError(
                f"dataset.{k} must be a {'non-negative' if k in ('seed', 'gutter') else 'positive'} integer, got {v!r}",
                key=f"dataset.{k}",
                fix=f"use a whole number (default {MOVING_DEFAULTS[k]})",
            )
    if full["label"] not in LABELS:
        raise StudyError(
            f"dataset.label must be one of {', '.join(LABELS)}, got {full['label']!r}",
            key="dataset.label",
            fix="label: direction (the motion alone) or label: direction_class (direction x item class)",
        )
    if full["directions"] not in STEPS:
        raise StudyError(
            f"dataset.directions must be 8 or 4, got {full['directions']!r}",
            key="dataset.directions",
            fix="directions: 8 (with diagonals) or directions: 4",
        )
    if full["frames"] < 2:
        raise StudyError(
            f"dataset.frames is {full['frames']}; motion needs at least 2 frames",
            key="dataset.frames",
            fix="e.g. frames: 16 (a grid's frames axis may still take 1 of them, for a single-frame baseline)",
        )
    if full["canvas"] < ITEM:
        raise StudyError(
            f"dataset.canvas {full['canvas']} is smaller than a Fashion-MNIST item ({ITEM} px)",
            key="dataset.canvas",
            fix="use canvas: 64 (the grid's image_size resizes it)",
        )
    torus = full["canvas"] + full["gutter"]
    if 2 * full["speed"] >= torus:  # a step of half the torus or more reads as the opposite direction
        raise StudyError(
            f"dataset.speed {full['speed']} is at least half the canvas + gutter ({torus} px): the motion aliases",
            key="dataset.speed",
            fix=f"use a speed below {torus // 2} (frame_stride multiplies it too), e.g. speed: 2",
        )
    root = find_fashion(cfg)  # root/download: where the IDX files are, not what the clips are
    classes = full["directions"] * (10 if full["label"] == "direction_class" else 1)
    config = {"name": "moving_fashion_mnist", **{k: full[k] for k in sorted(MOVING_DEFAULTS)}}
    return DataInfo(
        "moving_fashion_mnist",
        classes,
        1,
        full["canvas"],
        full["train_size"],
        full["test_size"],
        config=config,
        source={"root": str(root)},
        frames=full["frames"],
    )


# ----------------------------------------------------------------------------- clip folders

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg")
CLIPFOLDER_DEFAULTS = {"channels": 3, "test_fraction": 0.2, "max_memory_mb": 4096}


@dataclass(frozen=True)
class ClipScan:
    classes: tuple[str, ...]
    train: tuple[tuple[str, int], ...]  # (video file or frame folder, label); a flat folder: every clip
    test: tuple[tuple[str, int], ...]  # the test/ or val/ folder's; a flat folder: () (held out when read)
    layout: str  # "train/test", "train/val" or "flat"
    fingerprint: str  # 12 hex of sha256 over (relative path, size) of every file a clip is made of
    held_out: int = 0  # a flat folder: how many of `train` are test clips (readers.folder_splits picks them)

    @property
    def sizes(self) -> tuple[int, int]:
        """(training, test) clips once a flat folder's test clips are held out."""
        return len(self.train) - self.held_out, len(self.test) + self.held_out


def _describe_clipfolder(cfg: dict) -> DataInfo:
    only_keys(cfg, {"name", "root", "frames", "image_size", "fingerprint", *CLIPFOLDER_DEFAULTS})
    example = "e.g. dataset: {name: clipfolder, root: ~/data/clips, frames: 16, image_size: 64}"
    if not cfg.get("root"):
        raise StudyError("a clipfolder dataset needs its root directory", key="dataset.root", fix=example)
    root = Path(cfg["root"]).expanduser().resolve()
    if not root.is_dir():
        raise StudyError(
            f"clipfolder root {root} is not a directory",
            key="dataset.root",
            fix="point dataset.root at a directory with one sub-folder per class, holding video files "
            f"({', '.join(VIDEO_EXTENSIONS[:3])}, ...) or one folder of frame images per clip",
        )
    for key in ("frames", "image_size"):
        if key not in cfg:
            what = "the frames sampled from each clip" if key == "frames" else "the size frames are decoded to"
            raise StudyError(f"a clipfolder dataset needs {key}, {what}", key=f"dataset.{key}", fix=example)
    full = {**CLIPFOLDER_DEFAULTS, **cfg}
    for key in ("frames", "image_size", "max_memory_mb"):
        v = full[key]
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise StudyError(
                f"dataset.{key} must be a positive integer, got {v!r}", key=f"dataset.{key}", fix="use a whole number"
            )
    check_channels_and_test_fraction(full)
    tf = full["test_fraction"]
    scan = scan_clipfolder(str(root), float(tf))
    if scan.layout != "flat" and "test_fraction" in cfg:
        raise StudyError(
            f"{root} has its own {scan.layout} split, so test_fraction does not apply",
            key="dataset.test_fraction",
            fix="remove test_fraction (or use a folder of class folders)",
        )
    if "fingerprint" in cfg and cfg["fingerprint"] != scan.fingerprint:
        raise StudyError(
            f"the clips in {root} changed since this study was planned (fingerprint {scan.fingerprint}, expected {cfg['fingerprint']})",
            key="dataset.root",
            fix="restore the folder, or run the study again under a new name (its trial ids change)",
        )
    n = len(scan.train) + len(scan.test)
    need_mb = n * full["frames"] * full["channels"] * full["image_size"] ** 2 / 2**20
    if need_mb > full["max_memory_mb"]:
        raise StudyError(
            f"{n} clips of {full['frames']} x {full['channels']} x {full['image_size']}^2 bytes take {need_mb:.0f} MB in "
            f"memory, over dataset.max_memory_mb {full['max_memory_mb']}",
            key="dataset.max_memory_mb",
            fix="use fewer frames or a smaller image_size, or raise max_memory_mb (clips are decoded into memory)",
        )
    # hashed like imagefolder: what the clips are (fingerprint, decode shape, split) and where they live
    config = {
        "name": "clipfolder",
        "root": str(root),
        "frames": full["frames"],
        "image_size": full["image_size"],
        "channels": full["channels"],
        **({"test_fraction": float(tf)} if scan.layout == "flat" else {}),
        "fingerprint": scan.fingerprint,
    }
    return DataInfo(
        "clipfolder",
        len(scan.classes),
        full["channels"],
        full["image_size"],
        *scan.sizes,
        config=config,
        source={"root": str(root), "layout": scan.layout, "classes": list(scan.classes)},
        frames=full["frames"],
    )


@functools.lru_cache(maxsize=8)
def scan_clipfolder(root_str: str, test_fraction: float) -> ClipScan:
    """Classes: sorted sub-folder names. A clip: a video file, or a folder holding frame images."""
    root = Path(root_str)
    held_out = next((d for d in ("test", "val") if (root / d).is_dir()), None)
    if (root / "train").is_dir() and held_out:
        classes = class_dirs(root / "train")
        train = _clips_by_class(root / "train", classes)
        test_classes = class_dirs(root / held_out)
        unknown = sorted(set(test_classes) - set(classes))
        if unknown:
            raise StudyError(
                f"{root / held_out} has classes that train/ lacks: {', '.join(unknown[:5])}",
                key="dataset.root",
                fix="give every test class a train/ folder of the same name",
            )
        test = _clips_by_class(root / held_out, test_classes, labels={c: classes.index(c) for c in test_classes})
        layout = f"train/{held_out}"
    else:
        classes = class_dirs(root)
        train, test = _clips_by_class(root, classes), []
        layout = "flat"
    digest = hashlib.sha256()
    for clip, _ in sorted(train + test):
        for f in clip_files(clip):
            digest.update(f"{os.path.relpath(f, root)}\t{os.path.getsize(f)}\n".encode())
    held = held_out_size(train, classes, test_fraction) if layout == "flat" else 0
    for clip, _ in train + test:
        if os.path.isfile(clip):
            _probe_video(clip)
    return ClipScan(tuple(classes), tuple(train), tuple(test), layout, digest.hexdigest()[:12], held)


def _clips_by_class(folder: Path, classes: list[str], labels: dict[str, int] | None = None) -> list[tuple[str, int]]:
    out = []
    for i, name in enumerate(classes):
        found = []
        for d, _, files in os.walk(folder / name, followlinks=True):
            found += [os.path.join(d, f) for f in files if f.lower().endswith(VIDEO_EXTENSIONS)]
            if Path(d) != folder / name and any(f.lower().endswith(IMAGE_EXTENSIONS) for f in files):
                found.append(d)  # a folder of frames
        if not found:
            raise StudyError(
                f"class folder {folder / name} has no clips (video files {', '.join(VIDEO_EXTENSIONS[:4])}, ... "
                "or sub-folders of frame images)",
                key="dataset.root",
                fix="put each clip in the class folder as a video file, or as a folder of its frames (000.png, 001.png, ...)",
            )
        label = labels[name] if labels else i
        out.extend((p, label) for p in sorted(found))
    return out


def clip_files(clip: str) -> list[str]:
    if os.path.isfile(clip):
        return [clip]
    return sorted(os.path.join(clip, f) for f in os.listdir(clip) if f.lower().endswith(IMAGE_EXTENSIONS))


def unreadable(path: str, why: str) -> StudyError:
    return StudyError(
        f"cannot read clip {path}: {why}",
        key="dataset.root",
        fix="re-encode the file (e.g. ffmpeg -i IN -c:v libx264 OUT.mp4) or remove it from the folder",
    )


def _probe_video(path: str) -> None:
    import av  # PyAV: only clipfolder datasets need it

    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise unreadable(path, "it has no video stream")
    except av.FFmpegError as e:
        raise unreadable(path, f"{type(e).__name__}: {e}") from None


def sample_indices(n: int, frames: int) -> list[int]:
    """`frames` indices into n frames, at the centres of `frames` equal segments (repeats when n < frames)."""
    return [(2 * k + 1) * n // (2 * frames) for k in range(frames)]


DESCRIBERS = {"moving_fashion_mnist": _describe_moving, "clipfolder": _describe_clipfolder}
