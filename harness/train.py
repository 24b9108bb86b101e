"""One training run and its evaluation, with a learning curve. Knows nothing of files.

Budget: `steps` (fixed compute, so data-size scaling compares equal compute) or `epochs`
(passes over the subset). AdamW (timm's optimizer factory: no weight decay on biases and
norms) or SGD, cosine schedule with linear warm-up. A non-finite loss stops the run with
`NonFiniteLoss`, which the trial records as failed. `objective: simclr` swaps the loss for SimCLR's
(two views, projection head, NT-Xent: harness/ssl.py) in the same loop; with no classifier, its
accuracies are NaN and the study's probes judge the backbone.

On CUDA the loop never waits for the GPU between steps (small models are launch-bound, and a
`loss.item()` per step leaves the GPU idle while Python queues the next step): in-memory data is
on the device for the whole trial (`data.to_device`), per-step losses stay on the device and are
read back every CHECK_EVERY steps, at every curve point, at every checkpoint and at the end (a
NaN is reported with its step and the window it was read in, and the row is never stored as ok),
and the clock behind `train_time_s` is read only after a device synchronisation. On CPU nothing
waits anyway, so losses are read every step, and the results are those of the trainer before
(tests/test_train_device.py holds the recorded numbers). `compile: true` trains a
torch.compile'd model; its first (compiling) step is timed as `compile_s`, outside `train_time_s`.

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
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from timm.optim import create_optimizer_v2

from harness import data, ssl
from harness.data import Batcher, BatchFetcher, Dataset, EpochSampler, Split, eval_batches, subset
from harness.spec.train_keys import min_steps, total_steps

EVAL_BATCH = 500
CURVE_POINTS = 10  # learning-curve evaluations per run when eval_every is not set
CHECK_EVERY = 50  # CUDA: steps between loss read-backs (one host sync each; a NaN is named with its step)


class NonFiniteLoss(RuntimeError):
    pass


@dataclass
class TrainResult:
    test_acc: float
    test_loss: float
    train_loss: float  # mean over the last 10% of steps (a single batch is too noisy)
    best_test_acc: float  # deprecated (selects on test): best over curve points without a validation split, else NaN
    steps: int  # steps actually run (fewer than max_steps when early stopping stopped the run)
    samples_seen: int
    epochs: float
    train_time_s: float  # wall time of the optimisation steps only, evaluations excluded
    curve: list[dict] = field(default_factory=list)
    resumes: int = 0  # times this run continued from a checkpoint (0 without checkpointing)
    resumed_from_step: int = 0  # the step the last resume started at
    compile_s: float = math.nan  # with train.compile: the first (compiling) step's wall time, not in train_time_s
    max_steps: int = 0  # the budget's ceiling (= steps without early stopping)
    # with train.val_size: the final model's validation numbers, the best validation accuracy over
    # evaluations and its step, and the test accuracy of that best checkpoint (NaN without)
    val_acc: float = math.nan
    val_loss: float = math.nan
    best_val_acc: float = math.nan
    best_val_step: int = 0
    test_acc_at_best_val: float = math.nan


def autocast(device: torch.device):
    """bf16 autocast on CUDA (tensor cores, no loss scaling needed); full fp32 on CPU."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


def lr_at(step: int, total: int, cfg: dict) -> float:
    """Linear warm-up to lr over warmup_steps, then cosine to 0 (or constant)."""
    warm = min(cfg["warmup_steps"], max(total - 1, 0))
    if step < warm:
        return cfg["lr"] * (step + 1) / warm
    if cfg["schedule"] == "constant":
        return cfg["lr"]
    progress = (step - warm) / max(1, total - warm)
    return cfg["lr"] * 0.5 * (1 + math.cos(math.pi * progress))


def make_optimizer(model: torch.nn.Module, cfg: dict, *, fused: bool = False) -> torch.optim.Optimizer:
    """`fused`: AdamW's single-kernel update (torch's `fused=True`): on a GPU, where small models are
    launch-bound, it replaces the per-tensor update kernels with one launch per step. The trainer asks
    for it on CUDA only (the model's parameters must already be on the device); CPU results stay bit-identical."""
    kwargs = {"momentum": cfg["momentum"]} if cfg["optimizer"] == "sgd" else {}
    if fused and cfg["optimizer"] == "adamw":
        kwargs["fused"] = True
    return create_optimizer_v2(model, opt=cfg["optimizer"], lr=cfg["lr"], weight_decay=cfg["weight_decay"], **kwargs)


