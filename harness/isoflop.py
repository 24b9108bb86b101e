"""`harness plan --isoflop`: IsoFLOP grids (Chinchilla approach 2) from the compute-matched ladders.

    harness plan --isoflop 1e12,2e12,4e12 --family resnet,vit --image-size 28 [--sizes 4] [--batch-size 64]

For each budget C and family: `--sizes` shapes from `harness plan`'s search (matched on forward
GMACs), each trained for the number of samples that puts it on C: steps = C / (f · batch), with
f the shape's *counted* training compute per sample (`flops_train`, forward + backward MACs, the
unit of the rows' `train_flops`). Integer steps leave each trial within half a step of its budget;
the printed error says how far.

Which sizes: a sliding ladder, as in Chinchilla's Figure 3. At budget C the largest shape trains
for `--min-steps` steps and each next one is `--ratio`x cheaper per sample (trains `--ratio`x
longer): f_i = C / (min_steps · batch · ratio^i), i = 0 .. sizes−1. With budgets `--ratio` apart
the ladders of neighbouring budgets share all but one shape.

Output: by default one line per trial, `{model: ..., steps: N}` at the stated batch size. `--study NAME`
instead prints one runnable study whose grid IS the IsoFLOP design: `epochs: 1` (samples seen = data_size)
and a `zip:` group (linked axes, grid.zip) that pairs each shape with the data size that puts it on its
budget. The shape at ladder rung j from the top (j = 0 its budget's largest) trains on
D_j = round(min_steps · ratio^j) · batch images, so every budget uses the same `--sizes` data sizes and only
on-budget cells run (the old cartesian layout, models x data sizes, also ran the off-budget cells: about
3/4 of its compute with budgets 2x apart). The cell's compute differs from its budget by as much as the
shape's counted training MACs per sample differ from its ladder target (the printed %), not by half a step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from harness.errors import StudyError

DEFAULT_SIZES = 4
DEFAULT_RATIO = 2.0
DEFAULT_MIN_STEPS = 100
DEFAULT_BATCH = 64
MAX_DATA = 60_000  # Fashion-MNIST's training split: the largest data_size a --study may use


@dataclass(frozen=True)
class IsoPoint:
    """One trial of an IsoFLOP grid: a shape trained for `steps` steps of `batch_size`."""

    family: str
    budget: float
    shape: dict
    params: int
    fwd_gmacs: float
    train_gmacs: float  # counted forward + backward GMACs per sample
    steps: int
    batch_size: int

    @property
    def samples(self) -> int:
        return self.steps * self.batch_size

    @property
    def compute(self) -> float:
        return self.train_gmacs * 1e9 * self.samples

    @property
    def error_pct(self) -> float:
        return 100.0 * (self.compute / self.budget - 1.0)

    def model_yaml(self) -> str:
        from harness.plan import yaml_value

        return "{" + ", ".join(f"{k}: {yaml_value(v)}" for k, v in {"family": self.family, **self.shape}.items()) + "}"

    def as_dict(self) -> dict:
        return {
            "family": self.family,
            "budget": self.budget,
            "shape": dict(self.shape),
            "params": self.params,
            "fwd_gmacs": self.fwd_gmacs,
            "train_gmacs": self.train_gmacs,
            "steps": self.steps,
            "batch_size": self.batch_size,
            "samples": self.samples,
            "compute": self.compute,
            "error_pct": round(self.error_pct, 4),
        }


def ladder_targets(budget: float, *, sizes: int, ratio: float, min_steps: int, batch_size: int) -> list[float]:
    """Training MACs per sample of the budget's shapes, largest first (module docstring)."""
    top = budget / (min_steps * batch_size)
    return [top / ratio**i for i in range(sizes)]


MAX_SIZES = 64  # shapes per budget
MAX_SPAN_DECADES = 12  # smallest to largest shape of one budget: 1e12x compute per sample


def check_design(budgets: list[float], sizes: int, ratio: float, min_steps: int, batch_size: int) -> None:
    """Refuse budgets and ladder settings no IsoFLOP grid can be planned from (StudyError naming the flag)."""
    if not budgets or not all(b > 0 and math.isfinite(b) for b in budgets):
        raise StudyError("budgets must be positive numbers", key="--isoflop", fix="e.g. --isoflop 1e12,2e12,4e12")
    for key, value, least in (("--sizes", sizes, 3), ("--min-steps", min_steps, 1), ("--batch-size", batch_size, 1)):
        if value < least:
            raise StudyError(
                f"{key} must be >= {least}",
                key=key,
                fix="a parabola needs 3 sizes (4-6 are usual)" if key == "--sizes" else "a positive count",
            )
    if not ratio > 1:
        raise StudyError(f"--ratio must be > 1, got {ratio:g}", key="--ratio", fix="e.g. --ratio 2")
    if sizes > MAX_SIZES:  # --sizes 100000 overflowed ratio**i (issue 27)
        raise StudyError(f"--sizes {sizes} is above {MAX_SIZES}", key="--sizes", fix="a parabola needs 3 sizes (4-6 are usual)")
    if (sizes - 1) * math.log10(ratio) > MAX_SPAN_DECADES:
        raise StudyError(
            f"--sizes {sizes} shapes {ratio:g}x apart span more than 1e{MAX_SPAN_DECADES} in compute per sample",
            key="--ratio" if ratio > 2 else "--sizes",
            fix="fewer sizes or a smaller --ratio",
        )


