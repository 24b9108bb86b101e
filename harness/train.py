"""One training run and its evaluation, with a learning curve. Knows nothing of files.

Budget: `steps` (fixed compute, so data-size scaling compares equal compute) or `epochs`
(passes over the subset). AdamW (timm's optimizer factory: no weight decay on biases and
norms) or SGD, cosine schedule with linear warm-up. A non-finite loss stops the run with
`NonFiniteLoss`, which the trial records as failed. `objective: simclr` swaps the loss for SimCLR's
(two views, projection head, NT-Xent: harness/ssl.py) in the same loop; with no classifier, its
accuracies are NaN and the study's probes judge the backbone. The loss is an `Objective` the caller
hands in (harness.trial builds it with `ssl.objective`): this module knows supervised
cross-entropy only and imports neither ssl nor evals (they import it).

The loop is a `Trainer`: its named state is the splits, the `Schedule` (lr per step), the
optimizer, `Progress` (step, losses, curve, clocks, the best validation point: what a
`Checkpoint` carries besides the tensors) and the objective. A wsd trunk keeps one track per shorter
budget and saves at its decay start the state that budget's own run has there: the branch starts
from it and ends with an independent run's row (harness/branches.py).

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
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch
import torch.nn.functional as F
from timm.optim import create_optimizer_v2

from harness import data, distributed, live
from harness.checkpoint import Checkpoint
from harness.data import Batcher, BatchFetcher, Dataset, EpochSampler, Split, eval_batches, subset
from harness.features import autocast
from harness.schedule import BranchPoint, Schedule, Track, lr_at  # noqa: F401  (harness.train.lr_at: older imports)
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
    trunk_steps_reused: int = 0  # a wsd branch: the steps it took from its trunk's checkpoint
    # with train.val_size: the final model's validation numbers, the best validation accuracy over
    # evaluations and its step, and the test accuracy of that best checkpoint (NaN without)
    val_acc: float = math.nan
    val_loss: float = math.nan
    best_val_acc: float = math.nan
    best_val_step: int = 0
    test_acc_at_best_val: float = math.nan


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

    def __init__(
        self,
        values: list[float],
        lr: Callable[[int], float],
        every: int,
        reduce: Callable[[torch.Tensor], torch.Tensor] = distributed.SINGLE.mean,
    ) -> None:
        self.values, self.lr, self.every, self.reduce = values, lr, every, reduce  # reduce: the mean over ranks
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
        got = self.reduce(torch.stack(self.pending)).tolist()
        first, last = self.first, self.first + len(got)
        self.pending, self.first = [], last
        for i, value in enumerate(got):
            if not math.isfinite(value):
                step = first + i
                window = f", read back between steps {first} and {last}" if len(got) > 1 else ""
                raise NonFiniteLoss(f"loss became {value} at step {step} (lr {self.lr(step):.3g}{window})")
        self.values.extend(got)


class Objective(Protocol):
    """What the training steps minimise. `classifies`: the trained model has a classifier (accuracy
    is evaluated; SimCLR's is not, its numbers are NaN and the probes judge it). `network(model)`:
    what the optimizer trains and checkpoints hold (SimCLR: the backbone + its projection head; built
    when the trainer asks, at the same point of the global RNG as ever). `loss(...)`: one batch's loss
    under the device's autocast, from uint8 images and their labels."""

    classifies: bool

    def network(self, model: torch.nn.Module) -> torch.nn.Module: ...

    def loss(
        self, net: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, batcher: Batcher, generator: torch.Generator
    ) -> torch.Tensor: ...


@dataclass(frozen=True)
class Supervised:
    """Cross-entropy on the (augmented) batch against its labels, with label smoothing."""

    label_smoothing: float = 0.0
    classifies: bool = True

    def network(self, model: torch.nn.Module) -> torch.nn.Module:
        return model

    def loss(
        self, net: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, batcher: Batcher, generator: torch.Generator
    ) -> torch.Tensor:
        x = batcher(images, train=True, generator=generator)
        y = labels.to(batcher.device, non_blocking=True)
        with autocast(batcher.device):
            return F.cross_entropy(net(x).float(), y, label_smoothing=self.label_smoothing)


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
    objective: Objective | None = None,
    branches: Sequence[BranchPoint] = (),
    start_from: Path | None = None,
    stop_at: int = 0,
    on_point: Callable[[dict], None] | None = None,
) -> TrainResult:
    """`sync_every_step`: read the loss back after every step (as before issue 10; never changes a
    result). `frames`/`frame_stride`: a video dataset's clips (data.Batcher; 0 = images). `objective`:
    what the steps minimise; None is supervised cross-entropy (`harness.ssl.objective` builds either).
    `branches`: a wsd trunk's shorter budgets; `start_from`: a branch's trunk checkpoint; `stop_at`: a
    halving rung (saved to `checkpoint_path`, which without `checkpoint_every` is written at branch
    points and rungs only); `on_point`: told each curve point as it is evaluated (harness.live)."""
    if objective is None:
        if cfg.get("objective", "supervised") != "supervised":
            raise ValueError(f"objective {cfg['objective']!r}: pass objective= (harness.ssl.objective builds it)")
        objective = Supervised(cfg["label_smoothing"])
    trainer = Trainer(
        model,
        ds,
        image_size=image_size,
        data_size=data_size,
        seed=seed,
        cfg=cfg,
        device=device,
        objective=objective,
        checkpoint=Checkpoint.of(checkpoint_path, checkpoint_every),
        frames=frames,
        frame_stride=frame_stride,
        branches=branches,
    )
    trainer.resume(start_from)
    if on_point is not None:
        trainer.progress.curve = live.Curve(trainer.progress.curve, on_point)
    return trainer.run(sync_every_step=sync_every_step, stop_at=stop_at)


