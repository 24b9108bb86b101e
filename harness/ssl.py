"""Self-supervised pretraining: SimCLR (Chen et al. 2020, "A Simple Framework for Contrastive
Learning of Visual Representations", arXiv:2002.05709).

`train: {objective: simclr}` trains the backbone with no labels: each batch of N images becomes two
augmented views (2N images), the backbone's pooled features go through a projection head (a 2-layer
MLP, as in the paper), and the NT-Xent loss pulls each view towards the other view of the same image
and away from the 2N - 2 others. harness/train.py runs its usual loop (lr schedule, optimizer, step
budget, checkpoints, loss read-back, curve) with this loss swapped in (`SimCLRObjective`, which
harness.trial hands the trainer: `objective(cfg, ...)`); there is no classifier, so
the trial is judged by the probes of its frozen backbone (the study's `eval:` section).

The views are made on the device batch path, like `data.Batcher`'s augmentation: one
`affine_grid`/`grid_sample` per view does random resized crop + horizontal flip + resize, then an
intensity jitter, all drawn from the trial's augmentation generator (deterministic from its seed,
checkpointed with it). The recipe is the paper's CIFAR-10 one adapted to small one-channel images:
crop area 0.2-1 (the paper's 0.08 lower bound leaves a few pixels of a 28 px image), brightness and
contrast jitter (strength 0.4, applied with probability 0.8; + saturation and a 20% grayscale for
RGB: the paper's colour distortion without hue), no Gaussian blur (the paper drops it for CIFAR's
32 px images too).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from harness.data import Batcher
from harness.features import autocast, pooled_features  # SimCLR projects exactly the features the probes read
from harness.train import Objective, Supervised

CROP_SCALE = (0.2, 1.0)  # fraction of the image's area a view covers
CROP_RATIO = (3 / 4, 4 / 3)  # aspect ratio range of the crop (torchvision's RandomResizedCrop)
JITTER_P = 0.8  # probability an image's intensities are jittered (the paper's colour jitter p)
JITTER = 0.4  # brightness/contrast (and saturation) factors drawn from [1 - 0.4, 1 + 0.4]
GRAYSCALE_P = 0.2  # RGB only
LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2, as torchvision's rgb_to_grayscale


# ----------------------------------------------------------------------------- views


def two_views(images: torch.Tensor, batcher: Any, generator: torch.Generator | None) -> torch.Tensor:
    """uint8 [N, C, H, W] -> the two augmented, normalised views stacked as [2N, C, S, S] (view 1 of
    every image, then view 2). `batcher` is the trial's `data.Batcher` (device, size, mean/std)."""
    x = images.to(batcher.device, non_blocking=True).float().div_(255)
    views = torch.cat([_view(x, batcher.image_size, generator), _view(x, batcher.image_size, generator)])
    return (views - batcher.mean) / batcher.std


def _view(x: torch.Tensor, size: int, g: torch.Generator | None) -> torch.Tensor:
    """One random view of each image in [0, 1]: resized crop + flip (one grid_sample), then jitter."""
    n, c = x.shape[:2]
    gd = g.device if g is not None else torch.device("cpu")

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=g, device=gd)

    area = uniform(*CROP_SCALE)
    ratio = torch.exp(uniform(math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1])))
    w, h = torch.sqrt(area * ratio).clamp(max=1.0), torch.sqrt(area / ratio).clamp(max=1.0)  # fractions of the side
    cx, cy = uniform(-1, 1) * (1 - w), uniform(-1, 1) * (1 - h)  # the crop stays inside the image
    flip = torch.where(torch.rand(n, generator=g, device=gd) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3, device=gd)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = w * flip, cx, h, cy
    grid = F.affine_grid(theta.to(x.device), [n, c, size, size], align_corners=False)
    v = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    on = torch.rand(n, generator=g, device=gd) < JITTER_P
    bright = torch.where(on, uniform(1 - JITTER, 1 + JITTER), 1.0).to(x.device).view(n, 1, 1, 1)
    contrast = torch.where(on, uniform(1 - JITTER, 1 + JITTER), 1.0).to(x.device).view(n, 1, 1, 1)
    v = (v * bright).clamp(0, 1)
    mean = _gray(v).mean(dim=(1, 2, 3), keepdim=True)
    v = ((v - mean) * contrast + mean).clamp(0, 1)
    if c == 3:  # colour: saturation, then a random grayscale
        sat = torch.where(on, uniform(1 - JITTER, 1 + JITTER), 1.0).to(x.device).view(n, 1, 1, 1)
        v = ((v - _gray(v)) * sat + _gray(v)).clamp(0, 1)
        gray = (torch.rand(n, generator=g, device=gd) < GRAYSCALE_P).to(x.device).view(n, 1, 1, 1)
        v = torch.where(gray, _gray(v).expand_as(v), v)
    return v


