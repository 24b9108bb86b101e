#!/usr/bin/env bash
# The whole GPU path of the harness in one command (issue 10), <= 8 minutes on one H100.
#
#   bash scripts/gpu_check.sh DATA_DIR OUT_DIR [--cpu-tiny]
#
# DATA_DIR holds the four Fashion-MNIST IDX .gz files; OUT_DIR receives everything (plain files, at
# most 2 folders deep). Needs only python3 with torch, timm, pandas, pyarrow, scipy, seaborn,
# matplotlib, rich, psutil, pyyaml, pytest: no ray, submitit or fvcore, and the harness is not
# installed (the checkout is put on PYTHONPATH and run as `python -m harness`, --backend local).
#
# Steps (a step that fails is recorded and the next one runs; each prints its wall time):
#   env       fingerprint: GPU, driver, python and package versions           -> env.txt
#   pytest    the gpu-marked tests                                               -> pytest.txt
#   profile   harness profile --json: resnet@50 vit@b16 convnext@tiny mixer@b16 swin@tiny, 224 px,
#             amp-bf16, train + infer, batch 128                                  -> profile.jsonl
#   study     harness run studies/gpu_data_scaling.yaml --backend local as one process per (model,
#             seed), GPU_CHECK_PACK of them at once (default 4: the study's gpus: 0.25, done by
#             processes because the local backend is sequential), seed 0 first; then one pass over
#             the whole grid (records the study's membership, runs anything left). Its time limit is
#             what is left of GPU_CHECK_BUDGET_S after the later steps' reserve; finished trials are
#             kept, and the summary says how many there are
#   analysis  harness report / fit / table on it                                 -> report/, fit*.txt, table*.md
#   packing   benchmarks/packing.py --quick: 1, 2, 4, 8 trials on the GPU         -> packing.txt, packing.json
#   profile_compile  vit@b16 training step with --compile (skipped if under 45 s of budget is left)
#                                                                                 -> profile.jsonl
#   summary   profiles (img/s, TFLOP/s, MFU, peak memory), study, fits, packing -> summary.txt, summary.md
#   bundle    everything above in one gpu_check.tar.gz (results/ as results.tar.gz inside)
#
# --cpu-tiny: the same steps shrunk to a <= 2-minute CPU run (xs models, profiles at 28 px, a 16-trial
# study at 16 px of 6-20 steps each with early stopping, 2 processes at once, no --compile, no
# bootstrap, packing N = 1, 2); CI runs it
# (tests/test_gpu_check.py) so the script never rots.
#
# Environment: PYTHON (default python3); GPU_CHECK_BUDGET_S (default 480, the whole run's target);
# GPU_CHECK_PACK (study processes at once: default 4, 2 with --cpu-tiny);
# GPU_CHECK_EXPORT=DIR also copies the bundle and the key small files (at most 6) to DIR, for
# tools that bring back only a few files; GPU_CHECK_SKIP="packing profile" skips named steps.
set -u
set -o pipefail

