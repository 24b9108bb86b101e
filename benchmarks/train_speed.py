"""Trained img/s: the current trainer vs the trainer before issue 10, side by side in one run.

  new  harness.train.train(): on CUDA, data on the device, losses read back every 50 steps, eval
       sums on the device; on CPU the same loop as before (reading a CPU loss costs nothing)
  old  `old_train` below: a copy of the loop at commit 5f258f9 (loss.item() every step, every batch
       gathered on the host and copied to the device, augmentation parameters drawn on the host,
       two .item() per evaluation batch); checkpointing left out (it is off in both runs)

Both train the same model from the same initialisation on the same Fashion-MNIST subset for the
same steps (the quickstart's settings: batch 64, AdamW, lr 2e-3, cosine, no augmentation); a rep
runs new and old back to back, alternating which goes first, so a change in the machine's load
does not favour one. img/s = samples_seen / train_time_s, the figure a trial row reports
(evaluations excluded). Printed per model: the median over reps of each, and new/old as the
median of per-rep ratios. On CPU the final accuracies must be equal (checked and printed).

    python benchmarks/train_speed.py                       # quickstart models, CPU, ~2-4 min on 1 core
    python benchmarks/train_speed.py --device cuda --steps 600 --batch-size 256 --reps 3

Not a test: tests never assert on wall-clock time (DESIGN.md). Results: benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from harness import data, spec, zoo  # noqa: E402
from harness.data import Batcher, BatchFetcher, Dataset, EpochSampler, Split, eval_batches, subset  # noqa: E402
from harness.train import (  # noqa: E402
    CURVE_POINTS,
    EVAL_BATCH,
    NonFiniteLoss,
    TrainResult,
    _point,
    autocast,
    lr_at,
    make_optimizer,
    total_steps,
    train,
)

QUICKSTART = ["resnet@xs", "vit@xs", "mixer@xs", "convnext@xs"]


# ----------------------------------------------------------------------------- the old loop (5f258f9)


@torch.no_grad()
def old_evaluate(model: torch.nn.Module, split: Split, batcher: Batcher) -> tuple[float, float]:
    was_training = model.training
    model.eval()
    correct, loss_sum = 0, 0.0
    for images, labels in eval_batches(split, EVAL_BATCH):
        x = batcher(images)
        y = labels.to(batcher.device)
        with autocast(batcher.device):
            logits = model(x)
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
    model.train(was_training)
    return correct / len(split), loss_sum / len(split)


def old_train(
    model: torch.nn.Module, ds: Dataset, *, image_size: int, data_size: int, seed: int, cfg: dict, device: torch.device
) -> TrainResult:
    train_split = subset(ds.train, data_size, seed)
    test_split = subset(ds.test, cfg["eval_size"], seed=0) if cfg["eval_size"] else ds.test
    curve_split = subset(test_split, cfg["curve_eval_size"], seed=0)
    batcher = Batcher(ds, image_size, device, cfg["augment"])
    sampler = EpochSampler(len(train_split), cfg["batch_size"], seed)
    fetch = BatchFetcher(train_split, sampler)
    aug_gen = torch.Generator().manual_seed(seed + 1)
    total = total_steps(cfg, len(train_split))
    every = cfg["eval_every"] or max(1, total // CURVE_POINTS)
    opt = make_optimizer(model, cfg)
    model.to(device).train()
    losses: list[float] = []
    curve: list[dict] = []
    seen, train_time, since = 0, 0.0, 0
    for step in range(total):
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
        value = loss.item()
        train_time += time.perf_counter() - t0
        if not math.isfinite(value):
            raise NonFiniteLoss(f"loss became {value} at step {step}")
        losses.append(value)
        seen += len(idx)
        since += 1
        if (step + 1) % every == 0 and step + 1 < total:
            acc, tl = old_evaluate(model, curve_split, batcher)
            curve.append(_point(step + 1, seen, len(train_split), losses[-since:], acc, tl, lr_at(step, total, cfg), train_time))
            since = 0
    acc, test_loss = old_evaluate(model, test_split, batcher)
    tail = losses[-max(1, total // 10) :]
    return TrainResult(
        test_acc=acc,
        test_loss=test_loss,
        train_loss=sum(tail) / len(tail),
        best_test_acc=acc,
        steps=total,
        samples_seen=seen,
        epochs=seen / len(train_split),
        train_time_s=train_time,
        curve=curve,
    )


# ----------------------------------------------------------------------------- the comparison


def one(which: str, model_name: str, ds: Dataset, cfg: dict, args: argparse.Namespace) -> TrainResult:
    torch.manual_seed(0)
    model = zoo.build(zoo.resolve(model_name), image_size=28, in_chans=1, num_classes=10)
    fn = train if which == "new" else old_train
    return fn(model, ds, image_size=28, data_size=args.data_size, seed=0, cfg=cfg, device=torch.device(args.device))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=",".join(QUICKSTART))
    p.add_argument("--device", default="cpu", help="cpu | cuda")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--data-size", type=int, default=4000)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None, metavar="PATH")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    ds = data.load({"name": "fashion_mnist"})
    cfg = dict(spec.TRAIN_DEFAULTS, steps=args.steps, batch_size=args.batch_size, eval_size=2000, curve_eval_size=500)
    out = []
    print(
        f"trained img/s, {args.device} ({torch.get_num_threads()} thread(s)), {args.steps} steps of batch "
        f"{args.batch_size}, {args.reps} reps; new/old = median of per-rep ratios"
    )
    print(f"{'model':<12} {'new img/s':>10} {'old img/s':>10} {'new/old':>8} {'ratio range':>14}  same accuracy")
    for name in args.models.split(","):
        rates: dict[str, list[float]] = {"new": [], "old": []}
        accs: dict[str, float] = {}
        for rep in range(args.reps):
            for which in ("new", "old") if rep % 2 == 0 else ("old", "new"):
                r = one(which, name, ds, cfg, args)
                rates[which].append(r.samples_seen / r.train_time_s)
                accs[which] = r.test_acc
        ratios = [a / b for a, b in zip(rates["new"], rates["old"])]
        row = {
            "model": name,
            "new_img_s": statistics.median(rates["new"]),
            "old_img_s": statistics.median(rates["old"]),
            "ratio": statistics.median(ratios),
            "ratio_min": min(ratios),
            "ratio_max": max(ratios),
            "new_acc": accs["new"],
            "old_acc": accs["old"],
            "rates": rates,
        }
        out.append(row)
        print(
            f"{name:<12} {row['new_img_s']:>10,.0f} {row['old_img_s']:>10,.0f} {row['ratio']:>8.3f} "
            f"{row['ratio_min']:>6.3f}-{row['ratio_max']:<7.3f}  {accs['new'] == accs['old']} ({accs['new']:.4f})"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"device": args.device, "args": vars(args), "rows": out}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
