"""A dataset in memory: `Split` (images + labels), `Dataset` (a `DataInfo` with its two splits);
the index-based views of a split: deterministic stratified subsets, the fixed validation split, and
the device-resident copy of an in-memory split (see harness/data/__init__.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from harness.data.info import DataInfo


@dataclass
class Split:
    # uint8 [N, C, H, W] ([N, F, C, H, W] clips), or files decoded per batch (streamed: ImageFiles,
    # TarMembers, HFRows: a torch Dataset of uint8 images with take(idx), image_size, channels, workers)
    images: torch.Tensor | torch.utils.data.Dataset
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


_LAST_VALIDATION: list[tuple[Split, int, tuple[Split, Split]]] = []  # the last split_validation: (split, val_size, answer)


def split_validation(split: Split, val_size: int) -> tuple[Split, Split | None]:
    """(the pool `data_size` subsets are drawn from, the validation split). The validation split is
    stratified (class quotas by largest remainder) and fixed: the last images of one permutation
    per class, drawn with VAL_SEED whatever the trial's seed, so every trial of a study, every
    learning rate and every seed is selected on the same images. The pool is the rest, so no
    subset of it can overlap the validation split. `val_size` 0: (split, None), today's subsets.

    The answer depends only on the split and `val_size`, and the splits are never modified in place:
    the last one is kept and handed to the next call for the same split object (data.load caches the
    dataset, so a process's next trial of the study), instead of copying the whole training set into
    a new pool and validation split for every trial and again for its evals (80 ms a call for
    Fashion-MNIST, 7 s of an 84-trial smoke run)."""
    if not val_size:
        return split, None
    last = _LAST_VALIDATION[0] if _LAST_VALIDATION else None
    if last is not None and last[0] is split and last[1] == val_size:
        return last[2]
    _LAST_VALIDATION.clear()  # the previous pool goes before the new one is made
    answer = _split_validation(split, val_size)
    _LAST_VALIDATION.append((split, val_size, answer))
    return answer


def _split_validation(split: Split, val_size: int) -> tuple[Split, Split]:
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
