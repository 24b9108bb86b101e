"""The results schema: the columns of a trial's row and of its learning curve, in order, and the
frames built on them (a one-row frame with the schema's dtypes, the empty frame, one row per trial).

At the store layer: harness.store writes and reads rows with it; the analysis and the docs (docs/reference/results.md)
tests read the same names (re-exported by harness.store).
"""

from __future__ import annotations

import math

import pandas as pd

SCHEMA_VERSION = 1

# DESIGN.md's results schema, in order; extend, never rename without a SCHEMA_VERSION bump
COLUMNS: dict[str, str] = {
    # identity
    "study": "string",
    "trial_id": "string",
    "status": "string",
    "error": "string",
    "schema_version": "Int64",
    # config
    "family": "string",
    "size": "string",
    "model": "string",
    "image_size": "Int64",
    "data_size": "Int64",
    "seed": "Int64",
    "steps": "Int64",
    "epochs": "float64",
    "batch_size": "Int64",
    "lr": "float64",
    "dataset": "string",
    "config_json": "string",
    # model
    "params": "Int64",
    "fwd_gmacs": "float64",
    "train_flops": "float64",
    # speed
    "infer_img_s": "float64",
    "infer_img_s_iqr": "float64",
    "train_img_s": "float64",
    "train_img_s_iqr": "float64",
    "latency_ms_p50": "float64",
    "peak_mem_mb": "float64",
    "peak_mem_kind": "string",
    "mfu": "float64",
    "profile_batch_size": "Int64",
    # speed, issue 5 (harness/profile.py): spreads, achieved rate, MFU and its reason, counted training MACs/img
    "infer_step_ms": "float64",
    "infer_cv": "float64",
    "train_step_ms": "float64",
    "train_cv": "float64",
    "latency_cv": "float64",
    "profile_extended": "boolean",
    "profile_unstable": "boolean",
    "profile_precision": "string",
    "infer_tflops_s": "float64",
    "train_tflops_s": "float64",
    "infer_mfu": "float64",
    "mfu_reason": "string",
    "peak_tflops": "float64",
    "train_gmacs": "float64",
    # quality
    "test_acc": "float64",
    "test_loss": "float64",
    "train_loss": "float64",
    "best_test_acc": "float64",
    "samples_seen": "Int64",
    "train_time_s": "float64",
    # provenance
    "device": "string",
    "dtype": "string",
    "threads": "Int64",
    "torch_version": "string",
    "timm_version": "string",
    "harness_version": "string",
    "git_sha": "string",
    "host": "string",
    "started_at": "string",
    "duration_s": "float64",
    "study_hash": "string",
    # hardware fingerprint (harness/hardware.py), filled when the trial is profiled
    "device_count": "Int64",
    "driver": "string",
    "cpu_model": "string",
    "cpu_count": "Int64",
    "cpu_capability": "string",
    "niceness": "Int64",
    "cuda_version": "string",
    "cudnn_version": "string",
    "tf32": "string",
    # issue 11 (harness/train.py): validation split, selection on it, early stopping's ceiling
    "val_acc": "float64",
    "val_loss": "float64",
    "best_val_acc": "float64",
    "best_val_step": "Int64",
    "test_acc_at_best_val": "float64",
    "max_steps": "Int64",
    "compile_s": "float64",  # train.compile: the compiling first step, outside train_time_s (issue 10)
    # issue 16 (harness/evals.py): probes of the frozen backbone's features; other k and transfer datasets are extra columns
    "probe_acc": "float64",
    "probe_l2": "float64",
    "probe_l2_from": "string",
    **{f"fewshot_{k}_acc{s}": "float64" for k in (1, 5, 10, 25) for s in ("", "_std")},
    "eval_time_s": "float64",
    # issue 17: video trials (NA for images); sample_unit says what infer_img_s/train_img_s count: "img" or "clip"
    "frames": "Int64",
    "frame_stride": "Int64",
    "sample_unit": "string",
    # issue 25 (harness/distributed.py): data-parallel trials; dp_*: the training loop's measured img/s and MFU, all ranks together
    "world_size": "Int64",
    "dp_img_s": "float64",
    "dp_mfu": "float64",
    # issue 24: branched wsd budgets (the steps a branch took from its shared trunk; 0 for the trunk, NA unbranched)
    "trunk_steps_reused": "Int64",
    # issue 24: successive halving stopped this cell (status "pruned"): the rung (0 = first), its step, the metric there
    "halving_rung": "Int64",
    "pruned_step": "Int64",
    "pruned_metric": "float64",
}
CURVE_COLUMNS = [
    "trial_id",
    "epoch",
    "step",
    "samples_seen",
    "train_loss",
    "test_acc",
    "test_loss",
    "lr",
    "elapsed_s",
    "val_acc",
    "val_loss",
]  # val_*: with train.val_size (issue 11)


def row_frame(row: dict) -> pd.DataFrame:
    """One-row frame with the schema's dtypes (missing numbers are NA, so every file has the same schema)."""
    full = {c: row.get(c) for c in COLUMNS}
    for c, dtype in COLUMNS.items():
        v = full[c]
        if v is None or (isinstance(v, float) and math.isnan(v) and dtype != "float64"):
            full[c] = pd.NA if dtype != "float64" else math.nan
    # each column built with its dtype: the same frame, values and conversions as DataFrame([full]).astype(COLUMNS),
    # whose per-column astype took 16-45 ms a row (most of a smoke trial's store time); this takes ~4 ms
    df = pd.DataFrame({c: pd.array([full[c]], dtype=dtype) for c, dtype in COLUMNS.items()})
    extra = {k: v for k, v in row.items() if k not in COLUMNS}
    for k, v in extra.items():  # later issues add columns; keep them rather than drop them
        df[k] = [v]
    return df


def empty_frame() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in COLUMNS.items()})


def dedupe(df: pd.DataFrame) -> pd.DataFrame:
    """One row per trial (per study when several are read together): the latest by started_at."""
    keys = [c for c in ("study", "trial_id") if c in df]
    if "trial_id" not in df or not df.duplicated(keys).any():
        return df.reset_index(drop=True)
    if "started_at" in df:
        df = df.sort_values("started_at", kind="stable", na_position="first")
    return df.drop_duplicates(keys, keep="last").sort_index().reset_index(drop=True)


# ----------------------------------------------------------------------------- what a Parquet table read back is


def is_row_table(table: object) -> bool:
    names = table.schema.names  # type: ignore[attr-defined]
    return "trial_id" in names and "status" in names and table.num_rows >= 1  # type: ignore[attr-defined]


def is_result_table(table: object) -> bool:
    return table.num_rows >= 1 and bool(set(table.schema.names) & set(COLUMNS))  # type: ignore[attr-defined]


def is_curve_table(table: object) -> bool:
    return "trial_id" in table.schema.names  # type: ignore[attr-defined]
