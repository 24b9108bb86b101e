"""summary.txt and summary.md for scripts/gpu_check.sh: step times, profiles, the study, fits, packing.

    python scripts/gpu_check_summary.py OUT_DIR RESULTS_DIR/STUDY

Reads what the earlier steps left in OUT_DIR (steps.tsv, profile.jsonl, fit.txt, packing.json) and
the study's rows through harness.store; anything missing is reported as missing, not an error.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path


def _num(v: object, fmt: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return format(v, fmt)


def _pct(v: object) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}%"


def steps_table(out: Path) -> list[str]:
    path = out / "steps.tsv"
    if not path.is_file():
        return ["(no steps.tsv)"]
    rows = [line.split("\t") for line in path.read_text().splitlines()[1:]]
    lines = [f"{'step':<10} {'exit':>5} {'wall s':>8}  note"]
    total = sum(float(r[2]) for r in rows if len(r) > 2 and r[0] != "total" and r[2].replace(".", "", 1).isdigit())
    lines += [f"{r[0]:<10} {r[1]:>5} {r[2]:>8}  {r[3] if len(r) > 3 else ''}" for r in rows]
    lines.append(f"{'(steps)':<10} {'':>5} {total:>8.1f}")
    return lines


def profile_table(out: Path) -> list[str]:
    path = out / "profile.jsonl"
    if not path.is_file():
        return ["(no profile.jsonl)"]
    lines = [
        f"{'run':<18} {'status':<7} {'batch':>5} {'prec':<9} {'infer img/s':>11} {'train img/s':>11} "
        f"{'train TFLOP/s':>13} {'train MFU':>9} {'infer MFU':>9} {'peak MB':>8} {'compile s':>9} {'lat ms':>7}"
    ]
    for line in path.read_text().splitlines():
        r = json.loads(line)
        mfu = r.get("train_mfu", r.get("mfu"))
        lines.append(
            f"{r.get('run', r.get('model', '?')):<18} {r.get('status', '?'):<7} {_num(r.get('batch_size'), 'd'):>5} "
            f"{str(r.get('precision', '-')):<9} {_num(r.get('infer_img_s'), ',.0f'):>11} {_num(r.get('train_img_s'), ',.0f'):>11} "
            f"{_num(r.get('train_tflops_s'), '.1f'):>13} {_pct(mfu):>9} {_pct(r.get('infer_mfu')):>9} "
            f"{_num(r.get('peak_mem_mb'), ',.0f'):>8} {_num(r.get('train_compile_s'), '.1f'):>9} "
            f"{_num(r.get('latency_ms_p50'), '.2f'):>7}"
        )
        if r.get("status") != "ok":
            lines.append(f"{'':<18} error: {r.get('error') or r.get('train_error') or r.get('infer_error')}")
    first = next((json.loads(x) for x in path.read_text().splitlines() if json.loads(x).get("device")), {})
    lines.append(
        f"device: {first.get('device', '?')} x{first.get('device_count', '?')}, driver {first.get('driver', '?')}, "
        f"torch {first.get('torch_version', '?')}, CUDA {first.get('cuda_version', '?')}, "
        f"peak {first.get('peak_tflops', '?')} TFLOP/s ({first.get('precision', '?')}); MFU reason: "
        f"{first.get('mfu_reason') or '-'}"
    )
    return lines


def study_lines(study_dir: Path) -> list[str]:
    try:
        from harness import store

        df = store.read(study_dir)
    except Exception as e:  # no results (the step failed or was skipped)
        return [f"(no study rows in {study_dir}: {type(e).__name__}: {e})"]
    if df.empty:
        return [f"(no study rows in {study_dir})"]
    ok = df[df["status"] == "ok"]
    lines = [f"trials: {len(df)} stored, {len(ok)} ok, {len(df) - len(ok)} failed"]
    for err in df.loc[df["status"] != "ok", "error"].head(5):
        lines.append(f"  failed: {err}")
    if ok.empty:
        return lines
    ok = ok.assign(trained_img_s=ok["samples_seen"] / ok["train_time_s"])
    lines.append(
        f"training time {ok['train_time_s'].sum():.1f} s over {int(ok['steps'].sum()):,} steps "
        f"({1000 * ok['train_time_s'].sum() / ok['steps'].sum():.2f} ms per step on average); "
        f"trial wall time {ok['duration_s'].sum():.1f} s"
    )
    # early stopping: the test split at the best validation step is the number the study reads
    best = "test_acc_at_best_val"
    y = best if best in ok and ok[best].notna().any() else "test_acc"
    steps = ok.groupby("data_size")["steps"].median()
    lines.append("steps by data_size (median over trials): " + " ".join(f"{int(n)}:{int(v)}" for n, v in steps.items()))
    lines.append(
        f"{'family':<10} {'ms/step':>8} {'trained img/s':>14} {'profiled train img/s':>21} {'MFU':>6}  {y} by data_size (mean over seeds)"
    )
    sizes = sorted(ok["data_size"].unique())
    for fam, g in ok.groupby("family"):
        accs = g.groupby("data_size")[y].mean()
        acc = " ".join(f"{int(n)}:{100 * accs[n]:.1f}" if n in accs else f"{int(n)}:-" for n in sizes)
        ms = 1000 * g["train_time_s"].sum() / g["steps"].sum()
        mfu = g["mfu"].median() if "mfu" in g else math.nan
        lines.append(
            f"{fam:<10} {ms:>8.2f} {g['trained_img_s'].median():>14,.0f} {_num(g['train_img_s'].median(), ',.0f'):>21} "
            f"{_pct(mfu):>6}  {acc}"
        )
    return lines


def packing_lines(out: Path) -> list[str]:
    path = out / "packing.json"
    if not path.is_file():
        return ["(no packing.json)"]
    p = json.loads(path.read_text())
    lines = [
        f"{p['model']} at {p['image_size']} px, batch {p['batch_size']}, {p['steps']} steps per trial, {p['device']}",
        f"{'N':>3} {'aggregate img/s':>16} {'gain':>6} {'per-trial img/s':>16} {'slowdown':>9}",
    ]
    for r in p["rows"]:
        lines.append(
            f"{r['n']:>3} {r['aggregate_img_s']:>16,.0f} {r['gain']:>5.2f}x {r['per_trial_img_s']:>16,.0f} {r['slowdown']:>8.2f}x"
        )
    return lines


def main() -> int:
    out, study_dir = Path(sys.argv[1]), Path(sys.argv[2])
    fit = (out / "fit.txt").read_text().rstrip().splitlines() if (out / "fit.txt").is_file() else ["(no fit.txt)"]
    sections = [
        ("Steps", steps_table(out)),
        ("Profiles (harness profile; MFU against the device's dense peak for the precision)", profile_table(out)),
        ("Data-scaling study", study_lines(study_dir)),
        ("Fits: test error = E + A n^-alpha per family", fit),
        ("Packing (benchmarks/packing.py)", packing_lines(out)),
    ]
    text = "\n\n".join(f"== {title}\n" + "\n".join(body) for title, body in sections) + "\n"
    (out / "summary.txt").write_text(text)
    md = (
        "# gpu_check summary\n\n"
        + "\n\n".join(f"## {title}\n\n```\n" + "\n".join(body) + "\n```" for title, body in sections)
        + "\n"
    )
    (out / "summary.md").write_text(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
