"""Start-up and optional packages, proven in fresh interpreters (this one has torch loaded already).

- `harness --help`, `status` of a results directory and the analysis verbs import neither torch nor
  ray (STYLE 13: a CLI whose --help takes seconds feels broken).
- Loading and expanding a study (every check included) imports no torch, torchvision or timm, and
  neither does re-running a finished study (issue 27: 4.5 of the 5.8 s of `harness run` at 10,000
  finished trials were `import harness.spec` pulling in torch).
- With ray, submitit and fvcore not installed (blocked: `sys.modules[name] = None` makes `import`
  fail as if absent), `run --backend local`, `profile`, `models`, `plan` and the analysis verbs work,
  and `--backend ray|slurm` is one line naming the package and its install command, exit 2, nothing written.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness import data
from harness.errors import StudyError
from tests.analysis_fixtures import write_results
from tests.conftest import write_study

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "ray", "submitit", "fvcore", "timm")

# runs each argv through harness.cli.main in one interpreter and reports exit codes and heavy modules loaded
PROBE = """
import json, sys
block = json.loads(sys.argv[1])
for name in block:
    sys.modules[name] = None  # import fails as if not installed
from harness.cli import main
codes = []
for argv in json.loads(sys.argv[2]):
    try:
        codes.append(main(argv))
    except SystemExit as e:  # --help
        codes.append(e.code)
loaded = sorted(m for m in json.loads(sys.argv[3]) if sys.modules.get(m) is not None)
print("PROBE " + json.dumps({"codes": codes, "loaded": loaded}))
"""


def _probe(tmp_path: Path, argvs: list[list[str]], block: tuple[str, ...] = ()) -> tuple[dict, str]:
    p = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(block), json.dumps(argvs), json.dumps(HEAVY)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env={
            "PYTHONPATH": str(ROOT),
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),
            "MPLBACKEND": "Agg",
            "RAY_AUTH_MODE": "disabled",
        },
    )
    line = next((x for x in p.stdout.splitlines() if x.startswith("PROBE ")), None)
    assert line is not None, p.stdout[-3000:] + p.stderr[-3000:]
    return json.loads(line[len("PROBE ") :]), p.stderr, p.stdout


def test_help_status_and_analysis_import_neither_torch_nor_ray(tmp_path: Path) -> None:
    res = write_results(tmp_path / "res" / "fake")
    argvs = [
        ["--help"],
        ["status", str(res)],
        ["table", str(res)],
        ["fit", str(res), "--y", "test_acc", "--x", "data_size", "--by", "family", "--bootstrap", "3"],
        ["plot", str(res), "--kind", "scaling", "--bootstrap", "3", "--out", str(tmp_path / "plots")],
        ["report", str(res), "--bootstrap", "3"],
    ]
    out, err, _ = _probe(tmp_path, argvs)
    assert out["codes"] == [0, 1, 0, 0, 0, 0], err[-3000:]  # status 1: the fixture has failed trials
    assert out["loaded"] == [], f"imported {out['loaded']}"


def test_verbs_with_a_study_argument_need_no_heavy_import_to_list_them(tmp_path: Path) -> None:
    """`harness run --help` and the lazy verbs' --help still show their options."""
    out, _, text = _probe(tmp_path, [["run", "--help"]])
    assert out["codes"] == [0] and out["loaded"] == [] and "--backend" in text
    out, _, text = _probe(tmp_path, [["plan", "--help"], ["profile", "--help"]], block=("ray", "submitit", "fvcore"))
    assert out["codes"] == [0, 0] and "--targets" in text and "--batch-size" in text


@pytest.mark.slow
def test_local_run_profile_models_plan_and_analysis_without_ray_submitit_fvcore(tmp_path: Path) -> None:
    study = write_study(tmp_path, models="[vit@xs]", data_sizes="[16]", steps=2)
    res = tmp_path / "r"
    argvs = [
        ["run", str(study), "--backend", "local", "--results", str(res)],  # with the auto-report
        ["models", "--family", "mixer", "--json"],
        ["profile", "mlp@xs", "--iters", "2", "--warmup", "1", "--blocks", "2", "--max-rounds", "1", "--no-latency", "--json"],
        ["plan", "--family", "vit", "--targets", "0.1M", "--json"],
        ["table", str(res / "tiny")],
        ["status", str(res / "tiny")],
    ]
    out, err, _ = _probe(tmp_path, argvs, block=("ray", "submitit", "fvcore"))
    assert out["codes"] == [0, 0, 0, 0, 0, 0], err[-3000:]
    assert (res / "tiny" / "report").is_dir()


