"""The batch path: `Batcher` (uint8 -> normalised float at the trial's resolution, with
augmentation), `EpochSampler`, and the two ways batches leave a split, in memory or streamed
through DataLoader workers (`BatchFetcher`, `eval_batches`). `channel_stats` and `decode_all`
read a split through `eval_batches`, so in-memory and streamed splits give the same numbers.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator

import torch
import torch.nn.functional as F

from harness.data.splits import Dataset, Split

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
        # (rank, world) of a data-parallel trial: augmentation draws for the whole global batch and
        # keeps this rank's rows, so N ranks augment exactly as one worker does (harness.distributed)
        self.share = (0, 1)

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
        rank, world = self.share
        n = x.shape[0] // repeat * world  # draws for the global batch (one worker: this batch)
        gd = g.device if g is not None else torch.device("cpu")
        theta = torch.zeros(n, 2, 3, device=gd)
        flip = torch.where(torch.rand(n, generator=g, device=gd) < 0.5, -1.0, 1.0)
        theta[:, 0, 0], theta[:, 1, 1] = flip, 1.0
        if self.augment == "flip_shift":
            # grid units: 2 / native per pixel; integer shifts keep the pixels sharp
            shift = torch.randint(-2, 3, (n, 2), generator=g, device=gd).float() * 2 / self.native
            theta[:, :, 2] = shift
        if world > 1:
            theta = theta[rank * n // world : (rank + 1) * n // world]
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


STATS_SAMPLE = 5000  # training images the ImageFolder mean/std come from (a fixed stratified subset)


def decode_all(split: Split) -> Split:
    """Every image of a streamed split, decoded once (by the DataLoader workers) into one uint8 tensor."""
    files = split.images
    out = torch.empty(len(files), files.channels, files.image_size, files.image_size, dtype=torch.uint8)
    pos = 0
    for images, _ in eval_batches(split, 256):
        out[pos : pos + len(images)] = images
        pos += len(images)
    return Split(out, split.labels)


def channel_stats(split: Split) -> tuple[tuple[float, ...], tuple[float, ...]]:
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
