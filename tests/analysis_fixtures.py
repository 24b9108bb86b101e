"""A fake but schema-correct results directory for the analysis tests.

Errors follow a known law per family, `err = E + A·(N/1e6)^-alpha + B·D^-beta` (N params,
D data size), with 2% multiplicative noise, so fits can be checked against the truth and
ViT overtakes ResNet at a few thousand images. Two failure modes are planted (see
`_failure`): one OOM trial in an otherwise ok cell and one cell where every seed diverged.

Regenerate the golden tables (tests/golden/) after an intended format change with
    python -m tests.analysis_fixtures golden
(from the repository root) and review the diff before committing.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

FAMILIES = ("resnet", "vit", "mixer", "convnext")
# family -> (E, A, alpha, B, beta) of err = E + A·(N/1e6)^-alpha + B·D^-beta
LAWS = {
    "resnet": (0.06, 0.10, 0.30, 3.0, 0.40),
    "vit": (0.03, 0.10, 0.35, 30.0, 0.65),
    "mixer": (0.05, 0.12, 0.30, 20.0, 0.58),
    "convnext": (0.05, 0.09, 0.35, 6.0, 0.48),
}
# family -> size -> (params, GMACs at 32 px); small-image shapes of a few hundred k to 5M
SHAPES = {
    "resnet": {"xs": (272_474, 0.0410), "s": (1_203_322, 0.162), "m": (4_795_210, 0.651)},
    "vit": {"xs": (301_770, 0.0195), "s": (1_190_986, 0.0771), "m": (4_756_234, 0.308)},
    "mixer": {"xs": (287_690, 0.0182), "s": (1_150_858, 0.0729), "m": (4_602_890, 0.291)},
    "convnext": {"xs": (318_538, 0.0226), "s": (1_262_794, 0.0897), "m": (5_041_162, 0.357)},
}
_GFLOP_S = {"resnet": 180.0, "vit": 140.0, "mixer": 160.0, "convnext": 120.0}  # fake device speed
OOM = "OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 7.79 GiB total)"
NAN = "FloatingPointError: loss is NaN at step 12 (lr=0.003)"
EPOCHS = 10


def true_error(family: str, params: float, data_size: float) -> float:
    e, a, alpha, b, beta = LAWS[family]
    return e + a * (params / 1e6) ** -alpha + b * data_size**-beta


def _gmacs(family: str, size: str, image_size: int) -> float:
    """Convs and token-MLPs grow with pixels; ViT attention adds a pixels² term."""
    base = SHAPES[family][size][1]
    r = (image_size / 32) ** 2
    return base * r + (0.05 * base * r * r if family == "vit" else 0.0)


def _trial_id(cfg: dict) -> str:
    return hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:16]


def _failure(family: str, size: str, data_size: int, seed: int, grid: dict) -> str:
    """OOM: last family, largest size and data size, last seed (its cell keeps other seeds).
    NaN: third family (mixer by default), smallest size and data size, every seed."""
    fams, sizes, data_sizes = grid["families"], grid["sizes"], grid["data_sizes"]
    if family == fams[-1] and size == sizes[-1] and data_size == data_sizes[-1] and seed == grid["seeds"][-1]:
        return OOM
    if len(fams) >= 3 and family == fams[2] and size == sizes[0] and data_size == data_sizes[0]:
        return NAN
    return ""


def make_rows(
    *,
    families: tuple[str, ...] = FAMILIES,
    sizes: tuple[str, ...] = ("xs", "s"),
    data_sizes: tuple[int, ...] = (1000, 4000, 16000),
    seeds: tuple[int, ...] = (0, 1),
    image_sizes: tuple[int, ...] = (32,),
    fail: bool = True,
    noise: float = 0.02,
    study: str = "fixture",
    rng_seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(trials, curves) with every schema_version 1 column filled."""
    rng = np.random.default_rng(rng_seed)
    grid = {"families": families, "sizes": sizes, "data_sizes": data_sizes, "seeds": seeds}
    trials, curves = [], []
    i = 0
    for family in families:
        for size in sizes:
            for image_size in image_sizes:
                for data_size in data_sizes:
                    for seed in seeds:
                        err = _failure(family, size, data_size, seed, grid) if fail else ""
                        row = _row(family, size, image_size, data_size, seed, err, rng, noise, study, i)
                        trials.append(row)
                        if not err:
                            curves += _curve(row)
                        i += 1
    return pd.DataFrame(trials), pd.DataFrame(curves)