@dataclass(frozen=True)
class Splits:
    """The trial's splits: its training subset, the validation split (train.val_size; None without),
    the curve's fixed test subset and the test split (train.eval_size honoured). In-memory splits are
    uploaded to the device once per trial."""

    train: Split
    val: Split | None
    curve: Split
    test: Split

    @classmethod
    def of(cls, ds: Dataset, data_size: int, seed: int, cfg: dict, device: torch.device) -> Splits:
        pool, val_cpu = data.split_validation(ds.train, cfg.get("val_size", 0))  # val_size 0: (ds.train, None)
        train_split = data.to_device(subset(pool, data_size, seed), device)  # on CUDA: uploaded once per trial
        val_split = data.to_device(val_cpu, device) if val_cpu is not None else None
        test_cpu = subset(ds.test, cfg["eval_size"], seed=0) if cfg["eval_size"] else ds.test
        curve_split = data.to_device(subset(test_cpu, cfg["curve_eval_size"], seed=0), device)  # same images at every point
        return cls(train_split, val_split, curve_split, data.to_device(test_cpu, device))


@dataclass
class Progress:
    """Where the run stands: everything a checkpoint carries besides the tensors' states."""

    step: int = 0  # the step this process started at (a resumed run's checkpoint step)
    losses: list[float] = field(default_factory=list)
    curve: list[dict] = field(default_factory=list)
    seen: int = 0  # samples
    train_time: float = 0.0  # seconds of training steps (the clock is stopped for evaluations)
    since: int = 0  # steps since the last curve point (their losses are its train_loss)
    resumes: int = 0
    best: _Best = field(default_factory=lambda: _Best())  # with a val split: best val accuracy, its step, weights

    def state(self, step: int, total: int) -> dict:
        """The checkpoint's progress entries after `step` steps (the keys of every checkpoint so far)."""
        return {
            "step": step,
            "total": total,
            "losses": self.losses,
            "curve": self.curve,
            "seen": self.seen,
            "train_time": self.train_time,
            "since": self.since,
            "resumes": self.resumes,
            "best": self.best,
        }

    @classmethod
    def from_state(cls, state: dict) -> Progress:
        """A checkpoint's progress, one more resume counted."""
        return cls(
            step=state["step"],
            losses=state["losses"],
            curve=state["curve"],
            seen=state["seen"],
            train_time=state["train_time"],
            since=state["since"],
            resumes=state["resumes"] + 1,
            best=state.get("best") or _Best(),
        )