def _gray(v: torch.Tensor) -> torch.Tensor:
    if v.shape[1] != 3:
        return v.mean(dim=1, keepdim=True)
    r, g, b = LUMA  # Python floats: no host-to-device copy (a sync on CUDA) per batch
    return v[:, 0:1] * r + v[:, 1:2] * g + v[:, 2:3] * b


# ----------------------------------------------------------------------------- model and loss


class SimCLR(nn.Module):
    """Backbone + projection head (Linear, BatchNorm, ReLU, Linear: the paper's 2-layer MLP, hidden
    width = feature width). The backbone's own classifier is left untouched (it gets no gradient)."""

    def __init__(self, backbone: nn.Module, proj_dim: int, in_chans: int, image_size: int) -> None:
        super().__init__()
        self.backbone = backbone
        was_training = backbone.training
        backbone.eval()  # the probe forward must not move BatchNorm statistics
        with torch.no_grad():
            d = pooled_features(backbone, torch.zeros(2, in_chans, image_size, image_size)).shape[1]
        backbone.train(was_training)
        self.head = nn.Sequential(nn.Linear(d, d), nn.BatchNorm1d(d), nn.ReLU(inplace=True), nn.Linear(d, proj_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(pooled_features(self.backbone, x))


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """Normalized temperature-scaled cross entropy over the 2N views (the paper's eq. 1, averaged
    over all 2N anchors): for anchor i, its positive is the other view of the same image, the
    candidates are every view but i itself, similarity is cosine / temperature."""
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    sim = z @ z.T / temperature
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(self_mask, -math.inf)  # an anchor is not its own candidate
    positive = torch.arange(2 * n, device=z.device).roll(n)  # view i's positive: i + N (mod 2N)
    return F.cross_entropy(sim, positive)


# ----------------------------------------------------------------------------- the objective


@dataclass(frozen=True)
class SimCLRObjective:
    """SimCLR as the trainer's objective (harness.train.Objective): the network is the backbone +
    projection head, a step's loss is NT-Xent on the projections of two views of each image (labels
    unused). No classifier: the trainer evaluates no accuracy (NaN), the study's probes do."""

    temperature: float
    proj_dim: int
    in_chans: int
    image_size: int
    classifies: bool = False

    def network(self, model: nn.Module) -> nn.Module:
        return SimCLR(model, self.proj_dim, self.in_chans, self.image_size)

    def loss(
        self, net: nn.Module, images: torch.Tensor, labels: torch.Tensor, batcher: Batcher, generator: torch.Generator
    ) -> torch.Tensor:
        x = two_views(images, batcher, generator)
        with autocast(batcher.device):
            z = net(x).float()
        return nt_xent(*z.chunk(2), self.temperature)


def objective(cfg: dict, in_chans: int, image_size: int) -> Objective:
    """The trainer's objective for a trial's train config: supervised cross-entropy or SimCLR."""
    if cfg.get("objective", "supervised") == "simclr":
        return SimCLRObjective(cfg["temperature"], cfg["proj_dim"], in_chans, image_size)
    return Supervised(cfg["label_smoothing"])