def _row(
    family: str,
    size: str,
    image_size: int,
    data_size: int,
    seed: int,
    error: str,
    rng: np.random.Generator,
    noise: float,
    study: str,
    i: int,
) -> dict:
    params, _ = SHAPES[family][size]
    gmacs = _gmacs(family, size, image_size)
    cfg = {
        "family": family,
        "size": size,
        "image_size": image_size,
        "data_size": data_size,
        "seed": seed,
        "epochs": EPOCHS,
        "batch_size": 128,
        "lr": 0.003,
        "dataset": "fashion_mnist",
    }
    err = true_error(family, params, data_size) * math.exp(noise * rng.standard_normal())
    ok = not error
    infer = _GFLOP_S[family] / gmacs * math.exp(0.03 * rng.standard_normal())
    nan = math.nan
    return {
        "study": study,
        "trial_id": _trial_id(cfg),
        "status": "ok" if ok else "failed",
        "error": error,
        "schema_version": 1,
        **cfg,
        "model": f"{family}@{size}",
        "steps": EPOCHS * data_size // 128,
        "config_json": json.dumps(cfg, sort_keys=True),
        "params": params,
        "fwd_gmacs": gmacs,
        "train_flops": 6 * gmacs * 1e9 * EPOCHS * data_size,
        "infer_img_s": infer if ok else nan,
        "infer_img_s_iqr": 0.05 * infer if ok else nan,
        "train_img_s": infer / 3.2 if ok else nan,
        "train_img_s_iqr": 0.05 * infer / 3.2 if ok else nan,
        "latency_ms_p50": 1000 / infer if ok else nan,
        "peak_mem_mb": 40 + params * 16 / 2**20,
        "peak_mem_kind": "rss",
        "mfu": nan,
        "test_acc": 1 - err if ok else nan,
        "test_loss": -math.log(1 - err) + 0.1 if ok else nan,
        "train_loss": -math.log(1 - err) if ok else nan,
        "best_test_acc": 1 - 0.97 * err if ok else nan,
        "device": "cpu",
        "dtype": "float32",
        "torch_version": "2.5.1",
        "timm_version": "1.0.12",
        "harness_version": "0.1.0",
        "git_sha": "0123abc",
        "host": "laptop-1",
        "started_at": f"2025-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}",
        "duration_s": 12.5 + i,
        "study_hash": "feedc0de",
    }


def _curve(row: dict) -> list[dict]:
    """Test accuracy rises from chance (10 classes) to the final value."""
    final, d = row["test_acc"], row["data_size"]
    out = []
    for epoch in range(1, EPOCHS + 1):
        acc = final - (final - 0.1) * math.exp(-epoch / 2.5)
        out.append(
            {
                "trial_id": row["trial_id"],
                "epoch": float(epoch),
                "step": epoch * d // 128,
                "samples_seen": epoch * d,
                "train_loss": -math.log(acc) * 0.9,
                "test_acc": acc,
                "test_loss": -math.log(acc),
                "lr": 0.003 * (1 - epoch / (EPOCHS + 1)),
                "elapsed_s": 1.2 * epoch,
            }
        )
    return out


# The store writes pandas nullable dtypes (harness/store.py COLUMNS); so do we, so the
# analysis is tested on pd.NA-capable Int64/string columns as it will meet them.
_INT_COLUMNS = ("schema_version", "image_size", "data_size", "seed", "steps", "batch_size", "params")


def store_dtypes(trials: pd.DataFrame) -> pd.DataFrame:
    out = trials.copy()
    for col in out.columns:
        if col in _INT_COLUMNS:
            out[col] = out[col].astype("Int64")
        elif out[col].dtype == object:
            out[col] = out[col].astype("string")
    return out


def write_results(root: Path, **grid) -> Path:
    """Write trials/<id>.parquet and curves/<id>.parquet as the store does; returns root."""
    trials, curves = make_rows(**grid)
    trials = store_dtypes(trials)
    (root / "trials").mkdir(parents=True, exist_ok=True)
    (root / "curves").mkdir(parents=True, exist_ok=True)
    for _, row in trials.iterrows():
        trials.loc[[row.name]].to_parquet(root / "trials" / f"{row['trial_id']}.parquet", index=False)
    if not curves.empty:
        for tid, g in curves.groupby("trial_id"):
            g.to_parquet(root / "curves" / f"{tid}.parquet", index=False)
    return root


GOLDEN_DIR = Path(__file__).parent / "golden"


def golden_outputs(results: Path) -> dict[str, str]:
    """file name in tests/golden -> rendered table, for `write_results` with the defaults."""
    from harness.analysis.io import load_results
    from harness.analysis.tables import build_table, render

    df, _ = load_results(results)
    table = build_table(df)
    return {f"table_default.{ext}": render(table, fmt) for ext, fmt in (("md", "md"), ("tex", "latex"), ("csv", "csv"))}


def _update_golden() -> None:
    import tempfile

    GOLDEN_DIR.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in golden_outputs(write_results(Path(tmp))).items():
            (GOLDEN_DIR / name).write_text(text, encoding="utf-8")
            print(f"wrote {GOLDEN_DIR / name}")


if __name__ == "__main__":
    if sys.argv[1:] != ["golden"]:
        sys.exit("usage (from the repository root): python -m tests.analysis_fixtures golden")
    _update_golden()
