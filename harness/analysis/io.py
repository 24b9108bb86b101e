"""Read results written by the store into two DataFrames (trials, curves).

A results path is one of
- a study's results directory (read through `harness.store.ResultsDir`, the one reader),
- a parent of several study directories, read together,
- a single Parquet or CSV file of trial rows (then there are no curves).

Rows are returned as written: extra columns pass through, missing optional ones stay
missing; each analysis checks for the columns it needs with `require_columns`.

Which rows: a study directory holds the rows of every version of its study that ever ran
there. By default only the trials of the study as last run (its `study.json`) are used, and
a one-line note says how many others were left out; `include_all=True` (`--all`) keeps them.
Whatever is read, rows of different configurations are never averaged as seeds: when rows
differ in anything but the seed and the analysed axes (model, data size, image size), or come
from several studies, a `variant` column names the difference ("train.steps=40") and tables,
fits and plots keep each variant apart.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from harness.errors import StudyError, did_you_mean
from harness.store import CURVE_COLUMNS as _STORE_CURVE_COLUMNS
from harness.store import ResultsDir, dedupe

CURVE_COLUMNS = tuple(_STORE_CURVE_COLUMNS)
FIX_PATH = "pass a results directory (one `harness run` wrote) or a .parquet/.csv file of trial rows"
# config keys the analysis shows on its own axes (or averages over: seed), never part of a variant;
# `family`/`size` are the flat spelling of `model` in hand-made rows
AXES = frozenset({"seed", "model", "family", "size", "image_size", "data_size", "frames", "frame_stride"})


def load_results(path: str | Path, *, include_all: bool = False, curves: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(trials, curves) for a results directory or file; StudyError when nothing is there.
    Notes (rows left out, unreadable files skipped) go to stderr, one line each. curves=False: the
    curves frame is left empty, unread (`fit` needs the rows only: 10 curve points per trial)."""
    p = Path(path)
    if not p.exists():
        raise StudyError("results path does not exist", where=str(p), fix=FIX_PATH)
    notes: list[str] = []
    if p.is_file():
        trials, curves = read_table(p), pd.DataFrame(columns=list(CURVE_COLUMNS))
    else:
        trials, curves = _read_dirs(p, include_all, notes, with_curves=curves)
    if trials.empty:
        raise StudyError(
            "no trial rows found",
            where=str(p),
            fix="run the study first (`harness run STUDY.yaml`) or point at its results directory",
        )
    for note in notes:
        print(note, file=sys.stderr)
    return mark_variants(normalise(trials)), _normalise_curves(curves)


def study_dirs(p: Path) -> list[ResultsDir]:
    """The study directory `p`, or the study directories inside it."""
    here = ResultsDir(p)
    if here.is_results_dir():
        return [here]
    return [ResultsDir(c) for c in sorted(p.iterdir()) if c.is_dir() and ResultsDir(c).is_results_dir()]


