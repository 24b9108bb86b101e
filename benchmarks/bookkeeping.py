"""Bookkeeping at 1,000 to 100,000 trials: the harness verbs before and after compaction, next to
reading the same rows with pyarrow alone (the floor).

A results directory of N realistic rows is made once and cached under /tmp/harness_bookkeeping/N:
every schema column filled, a 10-point learning curve per trial, the study's study.json. The row
and curve files are the ones the store's writer makes (one with `ResultsDir.write`, the rest
written in bulk: `_write_bulk`, 3.5 ms a trial here at load 3, 8 ms at load 5), and compact/ is built from the
tables they were cut from, without reading them back (`_compact_bulk`: exactly what
`ResultsDir.compact()` makes of them; tests/test_bookkeeping.py checks it). The row files stay:
a compacted row counts only while its file is there with the stamp it was compacted with, so the
directory is what a user has after `harness compact`. The study is a real grid (10 small models x
10 data sizes x N/100 seeds, synthetic data), so `harness run` finds every trial done (checked:
it must say so and rewrite no row file) and `--dry-run` lists the same N trials. Each verb runs in
a fresh process (wall: what a user waits for, imports included) calling the function the CLI
verb calls (work: that call alone), once with the row files only and once with compact/, or with
compact/ only (--compacted-only: at 100,000 trials the row-files column reads 200,000 files per
verb and compacts them again after each).

    python benchmarks/bookkeeping.py                  # 1,000 trials
    python benchmarks/bookkeeping.py --sizes 1000 10000
    python benchmarks/bookkeeping.py --sizes 10000 100000 --compacted-only
    python benchmarks/bookkeeping.py --growth 10000 100000   # fit and expansion at 10x the stored rows
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CACHE = Path("/tmp/harness_bookkeeping")
MODELS = ["resnet@xs", "resnet@s", "vit@xs", "vit@s", "mixer@xs", "mixer@s", "convnext@xs", "convnext@s", "mlp@xs", "linear@xs"]
DATA_SIZES = [500, 1000, 2000, 4000, 6000, 8000, 12000, 16000, 24000, 32000]
STUDY = """name: book{n}
description: bookkeeping benchmark ({n} trials)
dataset: {{name: synthetic, num_classes: 10, channels: 1, image_size: 28, train_size: 60000, test_size: 10000}}
grid:
  model: [{models}]
  data_size: [{sizes}]
  image_size: [28]
  seed: [{seeds}]