def test_ray_or_slurm_backend_without_its_package_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    study = write_study(tmp_path, models="[vit@xs]", data_sizes="[16]", steps=2)
    res = tmp_path / "r"
    backends = [("ray", "ray", "pip install 'ray[default]'"), ("slurm", "submitit", "pip install submitit")]
    out, err, _ = _probe(
        tmp_path,
        [["run", str(study), "--backend", b, "--results", str(res)] for b, _, _ in backends],
        block=("ray", "submitit", "fvcore"),
    )
    assert out["codes"] == [2, 2]
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 2, err
    for line, (_, package, install) in zip(lines, backends):
        assert line.startswith("error: ") and f"'{package}'" in line and install in line, line
    assert not res.exists()


TORCH = ("torch", "torchvision", "timm")

# loads and expands each study file, then reports the trial counts and which of TORCH got imported
LOAD = """
import json, sys
from harness import spec
trials = [len(spec.expand(spec.load_study(path))) for path in sys.argv[1:]]
loaded = sorted(m for m in ("torch", "torchvision", "timm") if m in sys.modules)
print("PROBE " + json.dumps({"trials": trials, "loaded": loaded}))
"""

# re-runs a study through the runner (local backend) and reports its exit code, output and imports
RERUN = """
import io, json, sys
from rich.console import Console
from harness.runner import run_study
log = io.StringIO()
code = run_study(sys.argv[1], backend="local", results=sys.argv[2], report=False, console=Console(file=log, width=200))
loaded = sorted(m for m in ("torch", "torchvision", "timm") if m in sys.modules)
print("PROBE " + json.dumps({"code": code, "log": log.getvalue(), "loaded": loaded}))
"""


def _fresh(tmp_path: Path, code: str, *args: str) -> dict:
    """`code` in a fresh interpreter (this one has torch loaded); its PROBE line."""
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "RAY_AUTH_MODE": "disabled"}
    if os.environ.get("HARNESS_DATA"):
        env["HARNESS_DATA"] = os.environ["HARNESS_DATA"]
    p = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    line = next((x for x in p.stdout.splitlines() if x.startswith("PROBE ")), None)
    assert line is not None, p.stdout[-3000:] + p.stderr[-3000:]
    return json.loads(line[len("PROBE ") :])


def test_loading_and_expanding_a_study_imports_no_torch(tmp_path: Path) -> None:
    """Every family's names, shapes, strides and image checks, the dataset's describe and config checks,
    and the memory cap's load-time part run without torch; an image and a video study, a mapping model."""
    images = write_study(
        tmp_path,
        name="images",
        models="[resnet@xs, vit@s, swin@xs, convnext@xs, mixer@xs, mlp@xs, linear@xs, {family: vit, depth: 3}]",
        extra="eval: {linear_probe: true, few_shot: [1]}\n",
    )
    video = tmp_path / "video.yaml"
    video.write_text(
        "name: video\ndataset: {name: synthetic, num_classes: 4, image_size: 32, train_size: 64, test_size: 16, frames: 4}\n"
        "grid: {model: [r3d@xs, r2plus1d@xs, vivit@xs, vivit_fact@xs], data_size: [32], image_size: [32], frames: [4]}\n"
        "train: {steps: 2, batch_size: 8}\n"
    )
    out = _fresh(tmp_path, LOAD, str(images), str(video))
    assert out == {"trials": [16, 4], "loaded": []}


def test_a_fashion_mnist_study_with_a_model_mapping_loads_without_torch(tmp_path: Path) -> None:
    try:
        data.describe({"name": "fashion_mnist"})
    except StudyError:
        pytest.skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist, or HARNESS_DATA)")
    study = tmp_path / "fashion.yaml"
    study.write_text(
        "name: fashion\ndataset: {name: fashion_mnist}\n"
        "grid: {model: [{family: vit, patch: 7, width: 32, depth: 2, heads: 2}, resnet@xs], data_size: [1000, 4000],"
        " image_size: [28], seed: [0, 1]}\ntrain: {epochs: 1, batch_size: 64}\n"
    )
    assert _fresh(tmp_path, LOAD, str(study)) == {"trials": [8], "loaded": []}


def test_re_running_a_finished_study_imports_no_torch(tmp_path: Path) -> None:
    """The skip-finished path (load, expand, memory cap of nothing pending, backend choice, claims,
    store, compaction, summary) never needs torch; the first run trained with it in this process."""
    from rich.console import Console

    from harness.runner import run_study

    study = write_study(tmp_path, models="[linear@xs]", data_sizes="[32]", steps=2)
    results = tmp_path / "results"
    first = run_study(study, backend="local", results=results, report=False, console=Console(file=open(os.devnull, "w")))
    assert first == 0
    out = _fresh(tmp_path, RERUN, str(study), str(results))
    assert out["code"] == 0 and out["loaded"] == [], out
    assert "1 trials, 1 already done, 0 to run" in out["log"] and "1/1 ok" in out["log"], out["log"]