def plan_isoflop(
    family: str,
    budgets: list[float],
    *,
    image_size: int,
    sizes: int = DEFAULT_SIZES,
    ratio: float = DEFAULT_RATIO,
    min_steps: int = DEFAULT_MIN_STEPS,
    batch_size: int = DEFAULT_BATCH,
    in_chans: int = 1,
    num_classes: int = 10,
    patch: int | None = None,
) -> list[IsoPoint]:
    """`sizes` points per budget, smallest model first within each budget."""
    from harness import flops_train, plan, zoo

    check_design(budgets, sizes, ratio, min_steps, batch_size)
    out: list[IsoPoint] = []
    cache: dict[str, tuple] = {}
    for budget in sorted(budgets):
        targets = ladder_targets(budget, sizes=sizes, ratio=ratio, min_steps=min_steps, batch_size=batch_size)
        fwd = [t / 3 / 1e9 for t in reversed(targets)]  # training ~ 3x forward (2.97-3.00x counted); matched exactly below
        try:
            found = plan.plan(
                family, match="gmacs", targets=fwd, image_size=image_size, in_chans=in_chans, num_classes=num_classes, patch=patch
            )
        except StudyError as e:  # plan's --targets are derived here: name the budget the user gave (1e40 blamed --targets)
            raise StudyError(
                f"budget {budget:g} MACs: {e.what}", key="--isoflop", fix="use budgets this family can reach at this --image-size"
            ) from None
        distinct = {p.yaml() for p in found}
        if len(distinct) < min(3, sizes):  # linear has one shape: its grid printed it 4 times per budget (issue 27)
            raise StudyError(
                f"budget {budget:g} MACs: {family} has {len(distinct)} distinct shape(s) for the {sizes} sizes"
                + (" (linear has no width or depth: one shape)" if family == "linear" else ""),
                key="--family",
                fix="an IsoFLOP grid needs a family with sizes (mlp, resnet, vit, ...); train linear@xs as a baseline with plain harness run",
            )
        for p in found:
            key = p.yaml()
            if key not in cache:
                ms = zoo.resolve({"family": family, **p.shape})
                cache[key] = (p, flops_train.train_gmacs(ms, image_size=image_size, in_chans=in_chans, num_classes=num_classes))
            q, tg = cache[key]
            steps = max(1, round(budget / (tg * 1e9 * batch_size)))
            out.append(IsoPoint(family, budget, dict(q.shape), q.params, q.gmacs, tg, steps, batch_size))
    return out


def geometric_ratio(budgets: list[float]) -> float | None:
    """The common ratio of sorted budgets, or None when they are not a geometric series (1% tolerance)."""
    b = sorted(budgets)
    if len(b) < 2:
        return None
    r = [b[i + 1] / b[i] for i in range(len(b) - 1)]
    return r[0] if all(abs(x / r[0] - 1) < 0.01 for x in r) and r[0] > 1 else None


# ----------------------------------------------------------------------------- output


_SNIPPET_NOTE = (
    "# Each line is one trial: a shape and the train.steps that put it on its budget at the stated batch size.\n"
    "# For one runnable study of the whole design add --study NAME: its grid.zip (linked axes) pairs each\n"
    "# shape with the data size that puts it on its budget (epochs 1), so only on-budget cells run."
)


def snippet_lines(points: list[IsoPoint], header: str) -> list[str]:
    lines = [header, _SNIPPET_NOTE]
    items = [f"- {{model: {p.model_yaml()}, steps: {p.steps}}}" for p in points]
    width = max(map(len, items))
    last = None
    for p, item in zip(points, items):
        if (p.family, p.budget) != last:
            lines.append(f"## budget {p.budget:.4g}: {p.family}")
            last = (p.family, p.budget)
        lines.append(
            f"{item:<{width}}  # {p.samples:,} samples "
            f"(batch {p.batch_size}) x {p.train_gmacs * 1e3:.4g} train MMACs/sample = {p.compute:.4g} "
            f"({p.error_pct:+.2f}%); {p.params:,} params"
        )
    return lines


