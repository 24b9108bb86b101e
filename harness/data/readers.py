"""The readers: a described dataset's files as uint8 tensors (torch from here on; describing a dataset
needs none of this, see harness/data/__init__.py).

    builtin      read_idx, read_fashion (IDX), read_cifar (the pickled batches), make_synthetic
    imagefolder  ImageFiles (decoded per batch), decode_image, load_imagefolder; split_by_class
    streams      TarMembers (WebDataset, read by offset), HFRows (Hugging Face rows), load_splits;
                 split_rows
A dataset without a test split of its own holds test_fraction of each class out: `split_by_class`
(folders) and `split_rows` (streams) pick which items with a fixed-seed shuffle per class; how many
is `checks.held_out`, which `describe` counted the split sizes with.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import tarfile
from pathlib import Path
from typing import IO

import numpy as np
import torch
import torch.nn.functional as F

from harness.data.batches import STATS_SAMPLE, channel_stats, decode_all
from harness.data.builtin import CIFAR_FILES, FASHION_FILES
from harness.data.checks import held_out
from harness.data.hf import image_column
from harness.data.imagefolder import IMAGEFOLDER_DEFAULTS, SPLIT_SEED, scan_imagefolder
from harness.data.info import DataInfo
from harness.data.shards import ShardIndex
from harness.data.splits import Dataset, Split, subset
from harness.data.streams import Labels
from harness.errors import StudyError

# ----------------------------------------------------------------------------- Fashion-MNIST, CIFAR-10, synthetic


def read_idx(path: Path) -> torch.Tensor:
    """IDX format (LeCun): magic 0x0000 0x08 ndim, then ndim big-endian int32 dims, then uint8 data."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">i4", count=ndim, offset=4)
    arr = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)
    t = torch.from_numpy(arr.copy())
    return t.unsqueeze(1) if ndim == 3 else t.long()  # images -> [N, 1, H, W]; labels -> int64


def read_fashion(root: Path) -> tuple[Split, Split]:
    """(train, test) from the four IDX files in `root`."""
    train = Split(read_idx(root / FASHION_FILES["train_images"]), read_idx(root / FASHION_FILES["train_labels"]))
    test = Split(read_idx(root / FASHION_FILES["test_images"]), read_idx(root / FASHION_FILES["test_labels"]))
    return train, test


def read_cifar(root: Path) -> tuple[Split, Split]:
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


def make_synthetic(cfg: dict) -> tuple[Split, Split]:
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


# ----------------------------------------------------------------------------- ImageFolder


def split_by_class(items: list[tuple[str, int]], classes: list[str], test_fraction: float) -> tuple[list, list]:
    """Per class, a fixed-seed shuffle; its first `checks.held_out` images are test."""
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
        held = set(order[: held_out(len(members), test_fraction)])
        test.extend(m for j, m in enumerate(members) if j in held)
        train.extend(m for j, m in enumerate(members) if j not in held)
    return train, test


def folder_splits(scan: object, test_fraction: float) -> tuple[list, list]:
    """(train, test) items of a folder scan (`imagefolder.FolderScan`, `video.ClipScan`): its own
    test/ or val/ folder, or a flat folder's test_fraction of each class held out."""
    if scan.layout != "flat":  # type: ignore[attr-defined]
        return list(scan.train), list(scan.test)  # type: ignore[attr-defined]
    return split_by_class(list(scan.train), list(scan.classes), test_fraction)  # type: ignore[attr-defined]


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
    tf = float(cfg.get("test_fraction", IMAGEFOLDER_DEFAULTS["test_fraction"]))

    def files(items: list[tuple[str, int]]) -> Split:
        return Split(
            ImageFiles([p for p, _ in items], info.native_size, info.in_chans, src["workers"]),
            torch.tensor([c for _, c in items], dtype=torch.long),
        )

    train, test = (files(items) for items in folder_splits(scan_imagefolder(src["root"], tf), tf))
    need_mb = (len(train) + len(test)) * info.in_chans * info.native_size**2 / 2**20
    if need_mb <= src["max_memory_mb"]:
        train, test = decode_all(train), decode_all(test)
    mean, std = channel_stats(subset(train, STATS_SAMPLE, seed=0))
    return Dataset(info, train, test, mean, std)


# ----------------------------------------------------------------------------- WebDataset and Hugging Face


def _held_out(labels: np.ndarray, test_fraction: float) -> np.ndarray:
    """Boolean mask of the test samples when a dataset has no test split of its own: per class a
    fixed-seed shuffle (data.SPLIT_SEED, as for a flat ImageFolder) and its first `checks.held_out`
    samples."""
    mask = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if len(members) < 2:
            raise StudyError(
                f"class {c} has {len(members)} sample; test_fraction needs at least 2 per class",
                key="dataset.test_fraction",
                fix="give a test split (test_urls / test_split) or more samples",
            )
        g = torch.Generator().manual_seed(SPLIT_SEED * 1_000_003 + int(c))
        order = torch.randperm(len(members), generator=g).numpy()
        mask[members[order[: held_out(len(members), test_fraction)]]] = True
    return mask


