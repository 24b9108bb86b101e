"""The trainer before issue 10 (commit 5f258f9), run on this machine: the reference the current
CPU trainer must reproduce to the bit.

The reference used to be a table of numbers recorded on the machine of the day. Float32 training is
bit-reproducible on one machine, not across CPUs: on a CPU with AVX-512/AMX the oneDNN and ATen
kernels round differently (1 ulp after a step, 3% of accuracy after 30 steps of ViT on
Fashion-MNIST), so the table failed on such a machine although the trainer had not changed. The
old trainer, taken from git history and run here in a subprocess, gives the reference for the CPU
the test runs on.
"""

from __future__ import annotations

import inspect
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

COMMIT = "5f258f9"  # the last commit before issue 10's trainer (per-step `.item()`, host batches)
REPO = Path(__file__).resolve().parent.parent
KEYS = ("test_acc", "test_loss", "train_loss", "best_test_acc")

RUN = """
import json, sys
from pathlib import Path
import harness
assert Path(harness.__file__).is_relative_to(Path.cwd()), harness.__file__  # the old package, not the checkout
from harness import spec
from harness.trial import run_trial
out = {}
for i, text in enumerate(json.loads(sys.stdin.read())):
    path = Path(f"study{i}.yaml")
    path.write_text(text)
    for trial in spec.expand(spec.load_study(path)):
        r = run_trial(trial)
        assert r.ok, r.row["error"]
        out[f"{trial.dataset['name']}/{trial.model.name}"] = summary(r.row, r.curve)
print(json.dumps(out))
"""


def summary(row: dict, curve: list[dict]) -> dict:
    """What the golden comparison looks at: the row's four numbers and every curve point's."""
    return {k: row[k] for k in KEYS} | {"curve": [[p["step"], p["train_loss"], p["test_acc"], p["test_loss"]] for p in curve]}


def available() -> bool:
    """Whether this clone holds the old commit (a shallow clone does not)."""
    found = subprocess.run(["git", "-C", str(REPO), "cat-file", "-e", f"{COMMIT}^{{commit}}"], capture_output=True)
    return found.returncode == 0


def reference(studies: list[str], workdir: Path) -> dict[str, dict]:
    """Run `studies` (YAML texts) with the pre-issue-10 harness in a fresh interpreter: {dataset/model: summary}."""
    tar = subprocess.run(["git", "-C", str(REPO), "archive", COMMIT, "harness"], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        archive.extractall(workdir, filter="data")
    script = f"KEYS = {KEYS!r}\n" + inspect.getsource(summary) + RUN
    done = subprocess.run(
        [sys.executable, "-c", script], input=json.dumps(studies), cwd=workdir, capture_output=True, text=True, env=_env()
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = "."  # the extracted package comes first; the checkout is not on the path
    return env
