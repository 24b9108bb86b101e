"""One training run and its evaluation, with a learning curve. Knows nothing of files.

Budget: `steps` (fixed compute, so data-size scaling compares equal compute) or `epochs`
(passes over the subset). AdamW (timm's optimizer factory: no weight decay on biases and
norms) or SGD, cosine schedule with linear warm-up. A non-finite loss stops the run with
`NonFiniteLoss`, which the trial records as failed.

Optional checkpointing (SLURM preemption/timeouts): with `checkpoint_path` and
`checkpoint_every=N`, the complete training state (model, optimizer, sampler and augmentation
generators, global RNG, step, losses, curve, clocks) is saved atomically every N steps, and a
run that finds the file resumes from it, so a requeued job continues where it stopped and ends
with the same result as an uninterrupted run. Without these arguments nothing is written.
"""

from __future__ import annotations

import math
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from timm.optim import create_optimizer_v2

from harness.data import Batcher, BatchFetcher, Dataset, EpochSampler, Split, eval_batches, subset

EVAL_BATCH = 500
CURVE_POINTS = 10  # learning-curve evaluations per run when eval_every is not set


class NonFiniteLoss(RuntimeError):
    pass


@dataclass
class TrainResult:
    test_acc: float
    test_loss: float
    train_loss: float  # mean over the last 10% of steps (a single batch is too noisy)
    best_test_acc: float  # best over curve points; curve points may use a test subset
    steps: int
    samples_seen: int
    epochs: float
    train_time_s: float  # wall time of the optimisation steps only, evaluations excluded
    curve: list[dict] = field(default_factory=list)
    resumes: int = 0  # times this run continued from a checkpoint (0 without checkpointing)
    resumed_from_step: int = 0  # the step the last resume started at


def autocast(device: torch.device):
    """bf16 autocast on CUDA (tensor cores, no loss scaling needed); full fp32 on CPU."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


def total_steps(cfg: dict, data_size: int) -> int:
    if cfg["steps"] is not None:
        return int(cfg["steps"])
    per_epoch = math.ceil(data_size / min(cfg["batch_size"], data_size))
    return max(1, round(cfg["epochs"] * per_epoch))


def lr_at(step: int, total: int, cfg: dict) -> float:
    """Linear warm-up to lr over warmup_steps, then cosine to 0 (or constant)."""
    warm = min(cfg["warmup_steps"], max(total - 1, 0))
    if step < warm:
        return cfg["lr"] * (step + 1) / warm
    if cfg["schedule"] == "constant":
        return cfg["lr"]
    progress = (step - warm) / max(1, total - warm)
    return cfg["lr"] * 0.5 * (1 + math.cos(math.pi * progress))


def make_optimizer(model: torch.nn.Module, cfg: dict) -> torch.optim.Optimizer:
    kwargs = {"momentum": cfg["momentum"]} if cfg["optimizer"] == "sgd" else {}
    return create_optimizer_v2(model, opt=cfg["optimizer"], lr=cfg["lr"], weight_decay=cfg["weight_decay"], **kwargs)


@torch.no_grad()
def evaluate(model: torch.nn.Module, split: Split, batcher: Batcher) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) over the whole split."""
    was_training = model.training
    model.eval()
    correct, loss_sum = 0, 0.0
    for images, labels in eval_batches(split, EVAL_BATCH):  # from memory, or decoded by DataLoader workers
        x = batcher(images)
        y = labels.to(batcher.device)
        with autocast(batcher.device):
            logits = model(x)
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
    model.train(was_training)
    return correct / len(split), loss_sum / len(split)