def ladder_data_sizes(*, sizes: int, ratio: float, min_steps: int, batch_size: int) -> list[int]:
    """D_j = round(min_steps · ratio^j) · batch, j = 0 .. sizes−1: the samples (epochs 1) of rung j from the top."""
    return [round(min_steps * ratio**j) * batch_size for j in range(sizes)]


def study_data_sizes(*, sizes: int, ratio: float, min_steps: int, batch_size: int) -> list[int]:
    """The ladder's data sizes, refused when the largest exceeds the training split."""
    data = ladder_data_sizes(sizes=sizes, ratio=ratio, min_steps=min_steps, batch_size=batch_size)
    if data[-1] > MAX_DATA:
        raise StudyError(
            f"the largest data size would be {data[-1]:,} images, over {MAX_DATA:,}",
            key="--min-steps",
            fix="lower --min-steps, --batch-size or --sizes",
        )
    return data


def study_cells(
    points: list[IsoPoint], *, sizes: int, ratio: float, min_steps: int, batch_size: int
) -> list[tuple[IsoPoint, int]]:
    """Each planned point with its on-budget data size (epochs 1), in the points' order (family, budget,
    smallest shape first); a (shape, data size) pair that two budgets share is kept once."""
    data = ladder_data_sizes(sizes=sizes, ratio=ratio, min_steps=min_steps, batch_size=batch_size)
    out, seen, rung, last = [], set(), 0, None
    for p in points:
        rung = rung + 1 if (p.family, p.budget) == last else 0
        last = (p.family, p.budget)
        d = data[sizes - 1 - rung]  # smallest shape first: the smallest shape trains on the most data
        if (p.model_yaml(), d) not in seen:
            seen.add((p.model_yaml(), d))
            out.append((p, d))
    return out


def study_text(
    name: str,
    points: list[IsoPoint],
    budgets: list[float],
    *,
    sizes: int,
    ratio: float,
    min_steps: int,
    batch_size: int,
    image_size: int,
    header: str,
) -> str:
    """One study: a grid.zip group pairing each planned shape with its on-budget data size (epochs 1)."""
    b = sorted(budgets)
    data = study_data_sizes(sizes=sizes, ratio=ratio, min_steps=min_steps, batch_size=batch_size)
    cells = study_cells(points, sizes=sizes, ratio=ratio, min_steps=min_steps, batch_size=batch_size)
    total = sum(p.train_gmacs * 1e9 * d for p, d in cells)
    worst = max(abs(p.train_gmacs * 1e9 * d / p.budget - 1) for p, d in cells)
    width = max(len(p.model_yaml()) for p, _ in cells)
    lines = [
        header,
        "# epochs 1, so samples seen = data_size; grid.zip pairs each shape with the data size that puts it on",
        f"# its budget: a budget's largest shape trains on {data[0]:,} images, each smaller one on {ratio:g}x more",
        f"# ({', '.join(f'{d:,}' for d in data)}). {len(cells)} trials, {budget_text(float(f'{total:.3g}'))} training MACs "
        f"in all, each within {100 * worst:.2g}% of its budget.",
        f"# Analyse: harness fit results/{name} --isoflop --y test_acc --x params --by family "
        f"--budgets {','.join(budget_text(c) for c in b)}",
        f"#          harness optimal results/{name} --budget {budget_text(b[-1] * ratio)} --by family",
        f"name: {name}",
        f"description: IsoFLOP design, budgets {', '.join(budget_text(c) for c in b)} training MACs, {sizes} sizes per budget",
        "dataset: {name: fashion_mnist}",
        "grid:",
        "  zip:   # each shape paired with the data size that puts it on its budget (linked axes)",
        "    - model:",
    ]
    for p, d in cells:
        c = p.train_gmacs * 1e9 * d
        lines.append(
            f"        - {p.model_yaml():<{width}}  # budget {budget_text(p.budget)}: {d:,} samples x "
            f"{p.train_gmacs * 1e3:.4g} train MMACs = {c:.4g} ({100 * (c / p.budget - 1):+.2f}%); {p.params:,} params"
        )
    lines += [
        f"      data_size: [{', '.join(str(d) for _, d in cells)}]   # = samples seen (epochs 1)",
        f"  image_size: [{image_size}]",
        "  seed: [0]",
        f"train: {{epochs: 1, batch_size: {batch_size}, optimizer: adamw, lr: 2.0e-3, weight_decay: 0.05, "
        f"schedule: cosine, warmup_steps: {max(1, min_steps // 10)}, eval_size: 5000, curve_eval_size: 500}}"
        "   # small evals: the smallest runs train on a few thousand images",
        "profile: {batch_size: 64, warmup: 3, iters: 5}",
        "resources: {cpus: 1, gpus: 0}",
    ]
    return "\n".join(lines) + "\n"


def budget_text(c: float) -> str:
    """1e12, 2.5e12: budgets as a user types them (not 1e+12)."""
    return f"{c:g}".replace("e+", "e")
