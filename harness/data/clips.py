"""Video clips as uint8 `[N, F, C, H, W]` tensors: Moving-Fashion-MNIST rendered from the IDX files,
clip folders decoded (PyAV for video files, PIL for frame folders). The configs, the clip folder scan
and why the canvas is a torus are in harness/data/video.py, which needs no torch.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from harness.data.builtin import FASHION_FILES
from harness.data.info import DataInfo
from harness.data.readers import folder_splits, read_idx
from harness.data.splits import Dataset, Split
from harness.data.video import CLIPFOLDER_DEFAULTS, ITEM, STEPS, clip_files, sample_indices, scan_clipfolder, unreadable

STATS_CLIPS = 500  # training clips the per-channel mean/std come from


def load(info: DataInfo) -> Dataset:
    if info.name == "moving_fashion_mnist":
        train, test = make_moving(info.config, Path(info.source["root"]))
    else:
        train, test = _load_clipfolder(info)
    mean, std = clip_stats(train.images[:STATS_CLIPS])
    return Dataset(info, train, test, mean, std)


def clip_stats(clips: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std in [0, 1] units of uint8 [N, F, C, H, W], summed in float64 chunks
    (a float copy of 500 clips of 16 x 64 x 64 would be 131 MB)."""
    c = clips.shape[2]
    total, total_sq, n = torch.zeros(c, dtype=torch.float64), torch.zeros(c, dtype=torch.float64), 0
    for i in range(0, len(clips), 64):
        x = clips[i : i + 64].double().div_(255).transpose(0, 2).reshape(c, -1)  # [C, pixels]
        total += x.sum(1)
        total_sq += (x * x).sum(1)
        n += x.shape[1]
    mean = total / n
    std = ((total_sq - n * mean * mean) / max(1, n - 1)).clamp_min(0).sqrt().clamp_min(1e-3)
    return tuple(mean.tolist()), tuple(std.tolist())


# ----------------------------------------------------------------------------- Moving-Fashion-MNIST


def make_moving(cfg: dict, root: Path) -> tuple[Split, Split]:
    """(train, test): training clips from the Fashion-MNIST training images, test clips from its test images."""
    items = {}
    for part in ("train", "test"):
        images = read_idx(root / FASHION_FILES[f"{part}_images"])[:, 0]  # [M, 28, 28]
        labels = read_idx(root / FASHION_FILES[f"{part}_labels"])
        items[part] = (images, labels)
    return (
        moving_split(*items["train"], cfg["train_size"], cfg, stream=0),
        moving_split(*items["test"], cfg["test_size"], cfg, stream=1),
    )