train: {{steps: 500, batch_size: 128, lr: 2.0e-3}}
profile: {{batch_size: 64, warmup: 3, iters: 10}}
resources: {{cpus: 1, gpus: 0}}
"""


def make(n: int, cache: Path = CACHE) -> tuple[Path, Path]:
    """(study file, results root) with n stored trials, compacted; cached under cache/n."""
    from harness import flops, spec
    from harness.store import ResultsDir, TrialOutput

    base = cache / str(n)
    study_path = base / f"book{n}.yaml"
    rd = ResultsDir(base / "results" / f"book{n}")
    if (base / "done").exists():
        return study_path, base / "results"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    seeds = max(1, n // (len(MODELS) * len(DATA_SIZES)))
    study_path.write_text(
        STUDY.format(
            n=n, models=", ".join(MODELS), sizes=", ".join(map(str, DATA_SIZES)), seeds=", ".join(map(str, range(seeds)))
        )
    )
    study = spec.load_study(study_path)
    trials = spec.expand(study)
    rng = random.Random(0)
    t0 = time.time()
    rows = [_row(tr, study.study_hash, rng, flops) for tr in trials]
    curves = [_curve(tr, rng) for tr in trials]
    rd.write(TrialOutput(rows[0], curves[0]))  # the store's own writer once: the schema and dtypes to match
    table, ctable = _write_bulk(rd, rows[1:], curves[1:])
    t1 = time.time()
    _compact_bulk(rd, table, ctable, [r["trial_id"] for r in rows[1:]], [len(c) for c in curves[1:]])
    print(f"  wrote {len(trials)} trials ({t1 - t0:.0f} s) and compact/ ({time.time() - t1:.0f} s)", file=sys.stderr)
    rd.record_study(study_path, study.name, study.study_hash, [t.trial_id for t in trials])
    (base / "done").touch()
    return study_path, base / "results"


def _write_bulk(rd: object, rows: list[dict], curves: list[dict]) -> tuple[object, object]:
    """The same one-row files `ResultsDir.write` makes, at a fraction of its cost: one frame with the
    schema's dtypes converted to Arrow once, then a slice per file. (`ResultsDir.write` builds a
    pandas frame and casts ~100 columns per row: ~0.1 s a row, 230 s per 1,000 on the loaded VM;
    that cost is per trial in a real run, where a trial takes minutes, so the store keeps it.)
    Returns the rows and the curve points as the two Arrow tables the files were cut from."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from harness.schema import COLUMNS, CURVE_COLUMNS
    from harness.store import atomic_write

    frame = pd.DataFrame([{c: r.get(c) for c in COLUMNS} for r in rows]).astype(COLUMNS)
    for k in [k for k in rows[0] if k not in COLUMNS]:
        frame[k] = [r[k] for r in rows]
    table = pa.Table.from_pandas(frame, preserve_index=False)
    points = [dict(p, trial_id=r["trial_id"]) for r, c in zip(rows, curves) for p in c]
    ctable = pa.Table.from_pandas(pd.DataFrame(points)[[c for c in CURVE_COLUMNS if c in points[0]]], preserve_index=False)
    at = 0
    for i, (r, c) in enumerate(zip(rows, curves)):
        tid, one, points_of = r["trial_id"], table.slice(i, 1), ctable.slice(at, len(c))
        atomic_write(rd.curve_file(tid), lambda tmp, t=points_of: pq.write_table(t, tmp))
        atomic_write(rd.trial_file(tid), lambda tmp, t=one: pq.write_table(t, tmp))
        at += len(c)
    return table, ctable


def _compact_bulk(rd: object, table: object, ctable: object, ids: list[str], lengths: list[int]) -> None:
    """compact/ exactly as `rd.compact()` leaves it, without reading back the files `_write_bulk` just cut
    from `table` / `ctable` (at 100,000 trials that read is 200,000 files): per directory, every row in
    file-name order with its file's stamp from one scandir (`Reader.listing`), a file not cut from the
    tables (the one `ResultsDir.write` wrote) read with the store's `read_file`, then the store's
    `stamped` and `write_compacted`. The row files stay: a compacted row counts only while its file is
    there with that stamp, so the fixture is the directory a user has after `harness compact`.
    tests/test_bookkeeping.py checks it against `rd.compact()` of the same files."""
    import numpy as np
    import pyarrow as pa

    from harness.rowfiles import ROW_SUFFIX, Reader, read_file, stamped
    from harness.store import write_compacted

    ends = np.cumsum(lengths)
    for directory, dest, bulk, spans in (
        (rd.trials, rd.compacted_trials, table, {tid: (i, i + 1) for i, tid in enumerate(ids)}),
        (rd.curves, rd.compacted_curves, ctable, {tid: (e - k, e) for tid, e, k in zip(ids, ends, lengths)}),
    ):
        listing = Reader([], directory, dest, None, bool).listing()
        pieces, run, names, stamps = [], [], [], []
        for name in sorted(listing):
            span = spans.get(name[: -len(ROW_SUFFIX)])
            other = None if span else read_file(directory / name)
            if span:
                run.append(np.arange(*span))
            elif run:
                pieces.append(bulk.take(np.concatenate(run)))
                run = []
            if other is not None:
                pieces.append(other)
            n = span[1] - span[0] if span else other.num_rows
            names += [name] * n
            stamps += [listing[name]] * n
        if run:
            pieces.append(bulk.take(np.concatenate(run)))
        rows = pa.concat_tables(pieces, promote_options="permissive") if len(pieces) > 1 else pieces[0]
        write_compacted(dest, stamped(rows, names, stamps))