if [ $# -lt 2 ]; then
  echo "usage: bash scripts/gpu_check.sh DATA_DIR OUT_DIR [--cpu-tiny]" >&2
  exit 2
fi
DATA_DIR=$(cd "$1" 2>/dev/null && pwd) || { echo "error: DATA_DIR $1 is not a directory" >&2; exit 2; }
mkdir -p "$2" || exit 2
OUT=$(cd "$2" && pwd)
TINY=0
[ "${3:-}" = "--cpu-tiny" ] && TINY=1
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-python3}
BUDGET=${GPU_CHECK_BUDGET_S:-480}
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export HARNESS_DATA="$DATA_DIR"
export HARNESS_GIT_SHA="${HARNESS_GIT_SHA:-$(git -C "$REPO" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)}"
export PYTHONUNBUFFERED=1 RAY_USAGE_STATS_ENABLED=0
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
RES="$WORK/results"
rm -rf "$OUT/logs" "$OUT/report"
rm -f "$OUT"/*.jsonl "$OUT"/*.json "$OUT"/*.txt "$OUT"/*.md "$OUT"/*.csv "$OUT"/*.tsv "$OUT"/*.tar.gz
mkdir -p "$OUT/logs" "$OUT/report" "$RES"
printf 'step\trc\twall_s\tnote\n' > "$OUT/steps.tsv"
T_START=$(date +%s)
export OUT WORK RES REPO PY TINY T_START

if [ $TINY = 1 ]; then
  STUDY="$WORK/gpu_data_scaling_tiny.yaml"
  STUDY_NAME=gpu_data_scaling_tiny
  DEVICE=cpu
else
  STUDY="$REPO/studies/gpu_data_scaling.yaml"
  STUDY_NAME=gpu_data_scaling
  DEVICE=cuda
fi
export STUDY STUDY_NAME DEVICE

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
skipped() { case " ${GPU_CHECK_SKIP:-} " in *" $1 "*) return 0 ;; esac; return 1; }

# step NAME LIMIT_S CMD...: run with a time limit, log to logs/NAME.log, record rc and wall time
step() {
  local name=$1 limit=$2 t0 t1 rc note=""
  shift 2
  if skipped "$name"; then
    printf '%s\t%s\t%s\t%s\n' "$name" "-" "0" "skipped (GPU_CHECK_SKIP)" >> "$OUT/steps.tsv"
    echo "[gpu_check] $name: skipped"
    return 0
  fi
  echo "[gpu_check] $name: start (limit ${limit}s)"
  t0=$(now)
  # timeout signals the whole process group (python children included); functions are exported
  timeout -k 15 "$limit" bash -c '"$@"' "$name" "$@" >> "$OUT/logs/$name.log" 2>&1
  rc=$?
  t1=$(now)
  [ $rc = 124 ] && note="time limit ${limit}s reached"
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$(secs "$t0" "$t1")" "$note" >> "$OUT/steps.tsv"
  echo "[gpu_check] $name: rc=$rc in $(secs "$t0" "$t1") s ${note:+($note)}"
  tail -n 3 "$OUT/logs/$name.log" | sed "s/^/[gpu_check]   /"
  return 0
}

# --------------------------------------------------------------------------- env
env_step() {
  echo "date: $(date -u +%FT%TZ)"; echo "host: $(hostname)"; echo "repo: $REPO @ $HARNESS_GIT_SHA"
  echo "python: $PY ($($PY --version 2>&1))"; echo "mode: $([ $TINY = 1 ] && echo cpu-tiny || echo gpu)"
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,power.limit --format=csv 2>&1 || echo "nvidia-smi: not available"
  $PY - <<'EOF'
import os, platform
from importlib import metadata
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())
print("cuda available:", torch.cuda.is_available(), "devices:", [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())])
print("cpu:", platform.processor() or platform.machine(), "cores:", os.cpu_count())
for dist in ("timm", "pandas", "pyarrow", "scipy", "seaborn", "matplotlib", "rich", "psutil", "PyYAML", "pytest",
             "ray", "submitit", "fvcore", "triton"):
    try:
        print(f"{dist}: {metadata.version(dist)}")
    except metadata.PackageNotFoundError:
        print(f"{dist}: not installed")
EOF
  $PY -m harness --version
}
export -f env_step
step env 120 env_step
cp "$OUT/logs/env.log" "$OUT/env.txt"

# --------------------------------------------------------------------------- (a) gpu tests
GPU_TESTS=$(cd "$REPO" && grep -l "pytest.mark.gpu" tests/test_*.py | tr '\n' ' ')
step pytest $([ $TINY = 1 ] && echo 240 || echo 180) \
  bash -c "cd '$REPO' && $PY -m pytest -q -m gpu -p no:cacheprovider -o addopts='' -rs --continue-on-collection-errors $GPU_TESTS"
cp "$OUT/logs/pytest.log" "$OUT/pytest.txt"

# --------------------------------------------------------------------------- (b) profiles
# profile_one NAME ARGS...: one JSON line per run in profile.jsonl (a failure too, with its error)
profile_one() {
  local label=$1
  shift
  local raw="$WORK/profile_$label.json"
  $PY -m harness profile "$@" --json > "$raw"
  local rc=$?
  $PY - "$raw" "$label" "$rc" "$*" >> "$OUT/profile.jsonl" <<'EOF'
import json, sys
raw, label, rc, argv = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
try:
    rec = json.loads(open(raw).read())
except Exception as e:  # no record: the command failed before printing one
    rec = {"status": "failed", "error": f"no JSON record (exit {rc}): {type(e).__name__}"}
rec.update(run=label, argv=argv, exit_code=rc)
print(json.dumps(rec))
EOF
  return $rc
}
profiles() {
  local rc=0
  if [ $TINY = 1 ]; then
    for m in resnet@xs vit@xs; do
      profile_one "$m" "$m" --image-size 28 --in-chans 1 --num-classes 10 --batch-size 16 --mode both \
        --precision fp32 --device cpu --threads 1 --warmup 1 --iters 4 --max-rounds 1 || rc=1
    done
  else
    for m in resnet@50 vit@b16 convnext@tiny mixer@b16 swin@tiny; do
      profile_one "$m" "$m" --image-size 224 --batch-size 128 --mode both --precision amp-bf16 --device cuda || rc=1
    done
  fi
  return $rc
}
# compiled (after the study, which has the priority for the time budget): training mode only, the
# first call timed apart (train_compile_s); batch-1 latency and infer mode would each compile again
profile_compiled() {
  profile_one "vit@b16+compile" vit@b16 --image-size 224 --batch-size 128 --mode train --precision amp-bf16 \
    --device cuda --compile --no-latency
}
export -f profile_one profiles profile_compiled
step profile $([ $TINY = 1 ] && echo 150 || echo 300) profiles

# --------------------------------------------------------------------------- (c) data-scaling study
if [ $TINY = 1 ]; then
  cat > "$STUDY" <<'EOF'
# gpu_check.sh --cpu-tiny: gpu_data_scaling.yaml shrunk for a CPU (4 models x 4 sizes x 1 seed, 6-20 steps, 16 px)
name: gpu_data_scaling_tiny
dataset: {name: fashion_mnist}
grid:
  model: [resnet@xs, vit@xs, mixer@xs, convnext@xs]
  data_size: [100, 200, 400, 800]
  image_size: [16]
  seed: [0]
train: {batch_size: 32, lr: 2.0e-3, warmup_steps: 2, eval_size: 500, val_size: 200, eval_every: 3,
        early_stop: {patience: 2, min_steps: 6, max_steps: 20}}
profile: {batch_size: 8, warmup: 1, iters: 2}
resources: {cpus: 1, gpus: 0}
EOF
fi
cp "$STUDY" "$OUT/$(basename "$STUDY")"
# Packed: one `harness run` per (model, seed) with grid overrides, PACK at once, seed 0 first (trial
# ids do not depend on the rest of the grid, and each trial writes its own row file, so concurrent
# drivers are safe); if the time limit cuts the run, every family and size has its seed-0 row first.
# Then the whole grid once: it records the study's membership (the analysis reads --all anyway, the
# results directory holding only this run) and runs whatever a failed process left.
study_one() {
  echo "== $1 seed $2"
  $PY -m harness run "$STUDY" --backend local --results "$RES" --no-report "grid.model=[$1]" "grid.seed=[$2]"
}
study() {
  local rc=0 pack=${GPU_CHECK_PACK:-$([ $TINY = 1 ] && echo 2 || echo 4)} models seeds
  models=$($PY -c 'import sys, yaml; print(" ".join(yaml.safe_load(open(sys.argv[1]))["grid"]["model"]))' "$STUDY") || return 2
  seeds=$($PY -c 'import sys, yaml; print(" ".join(map(str, yaml.safe_load(open(sys.argv[1]))["grid"]["seed"])))' "$STUDY") || return 2
  for s in $seeds; do for m in $models; do echo "$m $s"; done; done \
    | xargs -P "$pack" -L 1 bash -c 'study_one "$0" "$1" > "$OUT/logs/study_${0/@/_}_$1.log" 2>&1' || rc=$?
  echo "== whole grid"
  $PY -m harness run "$STUDY" --backend local --results "$RES" --no-report || rc=$?
  return $rc
}
export -f study_one
export -f study
RESERVE=$([ $TINY = 1 ] && echo 40 || echo 200)  # analysis 45 + packing 60 + compiled profile 90 + summary 5
ELAPSED=$(( $(date +%s) - T_START ))
STUDY_LIMIT=$(( BUDGET - ELAPSED - RESERVE ))
[ $STUDY_LIMIT -lt 60 ] && STUDY_LIMIT=60
step study $STUDY_LIMIT study

# --------------------------------------------------------------------------- (d) report, fit, table
analysis() {
  local rc=0 d="$RES/$STUDY_NAME" boot=$([ $TINY = 1 ] && echo 0 || echo 200)  # --cpu-tiny: no bootstrap
  local y=test_acc_at_best_val  # early stopping: the test split at the best validation step
  $PY -m harness report "$d" --all --bootstrap "$boot" || rc=1
  $PY -m harness fit "$d" --all --y "$y" --x data_size --by family --holdout 1 --bootstrap "$boot" > "$OUT/fit.txt" 2>&1 || rc=1
  $PY -m harness table "$d" --all --value "$y" > "$OUT/table.md" 2>&1 || rc=1
  if [ $TINY = 0 ]; then
    $PY -m harness fit "$d" --all --y "$y" --x data_size --by family --holdout 1 --bootstrap "$boot" --json > "$OUT/fit.json" 2>>"$OUT/logs/analysis.log" || rc=1
    $PY -m harness fit "$d" --all --y test_loss --x data_size --by family --holdout 1 --bootstrap "$boot" > "$OUT/fit_test_loss.txt" 2>&1 || rc=1
    $PY -m harness table "$d" --all --value train_img_s > "$OUT/table_train_img_s.md" 2>&1 || rc=1
  fi
  $PY - "$d" "$OUT" <<'EOF' || rc=1
import sys
from pathlib import Path
from harness import store
d, out = Path(sys.argv[1]), Path(sys.argv[2])
store.read(d).to_csv(out / "trials.csv", index=False)  # every row, every column
curves = sorted((d / "curves").glob("*.parquet"))
if curves:
    import pandas as pd
    pd.concat([pd.read_parquet(p) for p in curves]).to_csv(out / "curves.csv", index=False)
EOF
  if [ -d "$d/report" ]; then  # flattened: report/index.md, report/*.png, ...
    find "$d/report" -type f -exec cp {} "$OUT/report/" \;
  fi
  return $rc
}
export -f analysis
step analysis 120 analysis

# --------------------------------------------------------------------------- packing
if [ $TINY = 1 ]; then
  step packing 90 $PY "$REPO/benchmarks/packing.py" --device cpu --quick --steps 5 --warmup 1 --images 512 --json "$OUT/packing.json"
else
  step packing 90 $PY "$REPO/benchmarks/packing.py" --device cuda --quick --json "$OUT/packing.json"
fi
cp "$OUT/logs/packing.log" "$OUT/packing.txt"

# --------------------------------------------------------------------------- compiled profile
if [ $TINY = 0 ]; then
  LEFT=$(( BUDGET - ($(date +%s) - T_START) - 10 ))
  if [ $LEFT -ge 45 ]; then
    step profile_compile $(( LEFT < 150 ? LEFT : 150 )) profile_compiled
  else
    printf '%s\t%s\t%s\t%s\n' profile_compile - 0 "skipped: ${LEFT}s left of GPU_CHECK_BUDGET_S=$BUDGET" >> "$OUT/steps.tsv"
    echo "[gpu_check] profile_compile: skipped (${LEFT}s left of the budget; raise GPU_CHECK_BUDGET_S)"
  fi
fi

# --------------------------------------------------------------------------- summary
(cd "$RES" && tar czf "$OUT/results.tar.gz" .)
step summary 60 $PY "$REPO/scripts/gpu_check_summary.py" "$OUT" "$RES/$STUDY_NAME"
cat "$OUT/summary.txt" 2>/dev/null

# --------------------------------------------------------------------------- bundle
T_TOTAL=$(( $(date +%s) - T_START ))
printf 'total\t-\t%s\t\n' "$T_TOTAL" >> "$OUT/steps.tsv"
(cd "$OUT" && tar czf "$WORK/gpu_check.tar.gz" --exclude=gpu_check.tar.gz . && mv "$WORK/gpu_check.tar.gz" "$OUT/")
if [ -n "${GPU_CHECK_EXPORT:-}" ]; then
  mkdir -p "$GPU_CHECK_EXPORT"
  cp "$OUT/gpu_check.tar.gz" "$OUT/summary.md" "$OUT/summary.txt" "$OUT/profile.jsonl" "$OUT/steps.tsv" "$GPU_CHECK_EXPORT/" 2>/dev/null
fi
echo "[gpu_check] done in ${T_TOTAL} s; outputs in $OUT (bundle: $OUT/gpu_check.tar.gz)"
FAILED=$(awk -F'\t' 'NR > 1 && $2 != "0" && $2 != "-" {print $1}' "$OUT/steps.tsv" | tr '\n' ' ')
if [ -n "$FAILED" ]; then
  echo "[gpu_check] steps with a non-zero exit: $FAILED(see logs/)"
  exit 1
fi
exit 0
