"""Evaluations of a trained backbone beyond its own head: a linear probe and few-shot ridge regression.

A study's `eval:` section asks for them; `run_trial` calls `run_evals` after training (or on the
randomly initialised model when `train.steps` is 0: the baseline a pretraining objective is judged
against). Everything is fitted on frozen features, `pooled_features(model, x)`: timm's
`forward_features` + the family's pooling, the classifier head excluded (`forward_head(...,
pre_logits=True)`). The pixel baselines have no timm backbone: for `mlp` the features are the last
hidden layer (everything before the final Linear), for `linear` the (normalised) pixels themselves,
so its probe is a regularised linear classifier on pixels, the floor the others are compared with.

- `linear_probe: true`: multinomial logistic regression (torch L-BFGS, full batch) on standardised
  features of the trial's training subset. The L2 strength comes from PROBE_L2_GRID: chosen on the
  study's validation split when train.val_size > 0, else on a fixed stratified holdout of a fifth
  of the subset (`probe_l2_from` says which); the chosen strength is refitted on the whole subset and
  scored on the test split (train.eval_size honoured).
- `few_shot: [1, 5, 10, 25]`: k images per class, class-balanced, drawn from the training split
  minus the validation split (the pool every data_size subset comes from), not from the trial's
  subset: a k-shot task is then the same for every data size of one seed (comparable across the
  grid) and exists for every k even when the subset is small. Draw d of a trial with seed s uses one
  permutation per class seeded by (s, d); k-shot takes its first k (so 1-shot is inside 5-shot).
  Ridge regression to {-1, 1} one-hot targets in closed form, big_vision's convention
  (big_vision/evaluators/fewshot_lsr.py + configs/common_fewshot.py): features whitened with the
  shots' own mean and std (+1e-5), a constant bias feature of 100 (almost unregularised), l2 2^10.
  Mean and std over `few_shot_draws` draws (default 5) of the test accuracy.
- `datasets: [{name: cifar10, root: ...}]`: the same probes on other datasets at the trial's
  resolution (channels adapted: RGB to grey by ITU-R 601 luminance for a 1-channel model, grey to
  RGB by repetition), columns prefixed `<label>_` (label: the dataset's name unless given). Its
  probe is fitted on a stratified subset of data_size images of its training split (the whole
  split when data_size is 0 or larger), the L2 strength chosen on a holdout.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import time
from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from harness import data
from harness.data import Batcher, Dataset, Split, eval_batches, subset
from harness.errors import StudyError
from harness.features import autocast, pooled_features
from harness.spec.eval_section import FEW_SHOT_DRAWS

FEWSHOT_COLUMNS = (1, 5, 10, 25)  # the k of store.COLUMNS (big_vision's shots); other k are extra columns
PROBE_L2_GRID = (1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)  # on the mean cross-entropy; ties keep the stronger
PROBE_L2_DEFAULT = 1e-3  # when the subset is too small to hold anything out
HOLDOUT_FRACTION = 0.2
PROBE_MAX_ITER = 300  # L-BFGS iterations per fit
FEWSHOT_L2 = 2.0**10  # big_vision configs/common_fewshot.py: l2_reg = 2.0 ** 10
BIAS_CONSTANT = 100.0  # big_vision: a large constant feature stands in for an unregularised bias
EVAL_BATCH = 500
LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2, PIL's "L" conversion
# the schema's probe columns (store.COLUMNS) of a row that was not evaluated, or not for that k
NOT_EVALUATED: dict = {
    "probe_acc": math.nan,
    "probe_l2": math.nan,
    "probe_l2_from": math.nan,  # NA in the string column
    **{f"fewshot_{k}_acc{s}": math.nan for k in FEWSHOT_COLUMNS for s in ("", "_std")},
    "eval_time_s": math.nan,
}


# ----------------------------------------------------------------------------- features


@torch.no_grad()
def extract(model: nn.Module, split: Split, batcher: Batcher, batch_size: int = EVAL_BATCH) -> tuple[torch.Tensor, torch.Tensor]:
    """(float32 features on the batcher's device, labels there): the split in order, through the
    batch path training evaluates with (resize, normalisation), under its autocast."""
    was_training = model.training
    model.eval()
    feats, labels = [], []
    for images, y in eval_batches(split, batch_size):
        with autocast(batcher.device):
            feats.append(pooled_features(model, batcher(images)).float())
        labels.append(y.to(batcher.device))
    model.train(was_training)
    return torch.cat(feats), torch.cat(labels)


# ----------------------------------------------------------------------------- linear probe


def fit_logistic(
    x: torch.Tensor, y: torch.Tensor, num_classes: int, l2: float, init: tuple[torch.Tensor, torch.Tensor] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(W [D, C], b [C]) minimising mean cross-entropy + l2/2 |W|^2 (bias unregularised), full-batch
    L-BFGS from zero or from `init` (the grid is walked strongest first, each fit starting from the
    last one's solution: the problem is convex, so only the iterations change)."""
    if init is None:
        init = (torch.zeros(x.shape[1], num_classes, device=x.device), torch.zeros(num_classes, device=x.device))
    w, b = init[0].clone().requires_grad_(True), init[1].clone().requires_grad_(True)
    opt = torch.optim.LBFGS(
        [w, b],
        lr=1,
        max_iter=PROBE_MAX_ITER,
        history_size=20,
        tolerance_grad=1e-6,
        tolerance_change=1e-9,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(x @ w + b, y) + 0.5 * l2 * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return w.detach(), b.detach()


def _standardise(train: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    mean, std = train.mean(0, keepdim=True), train.std(0, unbiased=False, keepdim=True).clamp_min(1e-6)
    return [(t - mean) / std for t in (train, *others)]


def _accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    return (logits.argmax(1) == y).float().mean().item()


def linear_probe(
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    num_classes: int,
    *,
    val: tuple[torch.Tensor, torch.Tensor] | None = None,
    seed: int = 0,
) -> dict:
    """{probe_acc, probe_l2, probe_l2_from}: L2 chosen on `val` ("val"), else on a stratified holdout
    of `train` ("holdout"; "default" when too small to hold anything out), refitted on all of `train`."""
    (xtr, ytr), (xte, yte) = train, test
    if val is not None:
        fit_x, fit_y, sel_x, sel_y, source = xtr, ytr, val[0], val[1], "val"
    else:
        keep, held = holdout(ytr, seed)
        fit_x, fit_y, sel_x, sel_y, source = xtr[keep], ytr[keep], xtr[held], ytr[held], "holdout"
    fits: dict[float, tuple[torch.Tensor, torch.Tensor]] = {}
    if len(sel_y):
        fx, sx = _standardise(fit_x, sel_x)
        scores, last = [], None
        for l2 in PROBE_L2_GRID:
            last = fits[l2] = fit_logistic(fx, fit_y, num_classes, l2, init=last)
            scores.append((_accuracy(sx @ last[0] + last[1], sel_y), l2))
        best = max(s for s, _ in scores)
        l2 = next(l2 for s, l2 in scores if s == best)  # grid runs strongest first: a tie keeps the stronger
    else:
        l2, source = PROBE_L2_DEFAULT, "default"
    ftr, fte = _standardise(xtr, xte)
    # selected on the validation split: that fit was on the whole subset already; else refit on all of it
    w, b = fits[l2] if source == "val" else fit_logistic(ftr, ytr, num_classes, l2, init=fits.get(l2))
    return {"probe_acc": _accuracy(fte @ w + b, yte), "probe_l2": l2, "probe_l2_from": source}


def holdout(labels: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(kept, held-out) indices: per class a seeded permutation, its first round(0.2 n) held out
    (at most n - 1, so every class stays in the fit)."""
    keep, held = [], []
    cpu = labels.cpu()
    for cls in torch.unique(cpu).tolist():
        members = torch.nonzero(cpu == cls).flatten()
        g = torch.Generator().manual_seed(seed * 1_000_003 + cls)
        perm = members[torch.randperm(len(members), generator=g)]
        k = min(round(HOLDOUT_FRACTION * len(perm)), len(perm) - 1)
        held.append(perm[:k])
        keep.append(perm[k:])
    return torch.cat(keep).sort().values.to(labels.device), torch.cat(held).sort().values.to(labels.device)


# ----------------------------------------------------------------------------- few-shot


def few_shot_indices(labels: torch.Tensor, shots: int, seed: int, draw: int) -> torch.Tensor:
    """`shots` indices per class, class-balanced: draw `draw` of seed `seed` permutes each class once
    (its own generator) and takes the prefix, so the k-shot sets of one draw are nested."""
    out = []
    cpu = labels.cpu()
    for cls in torch.unique(cpu).tolist():
        members = torch.nonzero(cpu == cls).flatten()
        if len(members) < shots:
            raise ValueError(f"class {cls} has {len(members)} images, fewer than the {shots} shots asked for")
        g = torch.Generator().manual_seed((seed * 1_000_003 + draw) * 1_009 + cls)
        out.append(members[torch.randperm(len(members), generator=g)[:shots]])
    return torch.cat(out)


def ridge_fewshot(
    x: torch.Tensor, y: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor, num_classes: int, l2: float = FEWSHOT_L2
) -> float:
    """Test accuracy of closed-form ridge regression to {-1, 1} one-hot targets (big_vision's
    fewshot_lsr: whitened features, a constant bias feature, the (D x D) or (N x N) system, whichever
    is smaller). float64 on the CPU: at most a few hundred shots, and the solve is exact."""
    x, x_test = x.double().cpu(), x_test.double().cpu()
    mean, std = x.mean(0, keepdim=True), x.std(0, unbiased=False, keepdim=True) + 1e-5

    def design(t: torch.Tensor) -> torch.Tensor:
        return F.pad((t - mean) / std, (0, 1), value=BIAS_CONSTANT)

    a = design(x)
    targets = 2.0 * F.one_hot(y.cpu(), num_classes).double() - 1.0
    n, d = a.shape
    if n >= d:
        w = torch.linalg.solve(a.T @ a + l2 * torch.eye(d, dtype=a.dtype), a.T @ targets)
    else:
        w = a.T @ torch.linalg.solve(a @ a.T + l2 * torch.eye(n, dtype=a.dtype), targets)
    return _accuracy(design(x_test) @ w, y_test.cpu())


# ----------------------------------------------------------------------------- running


def run_evals(
    model: nn.Module,
    ds: Dataset,
    cfg: dict,
    *,
    image_size: int,
    data_size: int,
    seed: int,
    val_size: int,
    eval_size: int | None,
    device: torch.device,
    sources: list[dict] | tuple = (),
    frames: int = 0,
    frame_stride: int = 1,
) -> dict:
    """The row's probe columns for the trial's dataset, then for each of cfg["datasets"] (prefixed),
    and `eval_time_s`: the wall time of feature extraction and fits (device synchronised), all
    datasets together (`<label>_eval_time_s`: one transfer dataset's share); loading a dataset is
    not part of it."""
    model.to(device)
    common = {"image_size": image_size, "data_size": data_size, "seed": seed, "eval_size": eval_size, "device": device}
    common |= {"frames": frames, "frame_stride": frame_stride}  # clips: the frames the trial trained on (0: all)
    pool, val = data.split_validation(ds.train, val_size)
    out, total = _timed(functools.partial(_probes, model, ds, cfg, pool=pool, val=val, **common), device)
    entries = cfg.get("datasets", [])
    for entry, source in zip(entries, list(sources) or [{}] * len(entries)):
        other = adapt_channels(load_transfer(entry, source), ds.info.in_chans)
        got, spent = _timed(functools.partial(_probes, model, other, cfg, pool=other.train, val=None, **common), device)
        out.update({f"{entry['label']}_{k}": v for k, v in {**got, "eval_time_s": spent}.items()})
        total += spent
    out["eval_time_s"] = total
    return out


def _timed(fn: Callable[[], dict], device: torch.device) -> tuple[dict, float]:
    _sync(device)
    t0 = time.perf_counter()
    got = fn()
    _sync(device)
    return got, time.perf_counter() - t0


def _probes(
    model: nn.Module,
    ds: Dataset,
    cfg: dict,
    *,
    pool: Split,
    val: Split | None,
    image_size: int,
    data_size: int,
    seed: int,
    eval_size: int | None,
    device: torch.device,
    frames: int = 0,
    frame_stride: int = 1,
) -> dict:
    batcher = Batcher(ds, image_size, device, frames=frames, frame_stride=frame_stride)
    k = ds.info.num_classes
    test = extract(model, subset(ds.test, eval_size, seed=0) if eval_size else ds.test, batcher)
    out: dict = {}
    if cfg.get("linear_probe"):
        train = extract(model, subset(pool, data_size, seed) if data_size else pool, batcher)
        out.update(linear_probe(train, test, k, val=extract(model, val, batcher) if val is not None else None, seed=seed))
    shots = cfg.get("few_shot") or []
    if shots:
        draws = [few_shot_indices(pool.labels, max(shots), seed, d) for d in range(cfg.get("few_shot_draws", FEW_SHOT_DRAWS))]
        union = torch.unique(torch.cat(draws))  # each image's features once, however many draws hold it
        feats, labels = extract(model, _take(pool, union), batcher)
        where = {int(i): j for j, i in enumerate(union.tolist())}
        for n in shots:
            accs = []
            for drawn in draws:
                # the first n of each class's permutation (drawn: max(shots) per class, class after class)
                rows = torch.tensor(
                    [where[int(i)] for i in drawn.view(-1, max(shots))[:, :n].flatten().tolist()], device=feats.device
                )
                accs.append(ridge_fewshot(feats[rows], labels[rows], test[0], test[1], k))
            acc = torch.tensor(accs, dtype=torch.float64)
            out[f"fewshot_{n}_acc"] = acc.mean().item()
            out[f"fewshot_{n}_acc_std"] = acc.std().item() if len(accs) > 1 else math.nan
    return out


def _take(split: Split, idx: torch.Tensor) -> Split:
    images = split.images[idx] if isinstance(split.images, torch.Tensor) else split.images.take(idx)
    return Split(images, split.labels[idx])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def load_transfer(entry: dict, source: dict) -> Dataset:
    """A transfer dataset from its canonical config and the section as written (where it lives);
    StudyError if it is gone since the study was loaded."""
    cfg = {**source, **{k: v for k, v in entry.items() if k != "label"}}
    try:
        return data.load(cfg)
    except StudyError as e:
        raise e.at(key=f"eval.datasets ({entry['label']})") from None


def adapt_channels(ds: Dataset, in_chans: int) -> Dataset:
    """`ds` with `in_chans` channels: RGB to grey by luminance, grey to RGB by repetition, on the
    uint8 images (then the normalisation statistics of the converted training split). The last
    conversions are kept (data.load caches the datasets too): trials in one worker share them."""
    if ds.info.in_chans == in_chans:
        return ds
    key = (json.dumps(ds.info.config, sort_keys=True), in_chans)
    if key not in _ADAPTED:
        train, test = _convert(ds.train, in_chans), _convert(ds.test, in_chans)
        if isinstance(train.images, torch.Tensor):  # as data.load computes them
            x = train.images.float() / 255
            mean = tuple(x.mean(dim=(0, 2, 3)).tolist())
            std = tuple(x.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist())
        else:  # as a streamed ImageFolder's are
            mean, std = data.channel_stats(subset(train, data.STATS_SAMPLE, seed=0))
        while len(_ADAPTED) >= 2:
            _ADAPTED.pop(next(iter(_ADAPTED)))
        _ADAPTED[key] = Dataset(dataclasses.replace(ds.info, in_chans=in_chans), train, test, mean, std)
    return _ADAPTED[key]


_ADAPTED: dict[tuple[str, int], Dataset] = {}


def _convert(split: Split, in_chans: int) -> Split:
    images = split.images
    if not isinstance(images, torch.Tensor):  # streamed: decode straight to the wanted mode (PIL's "L" is luminance)
        return Split(data.ImageFiles(images.paths, images.image_size, in_chans, images.workers), split.labels)
    if in_chans == 3:
        return Split(images.expand(-1, 3, -1, -1).contiguous(), split.labels)
    luma = torch.tensor(LUMA).view(1, 3, 1, 1)
    grey = torch.cat([(images[i : i + 4096].float() * luma).sum(1, keepdim=True) for i in range(0, len(images), 4096)])
    return Split(grey.round().clamp(0, 255).to(torch.uint8), split.labels)
