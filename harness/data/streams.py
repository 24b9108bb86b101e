"""Sharded and Hugging Face datasets read sample by sample: WebDataset tar shards and `datasets` on disk.

    dataset: {name: webdataset, urls: "shards/train-{000..009}.tar", test_urls: "shards/val-{00..01}.tar",
              image_key: jpg|png, label_key: cls, image_size: 64}
    dataset: {name: hf, path: ~/data/imagenet-1k, split: train, test_split: validation, image_size: 64}

One indexing pass lists every sample of a split, in a fixed order, with its label: for WebDataset
the shard, byte offset and size of the image member (tar headers only, grouped into samples by
webdataset's own `group_by_keys`, the rule its loaders use); for Hugging Face the row number. The
splits are then ordinary `data.Split`s whose images are a torch Dataset that reads one sample on
demand (`TarMembers`: one `os.pread` at the recorded offset; `HFRows`: one Arrow row), so the
index-based `data.subset` and `data.split_validation` apply unchanged (deterministic, nested,
the validation split disjoint from every subset) and DataLoader workers decode batches ahead of
the training step exactly as for a streamed ImageFolder (`data.BatchFetcher`). A split that fits
`max_memory_mb` is decoded once into memory instead; both paths give the same batches.

Identity vs location: a trial's id hashes what the data is (a fingerprint over the index: member
names, sizes and labels; decode size, channels, keys), never where it lives (`urls`, `path`,
`cache_dir`) or how it is read (`max_memory_mb`, `workers`), so moving the shards re-runs nothing.

Shards must be local, uncompressed tar files (random access by offset); the WebDataset index is
cached on disk per (shard paths, sizes, mtimes, keys) under $HARNESS_CACHE (default
~/.cache/harness), so a re-run does not rescan the shards.

Here, shards.py and hf.py: the configs, the index, the labels and the split sizes (no torch); the
torch Datasets (`TarMembers`, `HFRows`) and the held-out test rows (`split_rows`) are in
harness/data/readers.py.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.data.checks import check_decoded, held_out
from harness.errors import StudyError

COMMON_DEFAULTS = {"channels": 3, "test_fraction": 0.2, "max_memory_mb": 4096, "workers": 2}


def require(module: str, extra: str) -> Any:
    """Import an optional package or say which extra installs it (harness.extras.require, keyed to dataset.name)."""
    from harness.extras import require as _require

    return _require(module, extra, key="dataset.name")


# ----------------------------------------------------------------------------- shared checks


def check_common(cfg: dict, defaults: dict, example: str) -> dict:
    full = check_decoded(cfg, defaults, example=example)
    nc = full.get("num_classes")
    if nc is not None and (not isinstance(nc, int) or isinstance(nc, bool) or nc < 2):
        raise StudyError(
            f"dataset.num_classes must be an integer >= 2, got {nc!r}",
            key="dataset.num_classes",
            fix="give the number of classes, or leave it out to count them",
        )
    for key in ("image_key", "label_key"):
        if not isinstance(full[key], str) or not full[key]:
            raise StudyError(f"dataset.{key} must be a name, got {full[key]!r}", key=f"dataset.{key}", fix="e.g. cls")
    return full


@dataclass(frozen=True)
class Labels:
    train: np.ndarray  # int64 class ids
    test: np.ndarray
    num_classes: int
    names: tuple[str, ...]  # class names where the labels are names (else empty)


def _as_ints(values: np.ndarray | list) -> np.ndarray | None:
    """The labels as int64 if every one is an integer or integer text, else None (vectorised:
    ImageNet's 1.28M labels are parsed at every describe)."""
    arr = np.asarray(values) if len(values) else np.zeros(0, dtype=np.int64)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    if arr.dtype.kind != "U":
        return None
    try:
        return np.char.strip(arr).astype(np.int64)
    except ValueError:
        return None


def class_ids(train: np.ndarray | list, test: np.ndarray | list, num_classes: int | None, where: str) -> Labels:
    """Integer labels stay as they are (ImageNet's `cls` 0..999); text labels become the index
    of their name among the sorted training names. num_classes: given, or max id + 1."""

    parts = [np.asarray(x) for x in (train, test) if len(x)]
    ids = _as_ints(np.concatenate(parts) if len(parts) > 1 else parts[0] if parts else [])
    if ids is not None:
        if len(ids) and ids.min() < 0:
            raise StudyError(
                f"{where} has negative labels ({int(ids.min())}: unlabelled samples, as in ImageNet's test split)",
                key="dataset.label_key",
                fix="use a labelled split for testing (e.g. test_split: validation, or test_urls: the validation shards)",
            )
        found = int(ids.max()) + 1 if len(ids) else 0
        if num_classes is not None and num_classes < found:
            raise StudyError(
                f"{where} has label {found - 1}, beyond num_classes {num_classes}",
                key="dataset.num_classes",
                fix=f"set num_classes: {found} or more, or leave it out",
            )
        n, names = num_classes or found, ()
    else:
        names = tuple(sorted({str(v).strip() for v in train}))
        lookup = {c: i for i, c in enumerate(names)}
        unknown = sorted({str(v).strip() for v in test} - set(names))
        if unknown:
            raise StudyError(
                f"{where}: test labels {', '.join(unknown[:5])} never occur in the training split",
                key="dataset.label_key",
                fix="use matching splits, or integer labels",
            )
        if num_classes is not None and num_classes != len(names):
            raise StudyError(
                f"{where} has {len(names)} class names, num_classes says {num_classes}",
                key="dataset.num_classes",
                fix=f"set num_classes: {len(names)} or leave it out",
            )
        ids = np.asarray([lookup[str(v).strip()] for v in [*train, *test]], dtype=np.int64)
        n = len(names)
    if n < 2:
        raise StudyError(
            f"{where} has {n} class; a classification dataset needs at least 2",
            key="dataset.label_key",
            fix="check label_key names the label field",
        )
    return Labels(ids[: len(train)], ids[len(train) :], n, names)


def split_sizes(labels: Labels, has_test: bool, test_fraction: float) -> tuple[int, int]:
    """(training, test) samples: a dataset's own test split, or `checks.held_out` of each class of the
    training source (the readers' `split_rows` picks which). A class needs at least 2 samples then."""
    if has_test:
        return len(labels.train), len(labels.test)
    classes, counts = np.unique(labels.train, return_counts=True)
    for c, n in zip(classes, counts):
        if n < 2:
            raise StudyError(
                f"class {c} has {n} sample; test_fraction needs at least 2 per class",
                key="dataset.test_fraction",
                fix="give a test split (test_urls / test_split) or more samples",
            )
    test = sum(held_out(int(n), test_fraction) for n in counts)
    return len(labels.train) - test, test


def files_digest(paths: list[str], root: str) -> hashlib._Hash:
    """sha256 over (path relative to root, size) of each file: what the data is, not where it lives."""
    digest = hashlib.sha256()
    for p in sorted(paths):
        digest.update(f"{os.path.relpath(p, root)}\t{os.path.getsize(p)}\n".encode())
    return digest


def check_fingerprint(cfg: dict, found: str, where: str, key: str) -> None:
    if "fingerprint" in cfg and cfg["fingerprint"] != found:
        raise StudyError(
            f"the data at {where} changed since this study was planned (fingerprint {found}, expected {cfg['fingerprint']})",
            key=key,
            fix="restore the data, or run the study again under a new name (its trial ids change)",
        )


def cache_dir() -> Path:
    return Path(os.environ.get("HARNESS_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache") / "harness").expanduser()