@torch.no_grad()
def evaluate(model: torch.nn.Module, split: Split, batcher: Batcher) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) over the whole split. Sums stay on the device (one sync at the
    end, not two per batch); the loss sum is float64, as the Python float it replaced, so CPU
    results are the same to the bit."""
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=batcher.device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=batcher.device)
    for images, labels in eval_batches(split, EVAL_BATCH):  # from memory, or decoded by DataLoader workers
        x = batcher(images)
        y = labels.to(batcher.device)
        with autocast(batcher.device):
            logits = model(x)
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum").double()
        correct += (logits.argmax(1) == y).sum()
    model.train(was_training)
    return correct.item() / len(split), loss_sum.item() / len(split)


def check_every(device: torch.device) -> int:
    """Steps between loss read-backs. Reading a CUDA loss (`.item()`) waits for the GPU to drain its
    queue, which for small models costs as much as the step; on CPU a read costs nothing, so CPU
    runs keep checking every step (and fail at the exact step, as before)."""
    return 1 if device.type == "cpu" else CHECK_EVERY


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _Losses:
    """Per-step losses: kept on the device as they come, read back and checked in one go."""

    def __init__(self, values: list[float], lr: Callable[[int], float], every: int) -> None:
        self.values, self.lr, self.every = values, lr, every
        self.pending: list[torch.Tensor] = []
        self.first = len(values)  # step of pending[0]

    def add(self, loss: torch.Tensor, sync_now: bool = False) -> None:
        self.pending.append(loss.detach())
        if sync_now or len(self.pending) >= self.every:
            self.flush()

    def flush(self) -> None:
        """Read the pending losses (one host sync); NonFiniteLoss names the step and the checked window."""
        if not self.pending:
            return
        got = torch.stack(self.pending).tolist()
        first, last = self.first, self.first + len(got)
        self.pending, self.first = [], last
        for i, value in enumerate(got):
            if not math.isfinite(value):
                step = first + i
                window = f", read back between steps {first} and {last}" if len(got) > 1 else ""
                raise NonFiniteLoss(f"loss became {value} at step {step} (lr {self.lr(step):.3g}{window})")
        self.values.extend(got)


def train(
    model: torch.nn.Module,
    ds: Dataset,
    *,
    image_size: int,
    data_size: int,
    seed: int,
    cfg: dict,
    device: torch.device,
    checkpoint_path: Path | None = None,
    checkpoint_every: int = 0,
    sync_every_step: bool = False,
    frames: int = 0,
    frame_stride: int = 1,
) -> TrainResult:
    """`sync_every_step`: read the loss back after every step, as the trainer did before issue 10
    (benchmarks/train_speed.py compares the two); never changes a result. `frames`/`frame_stride`:
    the clips of a video dataset (data.Batcher; 0 = images, or all of a clip's frames)."""
    pool, val_cpu = data.split_validation(ds.train, cfg.get("val_size", 0))  # val_size 0: (ds.train, None)
    train_split = data.to_device(subset(pool, data_size, seed), device)  # on CUDA: uploaded once per trial
    val_split = data.to_device(val_cpu, device) if val_cpu is not None else None
    test_cpu = subset(ds.test, cfg["eval_size"], seed=0) if cfg["eval_size"] else ds.test
    curve_split = data.to_device(subset(test_cpu, cfg["curve_eval_size"], seed=0), device)  # same images at every point
    test_split = data.to_device(test_cpu, device)
    batcher = Batcher(ds, image_size, device, cfg["augment"], frames=frames, frame_stride=frame_stride)
    sampler = EpochSampler(len(train_split), cfg["batch_size"], seed)
    fetch = BatchFetcher(train_split, sampler)  # streamed splits: workers decode ahead along the sampler
    resident = data.is_resident(train_split)
    aug_gen = torch.Generator(device=device).manual_seed(seed + 1)  # on the device: no per-step upload
    # the objective switch: `net` is what the optimizer trains (SimCLR: backbone + projection head);
    # a SimCLR run has no classifier, so nothing below evaluates accuracy (NaN), the probes do
    supervised = cfg.get("objective", "supervised") == "supervised"
    net = model if supervised else ssl.SimCLR(model, cfg["proj_dim"], ds.info.in_chans, image_size)
    total = total_steps(cfg, len(train_split))
    every = cfg["eval_every"] or max(1, total // CURVE_POINTS)
    patience = (cfg.get("early_stop") or {}).get("patience")
    earliest = min_steps(cfg, len(train_split))
    net.to(device).train()
    opt = make_optimizer(net, cfg, fused=device.type == "cuda")
    step_model, compile_s = _compiled(net, cfg.get("compile", False))

    losses: list[float] = []
    curve: list[dict] = []
    seen, train_time, since = 0, 0.0, 0
    start, resumes = 0, 0
    best = _Best()  # with a validation split: the best val accuracy so far, its step and weights
    ckpt = Path(checkpoint_path) if checkpoint_path is not None and checkpoint_every > 0 else None
    if ckpt is not None and ckpt.exists():
        state = _load_checkpoint(ckpt, net, opt, sampler, aug_gen, device, total)
        if state is not None:
            start, losses, curve = state["step"], state["losses"], state["curve"]
            seen, train_time, since, resumes = state["seen"], state["train_time"], state["since"], state["resumes"] + 1
            best = state.get("best") or best
    record = _Losses(losses, lambda s: lr_at(s, total, cfg), 1 if sync_every_step else check_every(device))
    _sync(device)
    t0 = time.perf_counter()  # the clock runs over training steps only; it is read after a device sync

    def stop_clock() -> None:
        nonlocal train_time
        _sync(device)
        train_time += time.perf_counter() - t0

    ran, stop = total, False
    for step in range(start, total):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, total, cfg)
        idx = sampler.next_on(device) if resident else sampler.next()
        images, labels = fetch(idx)
        if supervised:
            x = batcher(images, train=True, generator=aug_gen)
            y = labels.to(device, non_blocking=True)
            with autocast(device):
                loss = F.cross_entropy(step_model(x).float(), y, label_smoothing=cfg["label_smoothing"])
        else:  # SimCLR: two views of each image, NT-Xent on their projections (labels unused)
            x = ssl.two_views(images, batcher, aug_gen)
            with autocast(device):
                z = step_model(x).float()
            loss = ssl.nt_xent(*z.chunk(2), cfg["temperature"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        seen += len(idx)
        since += 1
        if compile_s is not None and step == start:  # the compiling step, timed apart from train_time
            _sync(device)
            compile_s = time.perf_counter() - t0
            t0 = time.perf_counter()
        curve_point = (step + 1) % every == 0 and step + 1 < total
        save = ckpt is not None and (step + 1) % checkpoint_every == 0 and step + 1 < total
        record.add(loss, sync_now=curve_point or save or step + 1 == total)
        if curve_point or save:
            stop_clock()
        if curve_point and val_split is not None and supervised:  # validation: the curve, selection and early stopping
            va, vl = evaluate(model, val_split, batcher)
            curve.append(
                _point(
                    step + 1,
                    seen,
                    len(train_split),
                    losses[-since:],
                    math.nan,
                    math.nan,
                    lr_at(step, total, cfg),
                    train_time,
                    val=(va, vl),
                )
            )
            since = 0
            best.update(va, step + 1, model)
            stop = patience is not None and best.bad >= patience and step + 1 >= earliest
        elif curve_point:
            acc, tl = evaluate(model, curve_split, batcher) if supervised else (math.nan, math.nan)
            curve.append(_point(step + 1, seen, len(train_split), losses[-since:], acc, tl, lr_at(step, total, cfg), train_time))
            since = 0
        if save:
            _save_checkpoint(
                ckpt,
                net,
                opt,
                sampler,
                aug_gen,
                {
                    "step": step + 1,
                    "total": total,
                    "losses": losses,
                    "curve": curve,
                    "seen": seen,
                    "train_time": train_time,
                    "since": since,
                    "resumes": resumes,
                    "best": best,
                },
            )
        if curve_point or save:
            t0 = time.perf_counter()
        if stop:  # early stopping: `patience` evaluations without a better val accuracy
            ran = step + 1
            break
    if start < total:
        stop_clock()

    acc, test_loss = evaluate(model, test_split, batcher) if supervised else (math.nan, math.nan)
    last = losses[-since:] if since else losses[-1:]
    tail = losses[-max(1, ran // 10) :]
    out = TrainResult(
        test_acc=acc,
        test_loss=test_loss,
        train_loss=sum(tail) / len(tail),
        best_test_acc=math.nan,
        steps=ran,
        samples_seen=seen,
        epochs=seen / len(train_split),
        train_time_s=train_time,
        curve=curve,
        resumes=resumes,
        resumed_from_step=start,
        compile_s=compile_s if compile_s is not None else math.nan,
        max_steps=total,
    )
    if val_split is None or not supervised:
        curve.append(_point(ran, seen, len(train_split), last, acc, test_loss, lr_at(ran - 1, total, cfg), train_time))
        out.best_test_acc = max(p["test_acc"] for p in curve) if supervised else math.nan
        return out
    if stop:  # the run stopped at an evaluation: its val numbers are the last curve point's
        va, vl = curve[-1]["val_acc"], curve[-1]["val_loss"]
        curve[-1].update(test_acc=acc, test_loss=test_loss)
    else:
        va, vl = evaluate(model, val_split, batcher)
        best.update(va, ran, model)
        curve.append(
            _point(ran, seen, len(train_split), last, acc, test_loss, lr_at(ran - 1, total, cfg), train_time, val=(va, vl))
        )
    out.val_acc, out.val_loss, out.best_val_acc, out.best_val_step = va, vl, best.acc, best.step
    if best.step == ran:
        out.test_acc_at_best_val = acc
    else:  # the kept copy of the best weights, evaluated on the test split once, at the end
        model.load_state_dict(best.state)
        out.test_acc_at_best_val = evaluate(model, test_split, batcher)[0]
    return out


@dataclass
class _Best:
    """The best validation accuracy so far, its step, a copy of those weights (in memory, on the
    model's device), and the evaluations since it (early stopping's patience counter)."""

    acc: float = -math.inf
    step: int = 0
    state: dict | None = None
    bad: int = 0

    def update(self, acc: float, step: int, model: torch.nn.Module) -> None:
        if acc > self.acc:  # strictly better: a tie keeps the earlier (cheaper) checkpoint
            self.acc, self.step, self.bad = acc, step, 0
            self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            self.bad += 1


def _compiled(model: torch.nn.Module, compile: bool) -> tuple[torch.nn.Module, float | None]:
    """The module the training steps call, and the compile clock (None without compile). Evaluation
    calls the plain module (same parameters): eval mode and a short last batch would recompile."""
    if not compile:
        return model, None
    torch._dynamo.reset()  # compile from scratch: an earlier trial's cache would hide the compile time
    return torch.compile(model), 0.0


def _save_checkpoint(
    path: Path,
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    sampler: EpochSampler,
    aug_gen: torch.Generator,
    progress: dict,
) -> None:
    """Everything the next step depends on, written to a temporary name and renamed (never half a file)."""
    state = dict(
        progress,
        model=model.state_dict(),
        opt=opt.state_dict(),
        sampler_rng=sampler.g.get_state(),
        sampler_perm=sampler.perm,
        sampler_pos=sampler.pos,
        aug_rng=aug_gen.get_state(),
        torch_rng=torch.get_rng_state(),
        cuda_rng=torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except BaseException:  # a signal (preemption) mid-save leaves the previous checkpoint intact
        tmp.unlink(missing_ok=True)
        raise


def _load_checkpoint(
    path: Path,
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    sampler: EpochSampler,
    aug_gen: torch.Generator,
    device: torch.device,
    total: int,
) -> dict | None:
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


def _point(
    step: int,
    seen: int,
    n: int,
    losses: list[float],
    acc: float,
    test_loss: float,
    lr: float,
    elapsed: float,
    val: tuple[float, float] | None = None,
) -> dict:
    """One curve row; with a validation split, curve points carry val_acc/val_loss and the test
    numbers only at the end (NaN before)."""
    point = {
        "epoch": seen / n,
        "step": step,
        "samples_seen": seen,
        "train_loss": sum(losses) / len(losses),
        "test_acc": acc,
        "test_loss": test_loss,
        "lr": lr,
        "elapsed_s": elapsed,
    }
    if val is not None:
        point.update(val_acc=val[0], val_loss=val[1])
    return point