def train(model: torch.nn.Module, ds: Dataset, *, image_size: int, data_size: int, seed: int,
          cfg: dict, device: torch.device, checkpoint_path: Path | None = None,
          checkpoint_every: int = 0) -> TrainResult:
    train_split = subset(ds.train, data_size, seed)
    test_split = subset(ds.test, cfg["eval_size"], seed=0) if cfg["eval_size"] else ds.test
    curve_split = subset(test_split, cfg["curve_eval_size"], seed=0)  # same images at every point
    batcher = Batcher(ds, image_size, device, cfg["augment"])
    sampler = EpochSampler(len(train_split), cfg["batch_size"], seed)
    fetch = BatchFetcher(train_split, sampler)  # streamed splits: workers decode ahead along the sampler
    aug_gen = torch.Generator().manual_seed(seed + 1)
    total = total_steps(cfg, len(train_split))
    every = cfg["eval_every"] or max(1, total // CURVE_POINTS)
    opt = make_optimizer(model, cfg)
    model.to(device).train()

    losses: list[float] = []
    curve: list[dict] = []
    seen, train_time, since = 0, 0.0, 0
    start, resumes = 0, 0
    ckpt = Path(checkpoint_path) if checkpoint_path is not None and checkpoint_every > 0 else None
    if ckpt is not None and ckpt.exists():
        state = _load_checkpoint(ckpt, model, opt, sampler, aug_gen, device, total)
        if state is not None:
            start, losses, curve = state["step"], state["losses"], state["curve"]
            seen, train_time, since, resumes = state["seen"], state["train_time"], state["since"], state["resumes"] + 1
    for step in range(start, total):
        t0 = time.perf_counter()
        for group in opt.param_groups:
            group["lr"] = lr_at(step, total, cfg)
        idx = sampler.next()
        images, labels = fetch(idx)
        x = batcher(images, train=True, generator=aug_gen)
        y = labels.to(device, non_blocking=True)
        with autocast(device):
            loss = F.cross_entropy(model(x).float(), y, label_smoothing=cfg["label_smoothing"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        value = loss.item()  # .item() synchronises, so train_time is honest on CUDA too
        train_time += time.perf_counter() - t0
        if not math.isfinite(value):
            raise NonFiniteLoss(f"loss became {value} at step {step} (lr {lr_at(step, total, cfg):.3g})")
        losses.append(value)
        seen += len(idx)
        since += 1
        if (step + 1) % every == 0 and step + 1 < total:
            acc, tl = evaluate(model, curve_split, batcher)
            curve.append(_point(step + 1, seen, len(train_split), losses[-since:], acc, tl, lr_at(step, total, cfg), train_time))
            since = 0
        if ckpt is not None and (step + 1) % checkpoint_every == 0 and step + 1 < total:
            _save_checkpoint(ckpt, model, opt, sampler, aug_gen, {
                "step": step + 1, "total": total, "losses": losses, "curve": curve, "seen": seen,
                "train_time": train_time, "since": since, "resumes": resumes})

    acc, test_loss = evaluate(model, test_split, batcher)
    curve.append(_point(total, seen, len(train_split), losses[-since:] if since else losses[-1:], acc, test_loss,
                        lr_at(total - 1, total, cfg), train_time))
    tail = losses[-max(1, total // 10):]
    return TrainResult(
        test_acc=acc, test_loss=test_loss, train_loss=sum(tail) / len(tail),
        best_test_acc=max(p["test_acc"] for p in curve), steps=total, samples_seen=seen,
        epochs=seen / len(train_split), train_time_s=train_time, curve=curve,
        resumes=resumes, resumed_from_step=start,
    )


def _save_checkpoint(path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, sampler: EpochSampler,
                     aug_gen: torch.Generator, progress: dict) -> None:
    """Everything the next step depends on, written to a temporary name and renamed (never half a file)."""
    state = dict(progress, model=model.state_dict(), opt=opt.state_dict(), sampler_rng=sampler.g.get_state(),
                 sampler_perm=sampler.perm, sampler_pos=sampler.pos, aug_rng=aug_gen.get_state(),
                 torch_rng=torch.get_rng_state(),
                 cuda_rng=torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except BaseException:  # a signal (preemption) mid-save leaves the previous checkpoint intact
        tmp.unlink(missing_ok=True)
        raise


def _load_checkpoint(path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, sampler: EpochSampler,
                     aug_gen: torch.Generator, device: torch.device, total: int) -> dict | None:
    """Restore in place and return the progress; None (start from step 0) if it belongs to another budget."""
    state = torch.load(path, map_location="cpu", weights_only=False)  # our own file: tensors + plain lists
    if state.get("total") != total:
        return None
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["opt"])
    sampler.g.set_state(state["sampler_rng"])
    sampler.perm, sampler.pos = state["sampler_perm"], state["sampler_pos"]
    aug_gen.set_state(state["aug_rng"])
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] is not None and device.type == "cuda":
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return state


def _point(step: int, seen: int, n: int, losses: list[float], acc: float, test_loss: float, lr: float, elapsed: float) -> dict:
    return {"epoch": seen / n, "step": step, "samples_seen": seen, "train_loss": sum(losses) / len(losses),
            "test_acc": acc, "test_loss": test_loss, "lr": lr, "elapsed_s": elapsed}
