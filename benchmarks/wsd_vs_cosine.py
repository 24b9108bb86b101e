"""WSD cooldown branches vs independent cosine runs (issue 24): resnet@xs on Fashion-MNIST, budgets at
25/50/100% of one run, several seeds. Both arms run through `harness run` (local backend, one thread
per trial) in one process, one after the other:

- **wsd**: `schedule: wsd` (decay_fraction 0.2, linear), the budgets a `steps` axis: the runner trains
  the 100% run once as the trunk and each shorter budget as a branch from the trunk's checkpoint at
  its decay start (harness/branches.py);
- **cosine**: the default cosine schedule, every budget its own run.

Printed per budget: final test accuracy (mean ± std over seeds) of each arm and the difference in
points; then the compute each arm spent (counted training FLOPs, a branch charged only for the
steps it ran itself) as a multiple of the longest run's, and the wall time of each arm.

    python benchmarks/wsd_vs_cosine.py                      # 800 steps, 3 seeds (~15 min on 2 vCPUs)
    python benchmarks/wsd_vs_cosine.py --steps 200 --seeds 1 # a quick look
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STUDY = """name: {name}
dataset: {{name: fashion_mnist}}
grid:
  model: [resnet@xs]
  data_size: [60000]
  image_size: [28]
  seed: [{seeds}]
  steps: [{budgets}]
train: {{batch_size: 128, lr: 2.0e-3, warmup_steps: 25{extra}}}
profile: {{enabled: false}}
resources: {{cpus: 1, gpus: 0}}
"""


def run_arm(name: str, steps: list[int], seeds: int, extra: str, root: Path) -> tuple[object, float]:
    from harness import store
    from harness.runner import run_study

    path = root / f"{name}.yaml"
    budgets = ", ".join(map(str, steps))
    path.write_text(STUDY.format(name=name, seeds=", ".join(map(str, range(seeds))), budgets=budgets, extra=extra))
    t0 = time.perf_counter()
    code = run_study(path, backend="local", results=root / "results", report=False)
    wall = time.perf_counter() - t0
    if code != 0:
        raise SystemExit(f"{name}: harness run exited {code}")
    return store.read(root / "results" / name), wall


def spent(df: object) -> object:
    """Per row: the FLOPs its own steps cost (a branch: the steps after its trunk's)."""
    reused = df["trunk_steps_reused"].fillna(0).astype(float)
    return df["train_flops"] * (1 - reused / df["steps"].astype(float))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=800, help="the 100%% budget in steps (batch 128)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--out", default="/tmp/wsd_vs_cosine", help="scratch directory (results of both arms; wiped first)")
    args = ap.parse_args()
    os.environ.setdefault("HARNESS_DATA", "/usr/share/datasets/fashion-mnist")
    root = Path(args.out)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    steps = [args.steps // 4, args.steps // 2, args.steps]
    wsd, wsd_wall = run_arm("wsd", steps, args.seeds, ", schedule: wsd, decay_fraction: 0.2", root)
    cos, cos_wall = run_arm("cosine", steps, args.seeds, "", root)
    print(f"\nresnet@xs, Fashion-MNIST (60k train, 10k test), batch 128, {args.seeds} seeds, budgets {steps} steps")
    print(f"{'budget':>8} {'steps':>6} {'wsd acc %':>14} {'cosine acc %':>14} {'wsd - cosine':>13}")
    for s in steps:
        a, b = wsd[wsd["steps"] == s]["test_acc"] * 100, cos[cos["steps"] == s]["test_acc"] * 100
        print(
            f"{s / args.steps:>8.0%} {s:>6} {a.mean():>8.2f} ± {a.std():.2f} {b.mean():>8.2f} ± {b.std():.2f}"
            f" {a.mean() - b.mean():>+10.2f} pt"
        )
    longest = cos[cos["steps"] == args.steps]["train_flops"].sum()  # one longest run per seed
    print(
        f"compute (x the longest run): wsd {spent(wsd).sum() / longest:.3f}, cosine {cos['train_flops'].sum() / longest:.3f};"
        f" wall: wsd {wsd_wall:.0f} s, cosine {cos_wall:.0f} s ({wsd_wall / cos_wall:.2f}x)"
    )


if __name__ == "__main__":
    main()