def moving_split(images: torch.Tensor, classes: torch.Tensor, n: int, cfg: dict, stream: int) -> Split:
    """n clips. Each attribute has its own generator (seed, stream, attribute) and is drawn in clip
    order, so the first k clips do not depend on n (train_size 4000 is a prefix of 10000)."""
    d, frames = cfg["directions"], cfg["frames"]
    torus = cfg["canvas"] + cfg["gutter"]

    def gen(attribute: int) -> torch.Generator:
        return torch.Generator().manual_seed(cfg["seed"] * 1_000_003 + stream * 101 + attribute)

    # balanced directions: each block of d clips holds every direction once, in a random order
    blocks = -(-n // d)
    direction = torch.rand(blocks, d, generator=gen(0)).argsort(dim=1).flatten()[:n]
    # items: a permutation of the source images, repeated when n exceeds them
    perm = torch.randperm(len(images), generator=gen(1))
    item = perm[torch.arange(n) % len(images)]
    start = torch.randint(0, torus, (n, 2), generator=gen(2))  # uniform on the torus: see the module docstring
    step = torch.tensor(STEPS[d]) * cfg["speed"]
    clips = render(images, item, start, step[direction], frames, cfg["canvas"], torus)
    label = direction * 10 + classes[item] if cfg["label"] == "direction_class" else direction
    return Split(clips, label.long())


def render(
    images: torch.Tensor, item: torch.Tensor, start: torch.Tensor, step: torch.Tensor, frames: int, canvas: int, torus: int
) -> torch.Tensor:
    """uint8 [N, F, 1, canvas, canvas]: frame t shows images[item] with its top-left corner at
    (start + t * step) mod torus, wrapped, seen through the canvas window [0, canvas)^2.
    One gather per chunk: canvas pixel (i, j) reads the item padded to torus x torus at
    ((i - y) mod torus, (j - x) mod torus)."""
    n = len(item)
    out = torch.empty(n, frames, 1, canvas, canvas, dtype=torch.uint8)
    t = torch.arange(frames)
    pix = torch.arange(canvas)
    for lo in range(0, n, 256):  # 256 clips x 16 frames x 64 x 64 = 17 MB per chunk
        sl = slice(lo, min(n, lo + 256))
        padded = torch.zeros(sl.stop - sl.start, torus, torus, dtype=torch.uint8)
        padded[:, :ITEM, :ITEM] = images[item[sl]]
        pos = start[sl, None, :] + t[None, :, None] * step[sl, None, :]  # [n, F, 2] (y, x)
        rows = (pix[None, None, :] - pos[:, :, 0:1]) % torus  # [n, F, canvas]
        cols = (pix[None, None, :] - pos[:, :, 1:2]) % torus
        src = torch.arange(len(padded))[:, None, None, None]
        out[sl, :, 0] = padded[src, rows[:, :, :, None], cols[:, :, None, :]]
    return out


# ----------------------------------------------------------------------------- clip folders


def _load_clipfolder(info: DataInfo) -> tuple[Split, Split]:
    tf = float(info.config.get("test_fraction", CLIPFOLDER_DEFAULTS["test_fraction"]))

    def split(items: list[tuple[str, int]]) -> Split:
        clips = torch.empty(len(items), info.frames, info.in_chans, info.native_size, info.native_size, dtype=torch.uint8)
        for i, (clip, _) in enumerate(items):
            clips[i] = decode_clip(clip, info.frames, info.native_size, info.in_chans)
        return Split(clips, torch.tensor([c for _, c in items], dtype=torch.long))

    train, test = folder_splits(scan_clipfolder(info.source["root"], tf), tf)
    return split(train), split(test)


def decode_clip(clip: str, frames: int, size: int, channels: int) -> torch.Tensor:
    """uint8 [frames, channels, size, size] from a video file or a folder of frame images."""
    from PIL import Image

    if not os.path.isdir(clip):
        return torch.stack([_fit(Image.fromarray(a), size, channels) for a in _video_frames(clip, frames)])
    files = clip_files(clip)
    out = []
    for i in sample_indices(len(files), frames):
        try:
            with Image.open(files[i]) as im:
                out.append(_fit(im, size, channels))
        except OSError as e:  # PIL's UnidentifiedImageError is one
            raise unreadable(files[i], f"{type(e).__name__}: {e}") from None
    return torch.stack(out)


def _video_frames(path: str, frames: int) -> list[np.ndarray]:
    import av

    try:
        with av.open(path) as container:
            decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    except av.FFmpegError as e:
        raise unreadable(path, f"{type(e).__name__}: {e}") from None
    if not decoded:
        raise unreadable(path, "no frames decoded")
    return [decoded[i] for i in sample_indices(len(decoded), frames)]


def _fit(im, size: int, channels: int) -> torch.Tensor:
    """Shorter side resized to `size`, centre crop (data.decode_image's rule), as uint8 [C, size, size]."""
    from PIL import Image

    im = im.convert("RGB" if channels == 3 else "L")
    scale = size / min(im.size)
    w, h = max(size, round(im.width * scale)), max(size, round(im.height * scale))
    im = im.resize((w, h), Image.Resampling.BILINEAR)
    left, top = (w - size) // 2, (h - size) // 2
    arr = np.asarray(im.crop((left, top, left + size, top + size)), dtype=np.uint8)
    return torch.from_numpy(arr.reshape(size, size, channels).transpose(2, 0, 1).copy())
