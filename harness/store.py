"""The results layout on disk, atomic writes and resume bookkeeping.

    results/<study>/trials/<trial_id>.parquet   one row (schema below), rewritten when a failed trial is retried
    results/<study>/curves/<trial_id>.parquet   learning curve, one row per evaluation
    results/<study>/study.yaml                  the study file this directory was last run from

Every file is written to a temporary name in the same directory and renamed (`os.replace` is
atomic on POSIX), so a killed writer leaves either the old file or the new one, never half
of one. Readers ignore temporaries.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

SCHEMA_VERSION = 1

# DESIGN.md's results schema, in order; extend, never rename without a SCHEMA_VERSION bump
COLUMNS: dict[str, str] = {
    # identity
    "study": "string", "trial_id": "string", "status": "string", "error": "string", "schema_version": "Int64",
    # config
    "family": "string", "size": "string", "model": "string", "image_size": "Int64", "data_size": "Int64",
    "seed": "Int64", "steps": "Int64", "epochs": "float64", "batch_size": "Int64", "lr": "float64",
    "dataset": "string", "config_json": "string",
    # model
    "params": "Int64", "fwd_gmacs": "float64", "train_flops": "float64",
    # speed
    "infer_img_s": "float64", "infer_img_s_iqr": "float64", "train_img_s": "float64", "train_img_s_iqr": "float64",
    "latency_ms_p50": "float64", "peak_mem_mb": "float64", "peak_mem_kind": "string", "mfu": "float64",
    "profile_batch_size": "Int64",
    # speed, issue 5 (harness/profile.py): spreads, achieved rate, MFU and its reason, counted training MACs/img
    "infer_step_ms": "float64", "infer_cv": "float64", "train_step_ms": "float64", "train_cv": "float64",
    "latency_cv": "float64", "profile_extended": "boolean", "profile_unstable": "boolean", "profile_precision": "string",
    "infer_tflops_s": "float64", "train_tflops_s": "float64", "infer_mfu": "float64", "mfu_reason": "string",
    "peak_tflops": "float64", "train_gmacs": "float64",
    # quality
    "test_acc": "float64", "test_loss": "float64", "train_loss": "float64", "best_test_acc": "float64",
    "samples_seen": "Int64", "train_time_s": "float64",
    # provenance
    "device": "string", "dtype": "string", "threads": "Int64", "torch_version": "string", "timm_version": "string",
    "harness_version": "string", "git_sha": "string", "host": "string", "started_at": "string",
    "duration_s": "float64", "study_hash": "string",
    # hardware fingerprint (harness/hardware.py), filled when the trial is profiled
    "device_count": "Int64", "driver": "string", "cpu_model": "string", "cpu_count": "Int64", "cpu_capability": "string", "niceness": "Int64",
    "cuda_version": "string", "cudnn_version": "string", "tf32": "string",
    # issue 11 (harness/train.py): validation split, selection on it, early stopping's ceiling
    "val_acc": "float64", "val_loss": "float64", "best_val_acc": "float64", "best_val_step": "Int64",
    "test_acc_at_best_val": "float64", "max_steps": "Int64",
}
CURVE_COLUMNS = ["trial_id", "epoch", "step", "samples_seen", "train_loss", "test_acc", "test_loss", "lr", "elapsed_s",
                 "val_acc", "val_loss"]  # val_*: with train.val_size (issue 11)


@dataclass
class TrialOutput:
    """What a worker hands back: one row and its learning curve (plain Python, pickles cheaply)."""

    row: dict
    curve: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.row.get("status") == "ok"


def study_dir(results_root: str | Path, study: str) -> Path:
    return Path(results_root) / study


def row_frame(row: dict) -> pd.DataFrame:
    """One-row frame with the schema's dtypes (missing numbers are NA, so every file has the same schema)."""
    full = {c: row.get(c) for c in COLUMNS}
    for c, dtype in COLUMNS.items():
        v = full[c]
        if v is None or (isinstance(v, float) and math.isnan(v) and dtype != "float64"):
            full[c] = pd.NA if dtype != "float64" else math.nan
    df = pd.DataFrame([full]).astype(COLUMNS)
    extra = {k: v for k, v in row.items() if k not in COLUMNS}
    for k, v in extra.items():  # later issues add columns; keep them rather than drop them
        df[k] = [v]
    return df


def _atomic_parquet(df: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        df.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write(out: TrialOutput, directory: str | Path) -> Path:
    """Curve first, then the row: a row on disk means its curve is there too."""
    directory = Path(directory)
    tid = out.row["trial_id"]
    if out.curve:
        curve = pd.DataFrame(out.curve)
        curve.insert(0, "trial_id", tid)
        _atomic_parquet(curve[[c for c in CURVE_COLUMNS if c in curve]], directory / "curves" / f"{tid}.parquet")
    path = directory / "trials" / f"{tid}.parquet"
    _atomic_parquet(row_frame(out.row), path)
    return path


def trial_files(directory: str | Path) -> list[Path]:
    return sorted((Path(directory) / "trials").glob("*.parquet"))  # glob skips ".name.tmp" files


def read(directory: str | Path) -> pd.DataFrame:
    files = trial_files(directory)
    if not files:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in COLUMNS.items()})
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


def read_curves(directory: str | Path) -> pd.DataFrame:
    files = sorted((Path(directory) / "curves").glob("*.parquet"))
    if not files:
        return pd.DataFrame(columns=CURVE_COLUMNS)
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


def statuses(directory: str | Path) -> dict[str, str]:
    """trial_id -> status of what is on disk (reads only the two columns it needs)."""
    out = {}
    for f in trial_files(directory):
        df = pd.read_parquet(f, columns=["trial_id", "status"])
        out[df["trial_id"].iloc[0]] = df["status"].iloc[0]
    return out


def done_ids(directory: str | Path) -> set[str]:
    """Trials with an ok row: a re-run skips these and retries failed ones."""
    return {tid for tid, st in statuses(directory).items() if st == "ok"}


def save_study_file(src: str | Path, directory: str | Path) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".study.", suffix=".tmp", dir=directory)
    with os.fdopen(fd, "w") as f:
        f.write(Path(src).read_text())
    os.replace(tmp, directory / "study.yaml")
