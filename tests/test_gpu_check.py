"""scripts/gpu_check.sh --cpu-tiny: the one-command GPU check, shrunk to a CPU run, still runs end to end.

The GPU run itself (8 minutes on an H100) is done by hand; this keeps the script from rotting.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.data import DEBIAN_FASHION, FASHION_FILES

REPO = Path(__file__).resolve().parent.parent
HAVE_FASHION = (DEBIAN_FASHION / FASHION_FILES["train_images"]).is_file()


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_FASHION, reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
def test_cpu_tiny_gpu_check_writes_every_output(tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = dict(os.environ, PYTHON=sys.executable, TMPDIR=str(tmp_path))
    p = subprocess.run(
        ["bash", str(REPO / "scripts" / "gpu_check.sh"), str(DEBIAN_FASHION), str(out), "--cpu-tiny"],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    steps = [line.split("\t") for line in (out / "steps.tsv").read_text().splitlines()[1:]]
    assert [s[0] for s in steps] == ["env", "pytest", "profile", "study", "analysis", "packing", "summary", "total"]
    assert all(s[1] in ("0", "-") for s in steps), steps
    for name in (
        "env.txt",
        "pytest.txt",
        "profile.jsonl",
        "fit.txt",
        "table.md",
        "trials.csv",
        "curves.csv",
        "packing.txt",
        "packing.json",
        "summary.txt",
        "summary.md",
        "results.tar.gz",
        "gpu_check.tar.gz",
        "report/index.md",
    ):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    profiles = [json.loads(line) for line in (out / "profile.jsonl").read_text().splitlines()]
    assert [r["run"] for r in profiles] == ["resnet@xs", "vit@xs"] and all(r["status"] == "ok" for r in profiles)
    summary = (out / "summary.txt").read_text()
    assert "trials: 16 stored, 16 ok, 0 failed" in summary and "aggregate img/s" in summary
    # plain files at most 2 folders deep, and nothing left behind in the temporary work directory
    assert all(len(f.relative_to(out).parts) <= 3 for f in out.rglob("*"))
    assert not list(tmp_path.glob("gpu_check.*"))
    assert "done in" in p.stdout and "rc=0" in p.stdout