class Trainer:
    """One training run: built from the trial's pieces, `resume()`d from a checkpoint if there is
    one, then `run()` to the end of its budget (or early stopping)."""

    def __init__(
        self,
        model: torch.nn.Module,
        ds: Dataset,
        *,
        image_size: int,
        data_size: int,
        seed: int,
        cfg: dict,
        device: torch.device,
        objective: Objective,
        checkpoint: Checkpoint | None = None,
        frames: int = 0,
        frame_stride: int = 1,
        branches: Sequence[BranchPoint] = (),
    ) -> None:
        self.model, self.device, self.objective, self.checkpoint = model, device, objective, checkpoint
        self.dist = distributed.current()  # one worker, or this rank of a data-parallel trial
        self.splits = Splits.of(ds, data_size, seed, cfg, device)
        self.batcher = Batcher(ds, image_size, device, cfg["augment"], frames=frames, frame_stride=frame_stride)
        self.batcher.share = (self.dist.rank, self.dist.world)
        self.sampler = EpochSampler(len(self.splits.train), cfg["batch_size"], seed)
        if self.sampler.batch_size % self.dist.world:  # the spec refuses it at load; a subset smaller than the batch lands here
            raise ValueError(f"batch {self.sampler.batch_size} does not divide over {self.dist.world} workers")
        self.fetch = BatchFetcher(self.splits.train, self.sampler)  # streamed splits: workers decode ahead along the sampler
        self.resident = data.is_resident(self.splits.train)
        self.aug_gen = torch.Generator(device=device).manual_seed(seed + 1)  # on the device: no per-step upload
        # `net` is what the optimizer trains (SimCLR: backbone + projection head); evaluations use `model`
        self.net = objective.network(model)
        self.n = len(self.splits.train)
        self.schedule = Schedule(cfg, total_steps(cfg, self.n))
        self.total = self.schedule.total
        self.every = cfg["eval_every"] or max(1, self.total // CURVE_POINTS)
        self.patience = (cfg.get("early_stop") or {}).get("patience")
        self.earliest = min_steps(cfg, self.n)
        self.net.to(device).train()
        stepped = self.dist.wrap(self.net, device)  # DDP over several ranks (SyncBatchNorm on CUDA); net on one
        self.opt = make_optimizer(self.net, cfg, fused=device.type == "cuda")
        self.step_model, self.compile_s = _compiled(stepped, cfg.get("compile", False))
        self.progress, self.t0, self.reused = Progress(), 0.0, 0  # reused: a branch's steps from its trunk
        cadence = [cfg["eval_every"] or max(1, b.total // CURVE_POINTS) for b in branches]  # each budget's curve points
        self.tracks = [Track(b, Schedule(cfg, b.total), every, Progress()) for b, every in zip(branches, cadence)]
        self._memo: dict = {}  # (step, split) -> evaluation: a trunk's tracks and its own curve share one

    def resume(self, start_from: Path | None = None) -> None:
        """Continue from the checkpoint of this budget if there is one (all state restored in place);
        else a branch starts from its trunk's checkpoint (`start_from`; not counted as a resume)."""
        if self.checkpoint is not None and self.checkpoint.path.exists():
            state = self.checkpoint.load(self.net, self.opt, self.sampler, self.aug_gen, self.device, self.total)
            if state is not None:
                self.progress = Progress.from_state(state)
                for t in self.tracks:
                    t.progress = state.get("tracks", {}).get(t.point.total, t.progress)
                self.reused = state.get("reused", 0)
                return
        if start_from is not None and Path(start_from).exists():
            trunk = Checkpoint(Path(start_from), 0)
            state = trunk.load(self.net, self.opt, self.sampler, self.aug_gen, self.device, self.total)
            if state is not None:
                self.progress = Progress.from_state(state)
                self.progress.resumes -= 1
                self.reused = state["step"]

    def run(self, *, sync_every_step: bool = False, stop_at: int = 0) -> TrainResult:
        p, start = self.progress, self.progress.step
        end = min(stop_at, self.total) if stop_at else self.total
        for t in self.tracks:  # a track shares the trunk's losses (the same list)
            t.progress.losses = p.losses
        every = 1 if sync_every_step else check_every(self.device)
        self.record = _Losses(p.losses, self.schedule.lr, every, self.dist.mean)
        _sync(self.device)
        self.t0 = time.perf_counter()  # the clock runs over training steps only; it is read after a device sync
        ran, stop = end, False
        for step in range(start, end):
            loss = self._step(step, start)
            stop = self._after_step(step, loss)
            if stop:  # early stopping: `patience` evaluations without a better val accuracy
                ran = step + 1
                break
        if start < self.total:
            self._stop_clock()
        if end < self.total and not stop:  # a halving rung: saved before the rung's evaluation (which may load the best weights)
            self.record.flush()
            if self.dist.is_main:
                self._save(end)
            stop = bool(p.curve) and p.curve[-1]["step"] == end  # evaluated there already
        return self._result(ran, stop)

    def _step(self, step: int, start: int) -> torch.Tensor:
        """One optimisation step; its loss stays on the device."""
        self.schedule.apply(self.opt, step)
        idx = self.sampler.next_on(self.device) if self.resident else self.sampler.next()
        images, labels = self._fetch_share(idx)
        loss = self.objective.loss(self.step_model, images, labels, self.batcher, self.aug_gen)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.progress.seen += len(idx)
        self.progress.since += 1
        if self.compile_s is not None and step == start:  # the compiling step, timed apart from train_time
            _sync(self.device)
            self.compile_s = time.perf_counter() - self.t0
            self.t0 = time.perf_counter()
        return loss

    def _fetch_share(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's share of the global batch `idx` (all of it on one worker). In memory only the
        share is gathered; a streamed split yields the global batch (its workers follow the sampler)."""
        if self.resident:
            return self.fetch(self.dist.share(idx))
        images, labels = self.fetch(idx)
        return self.dist.share(images), self.dist.share(labels)

    def _after_step(self, step: int, loss: torch.Tensor) -> bool:
        """Record the loss; at a curve point evaluate, at a checkpoint save (the clock stopped for
        both). True when early stopping ends the run here."""
        done = step + 1
        curve_point = done % self.every == 0 and done < self.total
        save = self.checkpoint is not None and self.checkpoint.due(done, self.total)
        active = [t for t in self.tracks if done <= t.point.step]
        for t in active:
            t.progress.since += 1
        track_points = [t for t in active if done % t.every == 0 and done < t.point.total]
        branch_now = [t for t in active if done == t.point.step]
        self.record.add(loss, sync_now=curve_point or save or bool(track_points or branch_now) or done == self.total)
        if not (curve_point or save or track_points or branch_now):
            return False
        self._stop_clock()
        for t in track_points:
            self._curve_point(step, self._synced(t.progress), t.schedule.lr(step))
        stop = self._curve_point(step) if curve_point else False
        # every rank holds the same state; rank 0 writes it (branch points included), every rank resumes
        for t in branch_now if self.dist.is_main else ():
            state = self._synced(t.progress).state(done, t.point.total)
            Checkpoint(t.point.path, 0).save(self.net, self.opt, self.sampler, self.aug_gen, state)
        if (save or (branch_now and self.checkpoint is not None)) and self.dist.is_main:
            self._save(done)
        self._memo.clear()
        self.t0 = time.perf_counter()
        return stop

    def _save(self, done: int) -> None:
        """The run's own checkpoint after `done` steps (with its branch tracks, and the steps it reused)."""
        state = dict(self.progress.state(done, self.total), tracks={t.point.total: t.progress for t in self.tracks})
        self.checkpoint.save(self.net, self.opt, self.sampler, self.aug_gen, dict(state, reused=self.reused))

    def _synced(self, track: Progress) -> Progress:
        """A track's progress with the trunk's shared counters (samples, training clock)."""
        track.seen, track.train_time = self.progress.seen, self.progress.train_time
        return track

    def _evaluate(self, step: int, split: Split) -> tuple[float, float]:
        """`evaluate`, once per step and split (a trunk's tracks ask for the same point)."""
        key = (step, id(split))
        if key not in self._memo:
            self._memo[key] = evaluate(self.model, split, self.batcher)
        return self._memo[key]

    def _curve_point(self, step: int, p: Progress | None = None, lr: float | None = None) -> bool:
        """One learning-curve point after `step` (of `p`: the run's own progress, or a branch
        track's); with a validation split it is a validation point (selection and early stopping:
        True when patience has run out)."""
        p = p or self.progress
        lr = self.schedule.lr(step) if lr is None else lr
        if self.splits.val is not None and self.objective.classifies:
            va, vl = self._evaluate(step, self.splits.val)
            p.curve.append(
                _point(step + 1, p.seen, self.n, p.losses[-p.since :], math.nan, math.nan, lr, p.train_time, val=(va, vl))
            )
            p.since = 0
            p.best.update(va, step + 1, self.model)
            return self.patience is not None and p.best.bad >= self.patience and step + 1 >= self.earliest
        acc, tl = self._evaluate(step, self.splits.curve) if self.objective.classifies else (math.nan, math.nan)
        p.curve.append(_point(step + 1, p.seen, self.n, p.losses[-p.since :], acc, tl, lr, p.train_time))
        p.since = 0
        return False

    def _stop_clock(self) -> None:
        _sync(self.device)
        self.progress.train_time += time.perf_counter() - self.t0

    def _result(self, ran: int, stop: bool) -> TrainResult:
        """The final test evaluation and the last curve point (with a validation split: the final
        validation numbers and the test accuracy of the best validation checkpoint)."""
        p, classifies = self.progress, self.objective.classifies
        acc, test_loss = evaluate(self.model, self.splits.test, self.batcher) if classifies else (math.nan, math.nan)
        last = p.losses[-p.since :] if p.since else p.losses[-1:]
        tail = p.losses[-max(1, ran // 10) :]
        out = TrainResult(
            test_acc=acc,
            test_loss=test_loss,
            train_loss=sum(tail) / len(tail),
            best_test_acc=math.nan,
            steps=ran,
            samples_seen=p.seen,
            epochs=p.seen / self.n,
            train_time_s=p.train_time,
            curve=p.curve,
            resumes=p.resumes,
            resumed_from_step=p.step,
            compile_s=self.compile_s if self.compile_s is not None else math.nan,
            max_steps=self.total,
            trunk_steps_reused=self.reused,
        )
        lr = self.schedule.lr(ran - 1)
        if self.splits.val is None or not classifies:
            p.curve.append(_point(ran, p.seen, self.n, last, acc, test_loss, lr, p.train_time))
            out.best_test_acc = max(q["test_acc"] for q in p.curve) if classifies else math.nan
            return out
        self._validation_result(out, ran, stop, last, lr)
        return out

    def _validation_result(self, out: TrainResult, ran: int, stop: bool, last: list[float], lr: float) -> None:
        """Fill `out`'s validation numbers; the last curve point carries them and the test numbers."""
        p, acc, test_loss = self.progress, out.test_acc, out.test_loss
        if stop:  # the run stopped at an evaluation: its val numbers are the last curve point's
            va, vl = p.curve[-1]["val_acc"], p.curve[-1]["val_loss"]
            p.curve[-1].update(test_acc=acc, test_loss=test_loss)
        else:
            va, vl = evaluate(self.model, self.splits.val, self.batcher)
            p.best.update(va, ran, self.model)
            p.curve.append(_point(ran, p.seen, self.n, last, acc, test_loss, lr, p.train_time, val=(va, vl)))
        out.val_acc, out.val_loss, out.best_val_acc, out.best_val_step = va, vl, p.best.acc, p.best.step
        if p.best.step == ran:
            out.test_acc_at_best_val = acc
        else:  # the kept copy of the best weights, evaluated on the test split once, at the end
            self.model.load_state_dict(p.best.state)
            out.test_acc_at_best_val = evaluate(self.model, self.splits.test, self.batcher)[0]


@dataclass
class _Best:
    """The best validation accuracy so far, its step, a copy of those weights (in memory, on the
    model's device), and the evaluations since it (early stopping's patience counter). Checkpoints
    pickle it under this name (harness.train._Best): renaming it would orphan them."""

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