def _row(tr: object, study_hash: str, rng: random.Random, flops: object) -> dict:
    dims = {"image_size": tr.image_size, "in_chans": 1, "num_classes": 10}
    gmacs = flops.forward_gmacs(tr.model, **dims)
    params = flops.param_count(tr.model, **dims)
    err = 0.08 + 2.0 * tr.data_size**-0.35 * math.exp(0.03 * rng.gauss(0, 1))
    fail = False  # every trial done, so `harness run` has nothing to retry (failed rows are retried)
    infer = 2e4 / (gmacs * 1e3 + 1) * math.exp(0.05 * rng.gauss(0, 1))
    nan = math.nan
    return {
        "study": tr.study,
        "trial_id": tr.trial_id,
        "status": "failed" if fail else "ok",
        "error": "OutOfMemoryError: batch_size=128 does not fit" if fail else "",
        "schema_version": 1,
        "family": tr.model.family,
        "size": tr.model.size,
        "model": tr.model.name,
        "image_size": tr.image_size,
        "data_size": tr.data_size,
        "seed": tr.seed,
        "steps": 500,
        "epochs": 500 * 128 / tr.data_size,
        "batch_size": 128,
        "lr": 2e-3,
        "dataset": "synthetic",
        "config_json": json.dumps(tr.config(), sort_keys=True),
        "params": params,
        "fwd_gmacs": gmacs,
        "train_flops": 3 * gmacs * 1e9 * 500 * 128,
        "infer_img_s": infer,
        "infer_img_s_iqr": 0.02 * infer,
        "train_img_s": infer / 3,
        "train_img_s_iqr": 0.02 * infer / 3,
        "latency_ms_p50": 1e3 / infer,
        "peak_mem_mb": 200 + params / 1e5,
        "peak_mem_kind": "rss",
        "mfu": nan,
        "profile_batch_size": 64,
        "infer_step_ms": 64e3 / infer,
        "infer_cv": 0.02,
        "train_step_ms": 192e3 / infer,
        "train_cv": 0.03,
        "latency_cv": 0.04,
        "profile_extended": False,
        "profile_unstable": False,
        "profile_precision": "fp32",
        "infer_tflops_s": infer * gmacs * 2e-3,
        "train_tflops_s": infer * gmacs * 2e-3,
        "infer_mfu": nan,
        "mfu_reason": "no peak known for CPUs",
        "peak_tflops": nan,
        "train_gmacs": 3 * gmacs,
        "test_acc": nan if fail else 1 - err,
        "test_loss": nan if fail else -math.log(1 - err) + 0.1,
        "train_loss": nan if fail else -math.log(1 - err),
        "best_test_acc": nan if fail else 1 - 0.97 * err,
        "samples_seen": 500 * 128,
        "train_time_s": 60 + rng.random() * 30,
        "device": "cpu",
        "dtype": "fp32",
        "threads": 1,
        "torch_version": "2.5.1",
        "timm_version": "1.0.12",
        "harness_version": "0.1.0",
        "git_sha": "5f258f9",
        "host": "node-1",
        "started_at": f"2025-01-01T{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}",
        "duration_s": 90 + rng.random() * 30,
        "study_hash": study_hash,
        "device_count": 1,
        "driver": "",
        "cpu_model": "AMD EPYC",
        "cpu_count": 2,
        "cpu_capability": "AVX2",
        "niceness": 0,
        "cuda_version": "",
        "cudnn_version": "",
        "tf32": "off",
    }