def _read_dirs(p: Path, include_all: bool, notes: list[str], with_curves: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    dirs = study_dirs(p)
    trials, curves = [], []
    for rd in dirs:
        df = rd.read(lenient=True)
        kept, left_out = members(rd, df, include_all)
        if left_out:
            notes.append(left_out_note(rd, left_out))
        c = rd.read_curves() if with_curves else pd.DataFrame(columns=list(CURVE_COLUMNS))
        trials.append(kept)
        curves.append(c[c["trial_id"].isin(kept["trial_id"])] if len(kept) < len(df) else c)
        if rd.unreadable.paths:
            notes.append(rd.unreadable.note())
    trials = [t for t in trials if not t.empty]
    if not trials:
        raise StudyError(
            "no trials/*.parquet files found",
            where=str(p),
            fix="run the study first (`harness run STUDY.yaml`) or " + FIX_PATH,
        )
    curves = [c for c in curves if not c.empty]
    return (
        pd.concat(trials, ignore_index=True, sort=False) if len(trials) > 1 else trials[0],
        pd.concat(curves, ignore_index=True, sort=False) if curves else pd.DataFrame(columns=list(CURVE_COLUMNS)),
    )


def members(rd: ResultsDir, df: pd.DataFrame, include_all: bool = False) -> tuple[pd.DataFrame, int]:
    """The rows of the study as last run (all rows when include_all or when it is unknown), and how
    many were left out."""
    ids = None if include_all else rd.membership()
    if ids is None or df.empty or "trial_id" not in df:
        return df, 0
    keep = df["trial_id"].isin(ids)
    return df[keep].reset_index(drop=True), int((~keep).sum())


def left_out_note(rd: ResultsDir, n: int) -> str:
    return f"{rd.path}: {n} row{'s' if n != 1 else ''} from earlier versions of this study not shown; --all to include"


def read_table(p: Path) -> pd.DataFrame:
    suffix = p.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(p)
        if suffix in (".csv", ".txt"):
            return pd.read_csv(p)
    except (OSError, ValueError) as exc:  # pyarrow and the csv parser raise these
        raise StudyError(f"cannot read results file ({type(exc).__name__}: {exc})", where=str(p), fix=FIX_PATH) from exc
    raise StudyError(f"unsupported results file type {suffix!r}", where=str(p), fix=FIX_PATH)


# train keys a trial's config leaves out at their default (spec.UNHASHED_DEFAULTS, which a test keeps
# in step; spec itself imports torch): a row without one is read at that default, so a label says
# train.objective=supervised rather than train.objective=—
LEFT_OUT = {"train.compile": False, "train.val_size": 0, "train.objective": "supervised"}
# keys that exist only under one objective (SimCLR's): absent elsewhere, not "—"; they split rows only
# where they are set and differ
ONLY_WHERE_SET = ("train.temperature", "train.proj_dim")


def mark_variants(df: pd.DataFrame) -> pd.DataFrame:
    """Add `variant` when rows differ in more than seed and axes (see the module docstring)."""
    flat = [_flat_config(c) for c in (df["config_json"] if "config_json" in df else [None] * len(df))]
    keys = sorted({k for f in flat for k in f})
    # a key varies when rows of one model differ in it: a per-family or per-model setting (`overrides:`)
    # that is constant within each model is part of that model's recipe and splits no seeds
    models = df["model"].astype(str).tolist() if "model" in df else [""] * len(df)
    # one (model, config) per distinct pair: 10,000 rows are ~10 recipes (the seeds and axes differ, not the config)
    distinct = {(m, json.dumps(f, sort_keys=True, default=str)): f for m, f in zip(models, flat)}
    u_models, u_flat = [m for m, _ in distinct], list(distinct.values())
    varying = [
        k for k in keys if any(len(vals - _UNSET.get(k, set())) > 1 for vals in _values_by_model(u_models, u_flat, k).values())
    ]
    several = "study" in df and df["study"].nunique(dropna=False) > 1
    if not varying and not several:
        return df
    labels = []
    for i, f in enumerate(flat):
        parts = [str(df["study"].iloc[i])] if several else []
        parts += [f"{k}={_short(f.get(k))}" for k in varying if not (k in ONLY_WHERE_SET and f.get(k) is None)]
        labels.append(", ".join(parts))
    return df.assign(variant=labels)


_UNSET = {k: {"null"} for k in ONLY_WHERE_SET}  # json of None: not a value of its own for these keys


def _values_by_model(models: list[str], flat: list[dict], key: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for m, f in zip(models, flat):
        out.setdefault(m, set()).add(json.dumps(f.get(key), sort_keys=True, default=str))
    return out


def _flat_config(text: object) -> dict:
    try:
        cfg = json.loads(text) if isinstance(text, str) else {}
    except ValueError:
        cfg = {}
    out: dict = {}

    def walk(prefix: str, v: object) -> None:
        if isinstance(v, dict) and v:
            for k, sub in v.items():
                walk(f"{prefix}.{k}" if prefix else str(k), sub)
        else:
            out[prefix] = v

    if isinstance(cfg, dict):
        for k, v in cfg.items():
            if k not in AXES:
                walk(str(k), v)
        if isinstance(cfg.get("train"), dict):
            out = {**LEFT_OUT, **out}
    return out


def _short(v: object) -> str:
    return "—" if v is None else json.dumps(v, default=str) if isinstance(v, (list, dict)) else str(v)


def normalise(df: pd.DataFrame) -> pd.DataFrame:
    """Fill the columns every analysis leans on, without inventing results.

    - status/error: a plain CSV of results (no status column) is taken as all "ok".
    - model: derived from family@size when only those are present.
    - a re-run trial that was written twice keeps its latest row (by started_at if present;
      per study when several are read together), as `store.ResultsDir.read` does.
    """
    df = df.copy()
    if "status" not in df:
        df["status"] = "ok"
    # astype(object) first: an all-empty column read back as float64 NaN cannot take a str fill (pandas 3 warns, 4 raises)
    df["status"] = df["status"].astype(object).fillna("ok").astype(str)
    if "error" not in df:
        df["error"] = ""
    df["error"] = df["error"].astype(object).fillna("").astype(str)
    if "model" not in df and "family" in df:
        size = df["size"].fillna("").astype(str) if "size" in df else ""
        df["model"] = df["family"].astype(str) + np.where(size != "", "@" + size, "")
    return dedupe(df)


def _normalise_curves(curves: pd.DataFrame) -> pd.DataFrame:
    if curves.empty:
        return pd.DataFrame(columns=list(CURVE_COLUMNS))
    return curves.reset_index(drop=True)


def require_columns(df: pd.DataFrame, columns: Iterable[str], *, where: str = "", key: str = "") -> None:
    """StudyError naming the first missing column and the nearest existing ones."""
    for col in columns:
        if col not in df.columns:
            raise StudyError(
                f"column {col!r} is not in the results", where=where, key=key, fix=did_you_mean(col, [str(c) for c in df.columns])
            )


def ok_rows(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["status"] == "ok"]


def is_accuracy(column: str) -> bool:
    """Accuracy-type columns (test_acc, best_test_acc, top1_acc...) are fitted as error 1 − acc; a
    spread of accuracies (fewshot_10_acc_std) is not one."""
    return "acc" in column.lower() and not column.lower().endswith("_std")


def as_fraction(values: pd.Series) -> tuple[pd.Series, bool]:
    """Accuracy as a fraction; values above 1 mean percent (a CSV from a paper, say)."""
    v = pd.to_numeric(values, errors="coerce").astype(float)
    seen = v.dropna()
    is_percent = bool((seen > 1.0).any() and (seen <= 100.0).all())
    return (v / 100.0 if is_percent else v), is_percent
