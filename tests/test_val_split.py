"""The validation split (train.val_size) and early stopping (train.early_stop), issue 11 items 3 and 6."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from harness import spec
from harness.data import Split, split_validation, subset
from harness.trial import run_trial
from tests.conftest import write_study


def _indexed(n: int = 1200, classes: int = 7) -> Split:
    """Images are their own index (so membership is checkable); classes of unequal size."""
    g = torch.Generator().manual_seed(3)
    labels = torch.multinomial(torch.arange(1, classes + 1, dtype=torch.double), n, replacement=True, generator=g)
    return Split(torch.arange(n).view(n, 1, 1, 1), labels)


def _ids(split: Split) -> set[int]:
    return set(split.images.flatten().tolist())


@pytest.mark.parametrize("val_size", [7, 50, 333])
def test_validation_never_overlaps_any_training_subset(val_size: int) -> None:
    full = _indexed()
    pool, val = split_validation(full, val_size)
    assert len(val) == val_size and len(pool) == len(full) - val_size
    assert _ids(pool) | _ids(val) == _ids(full) and not _ids(pool) & _ids(val)
    # stratified: each class's share of the validation split is its share of the data, to one image
    for c in range(7):
        share = (full.labels == c).sum().item() * val_size / len(full)
        assert abs((val.labels == c).sum().item() - share) < 1
    for seed in range(12):
        previous: set[int] = set()
        for n in (7, 10, 64, 100, 500, len(pool) - 1, len(pool), len(full)):
            train = subset(pool, n, seed)
            assert not _ids(train) & _ids(val), (seed, n)
            assert previous <= _ids(train)  # still nested across sizes
            previous = _ids(train)
    # fixed: the same images whatever else happens (no dependence on a trial's seed)
    assert _ids(split_validation(full, val_size)[1]) == _ids(val)


def test_val_size_zero_keeps_todays_subsets() -> None:
    full = _indexed()
    pool, val = split_validation(full, 0)
    assert val is None and pool is full


def _trial(tmp_path: Path, train: str, steps: int = 6) -> spec.Trial:
    p = write_study(tmp_path, models="[mlp@xs]", data_sizes="[64]", steps=steps)
    p.write_text(p.read_text().replace("warmup_steps: 1,", f"warmup_steps: 1, {train}"))
    return spec.expand(spec.load_study(p))[0]


def test_rows_report_validation_and_test_at_the_best_val_step(tmp_path: Path) -> None:
    out = run_trial(_trial(tmp_path, "val_size: 40,"))
    r = out.row
    assert r["status"] == "ok", r.get("traceback")
    for k in ("val_acc", "val_loss", "best_val_acc", "test_acc_at_best_val"):
        assert 0 <= r[k] < math.inf, k
    assert r["best_val_acc"] >= r["val_acc"] and r["best_val_step"] in {p["step"] for p in out.curve}
    assert math.isnan(r["best_test_acc"])  # deprecated: selects on test, so not filled with a validation split
    # curve points carry validation numbers; the test split is read only at the end
    assert all(not math.isnan(p["val_acc"]) for p in out.curve)
    assert all(math.isnan(p["test_acc"]) for p in out.curve[:-1]) and out.curve[-1]["test_acc"] == r["test_acc"]


def test_early_stopping_stops_after_patience_and_counts_what_ran(tmp_path: Path) -> None:
    # lr 1e-9: nothing improves after the first evaluation, so the run stops `patience` evaluations later
    r = run_trial(spec.expand(spec.load_study(_rewrite_steps_out(tmp_path)))[0]).row
    assert r["status"] == "ok", r.get("traceback")
    assert (r["steps"], r["max_steps"], r["best_val_step"]) == (6, 20, 2)  # evaluations at 2 (best), 4, 6 (stop)
    assert r["samples_seen"] == 6 * 16 and r["train_flops"] == pytest.approx(r["train_gmacs"] * 1e9 * 6 * 16)
    assert r["test_acc_at_best_val"] == pytest.approx(r["test_acc"], abs=0.05)  # lr 1e-9: the weights barely moved


def test_min_steps_holds_early_stopping_back(tmp_path: Path) -> None:
    p = _rewrite_steps_out(tmp_path, "val_size: 40, early_stop: {patience: 1, max_steps: 12, min_steps: 10}, lr: 1.0e-9,")
    r = run_trial(spec.expand(spec.load_study(p))[0]).row
    assert r["steps"] == 10 and r["max_steps"] == 12


def _rewrite_steps_out(
    tmp_path: Path, train: str = "val_size: 40, early_stop: {patience: 2, max_steps: 20}, lr: 1.0e-9,"
) -> Path:
    """The tiny study without its `steps:` (early_stop carries the budget)."""
    p = write_study(tmp_path, name="es", models="[mlp@xs]", data_sizes="[64]")
    p.write_text(
        p.read_text()
        .replace("steps: 4, ", "")
        .replace("lr: 1.0e-3,", "")
        .replace("warmup_steps: 1,", f"warmup_steps: 1, {train}")
    )
    return p