def _curve(tr: object, rng: random.Random) -> list[dict]:
    return [
        {
            "epoch": e * 0.1,
            "step": e * 50,
            "samples_seen": e * 6400,
            "train_loss": 2.3 / e,
            "test_acc": 1 - 0.9 / e,
            "test_loss": 2.3 / e + 0.1,
            "lr": 2e-3 * (1 - e / 11),
            "elapsed_s": 9.0 * e,
        }
        for e in range(1, 11)
    ]


def timed(call: str, setup: str) -> tuple[float, float, str]:
    """(wall seconds of a fresh process that imports `setup` and runs `call`, seconds of `call` alone,
    what the call printed). The difference of the two times is start-up: imports."""
    code = (
        f"import time, contextlib, io\n{setup}\nt0 = time.perf_counter()\nout = io.StringIO()\n"
        f"with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):\n"
        f"    {call}\nprint('WORK', time.perf_counter() - t0)\nprint(out.getvalue())"
    )
    t0 = time.perf_counter()
    p = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT))
    )
    wall = time.perf_counter() - t0
    if p.returncode != 0 or "WORK" not in p.stdout:
        raise SystemExit(f"{call} failed ({p.returncode}):\n{p.stderr[-2000:]}")
    work, printed = p.stdout.split("WORK", 1)[1].split("\n", 1)
    return wall, float(work), printed


def floor(rd: object, row_files: bool = True) -> tuple[float, float]:
    """pyarrow alone, every column: the per-trial files as one dataset (NaN unless row_files), and the compacted file."""
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    files = math.nan
    if row_files:
        t0 = time.perf_counter()
        ds.dataset(rd.trials, format="parquet").to_table()
        files = time.perf_counter() - t0
    t0 = time.perf_counter()
    pq.read_table(rd.compacted_trials)
    return files, time.perf_counter() - t0


def verbs(n: int, study_path: Path, results: Path) -> dict[str, tuple[str, str]]:
    """label: (setup, call): the function each CLI verb calls."""
    d, s, r = str(results / f"book{n}"), str(study_path), str(results)
    return {
        "status": ("from harness.runner import status", f"status({d!r})"),
        "table": ("from harness.analysis.tables import table_path", f"table_path({d!r})"),
        "fit --by family": (  # the summary: the forms auto did not choose are not refitted on all rows
            "from harness.analysis.fits import fit_path",
            f"fit_path({d!r}, 'test_acc', ['data_size'], by='family', form_params=False)",
        ),
        "fit --by family --json": (
            "from harness.analysis.fits import fit_path",
            f"fit_path({d!r}, 'test_acc', ['data_size'], by='family', form_params=True)",
        ),
        "run, all done (skip check)": (
            "from harness.runner import run_study",
            f"assert run_study({s!r}, backend='local', results={r!r}, report=False) == 0",
        ),
        "run --dry-run": (
            "from harness.runner import run_study",
            f"assert run_study({s!r}, backend='local', results={r!r}, dry_run=True) == 0",
        ),
    }


def bench(n: int, row_files: bool = True) -> list[tuple[str, float, float, float, float]]:
    """(what, wall before, work before, wall after, work after) per verb; before = row files only
    (NaN when not row_files: then only the compacted directory make() leaves is timed)."""
    from harness.rowfiles import Reader
    from harness.store import ResultsDir

    study_path, results = make(n)
    rd = ResultsDir(results / f"book{n}")
    out = []
    for label, (setup, call) in verbs(n, study_path, results).items():
        before = (math.nan, math.nan)
        if row_files:
            shutil.rmtree(rd.compact_dir, ignore_errors=True)  # before: the row files only
            before = timed(call, setup)[:2]
            rd.compact()
        listed = Reader([], rd.trials, rd.compacted_trials, None, bool).listing()
        wall, work, printed = timed(call, setup)
        if label.startswith("run, all done") and (
            f"{n} trials, {n} already done, 0 to run" not in " ".join(printed.split())  # rich wraps at 80
            or Reader([], rd.trials, rd.compacted_trials, None, bool).listing() != listed
        ):
            raise SystemExit(f"the skip check ran something or rewrote a row:\n{printed[-2000:]}")
        out.append((label, *before, wall, work))
        was = "" if math.isnan(before[0]) else f"{before[0]:.2f} / {before[1]:.2f} s -> "
        print(f"  {n}: {label}: {was}{wall:.2f} / {work:.2f} s (wall / work)", file=sys.stderr)
    first = math.nan
    if row_files:
        shutil.rmtree(rd.compact_dir, ignore_errors=True)
        t0 = time.perf_counter()
        rd.compact()
        first = time.perf_counter() - t0
    t0 = time.perf_counter()
    rd.compact()  # nothing new: reuses every compacted row
    out.append(("compact (first / again)", math.nan, first, math.nan, time.perf_counter() - t0))
    files, compacted = floor(rd, row_files)
    out.append(("floor: pyarrow reads every row", math.nan, files, math.nan, compacted))
    return out