def split_rows(labels: Labels, has_test: bool, test_fraction: float) -> tuple[np.ndarray, ...]:
    """(train rows, their labels, test rows, their labels): rows index the training source unless
    the dataset has its own test split, whose rows are then all its samples."""
    if has_test:
        return np.arange(len(labels.train)), labels.train, np.arange(len(labels.test)), labels.test
    held = _held_out(labels.train, test_fraction)
    train_rows, test_rows = np.flatnonzero(~held), np.flatnonzero(held)
    return train_rows, labels.train[train_rows], test_rows, labels.train[test_rows]


def load_splits(info: DataInfo, train: Split, test: Split) -> Dataset:
    """In memory if both splits fit max_memory_mb, else streamed; mean/std from a fixed subset."""
    need_mb = (len(train) + len(test)) * info.in_chans * info.native_size**2 / 2**20
    if need_mb <= info.source["max_memory_mb"]:
        train, test = decode_all(train), decode_all(test)
    mean, std = channel_stats(subset(train, STATS_SAMPLE, seed=0))
    return Dataset(info, train, test, mean, std)


_FDS: dict[str, int] = {}  # shard path -> file descriptor, per process (os.pread: no shared file offset)


class TarMembers(torch.utils.data.Dataset):
    """Image members of tar shards, read by offset and decoded on demand to uint8 [C, S, S]."""

    def __init__(self, index: ShardIndex, rows: np.ndarray, image_size: int, channels: int, workers: int) -> None:
        self.index, self.rows = index, np.asarray(rows, dtype=np.int64)
        self.image_size, self.channels, self.workers = image_size, channels, workers

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> torch.Tensor:
        r = self.rows[i]
        path = self.index.shards[self.index.shard[r]]
        fd = _FDS.get(path)
        if fd is None:
            fd = _FDS[path] = os.open(path, os.O_RDONLY)
        raw = os.pread(fd, int(self.index.size[r]), int(self.index.offset[r]))
        try:
            return decode_image(io.BytesIO(raw), self.image_size, self.channels)
        except Exception as e:  # noqa: BLE001 - PIL's "cannot identify image file <_io.BytesIO ...>" names neither shard nor key
            member = _member_name(fd, int(self.index.offset[r]))
            raise ValueError(
                f"webdataset member {member} in {path} is not a readable image ({type(e).__name__}: "
                f"{str(e).split(' <')[0]}); fix the shard, or set dataset.image_key to the member that holds the image"
            ) from None

    def take(self, idx: torch.Tensor) -> TarMembers:
        return TarMembers(self.index, self.rows[idx.numpy()], self.image_size, self.channels, self.workers)


def _member_name(fd: int, offset_data: int) -> str:
    """The name in the tar header just before a member's data (for messages; '?' if unreadable)."""
    try:
        return tarfile.TarInfo.frombuf(os.pread(fd, tarfile.BLOCKSIZE, offset_data - tarfile.BLOCKSIZE), "utf-8", "replace").name
    except (tarfile.TarError, OSError, ValueError):
        return f"at byte {offset_data}"


def load_webdataset(info: DataInfo) -> Dataset:
    src = info.source
    train_rows, train_y, test_rows, test_y = split_rows(src["labels"], src["test_index"] is not None, src["test_fraction"])

    def split(index: ShardIndex, rows: np.ndarray, labels: np.ndarray) -> Split:
        members = TarMembers(index, np.asarray(rows, dtype=np.int64), info.native_size, info.in_chans, src["workers"])
        return Split(members, torch.as_tensor(labels, dtype=torch.long))

    test_index = src["train_index"] if src["test_index"] is None else src["test_index"]  # no test shards: held-out rows
    return load_splits(info, split(src["train_index"], train_rows, train_y), split(test_index, test_rows, test_y))


class HFRows(torch.utils.data.Dataset):
    """Rows of a Hugging Face split, their image decoded on demand to uint8 [C, S, S]. Pickles as
    (table, rows): each DataLoader worker opens the memory-mapped Arrow files itself."""

    def __init__(self, table: tuple, image_key: str, rows: np.ndarray, image_size: int, channels: int, workers: int) -> None:
        self.table, self.image_key, self.rows = table, image_key, np.asarray(rows, dtype=np.int64)
        self.image_size, self.channels, self.workers = image_size, channels, workers

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> torch.Tensor:
        value = image_column(*self.table, self.image_key)[int(self.rows[i])][self.image_key]
        src = io.BytesIO(value["bytes"]) if value.get("bytes") is not None else value["path"]
        return decode_image(src, self.image_size, self.channels)

    def take(self, idx: torch.Tensor) -> HFRows:
        return HFRows(self.table, self.image_key, self.rows[idx.numpy()], self.image_size, self.channels, self.workers)


def load_hf(info: DataInfo) -> Dataset:
    src = info.source
    train_rows, train_y, test_rows, test_y = split_rows(src["labels"], src["has_test"], src["test_fraction"])

    def split(table: tuple, rows: np.ndarray, labels: np.ndarray) -> Split:
        images = HFRows(tuple(table), src["image_key"], np.asarray(rows), info.native_size, info.in_chans, src["workers"])
        return Split(images, torch.as_tensor(labels, dtype=torch.long))

    return load_splits(info, split(src["train_table"], train_rows, train_y), split(src["test_table"], test_rows, test_y))