def growth(n: int, big: int) -> None:
    """What grows with N past the stored fixture (10x it without writing 10x the files): the fit on the rows
    repeated in memory (seeds renumbered, 3% noise), and loading + expanding a study of `big` trials."""
    import numpy as np
    import pandas as pd

    from harness import spec
    from harness.analysis.fits import fit_results
    from harness.analysis.io import load_results

    _, results = make(n)
    df, _ = load_results(results / f"book{n}", curves=False)
    rng = np.random.default_rng(0)
    reps = big // n
    many = pd.concat(
        [
            df.assign(seed=df.seed + 1000 * i, test_acc=1 - (1 - df.test_acc) * np.exp(0.03 * rng.standard_normal(len(df))))
            for i in range(reps)
        ],
        ignore_index=True,
    )
    for rows, frame in ((n, df), (len(many), many)):
        for form_params, what in ((False, "summary"), (True, "--json")):
            t0 = time.perf_counter()
            fit_results(frame, "test_acc", ["data_size"], by="family", form="auto", form_params=form_params)
            took = time.perf_counter() - t0
            print(f"| {rows:,} | fit_results --by family (auto, 200 resamples; {what}), in memory | {took:.2f} |")
    for trials in (n, big):
        seeds = trials // (len(MODELS) * len(DATA_SIZES))
        path = CACHE / f"expand{trials}.yaml"
        path.write_text(
            STUDY.format(
                n=trials, models=", ".join(MODELS), sizes=", ".join(map(str, DATA_SIZES)), seeds=", ".join(map(str, range(seeds)))
            )
        )
        t0 = time.perf_counter()
        study = spec.load_study(path)
        t1 = time.perf_counter()
        spec.expand(study)
        print(f"| {trials:,} | spec.load_study / spec.expand | {t1 - t0:.2f} / {time.perf_counter() - t1:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000], help="trials in each results directory (default 1000)")
    ap.add_argument(
        "--compacted-only",
        action="store_true",
        help="time the compacted directory only (no row-files column, no first compaction, no row-files floor)",
    )
    ap.add_argument(
        "--growth", type=int, nargs=2, metavar=("N", "BIG"), help="fit and expansion at N and BIG rows (e.g. 10000 100000)"
    )
    args = ap.parse_args()
    if args.growth:
        growth(*args.growth)
        return
    results = {n: bench(n, row_files=not args.compacted_only) for n in args.sizes}
    print("seconds; wall = a fresh process (imports included), work = the verb's call alone\n")
    print("| rows | what | row files: wall | row files: work | compacted: wall | compacted: work |")
    print("|---:|---|---:|---:|---:|---:|")
    for n in args.sizes:
        for label, *cells in results[n]:
            print(f"| {n:,} | {label} | " + " | ".join(_s(v) for v in cells) + " |")


def _s(v: float) -> str:
    return "—" if math.isnan(v) else f"{v:.2f}"


if __name__ == "__main__":
    main()
