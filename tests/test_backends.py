"""The backend protocol (issue 13 item 2) and one training-FLOPs function (item 3)."""

from __future__ import annotations

import json
import re
import stat
import sys
from pathlib import Path

import pytest

from harness import backends, runner, spec, store
from harness.backends import squeue
from harness.cli import main
from tests.conftest import write_study

RUNNER = Path(runner.__file__).read_text()


def test_runner_names_no_backend() -> None:
    """Every backend difference is a protocol answer: no import of a backend module, no branch on a name."""
    code = "\n".join(line.split("#")[0] for line in RUNNER.splitlines())  # comments may explain, code may not branch
    assert not re.search(r"backends\s+import\s+(slurm|ray_backend|local)|backends\.(slurm|ray_backend|local)\b", code)
    assert not re.search(r"""["'](slurm|ray|local)["']""", code.replace('backend: str = "ray"', ""))
    assert "WRITES_RESULTS" not in code and "hasattr(be" not in code and "squeue" not in code


@pytest.mark.parametrize("name", sorted(backends.BACKENDS))
def test_every_backend_implements_the_protocol(name: str) -> None:
    be = backends.get(name)
    assert isinstance(be, backends.Backend) and be.name == name
    assert type(be).execute is not backends.Backend.execute
    assert be.requires is None or be.install.startswith("pip install")


def test_one_squeue_caller() -> None:
    root = Path(backends.__file__).parents[2]
    callers = [
        p.relative_to(root).as_posix()
        for p in (root / "harness").rglob("*.py")
        if re.search(r"""["']squeue["']""", p.read_text())
    ]
    assert callers == ["harness/backends/squeue.py"]


def test_backend_flags_are_refused_by_backends_that_do_not_take_them(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    study, res = write_study(tmp_path), tmp_path / "res"
    for extra, flag in [(["--partition", "gpu"], "--partition"), (["--no-wait"], "--no-wait")]:
        for backend in ("local", "ray"):
            assert main(["run", str(study), "--backend", backend, "--results", str(res), *extra]) == 2
            err = capsys.readouterr().err
            assert f"{flag} applies to --backend slurm only" in err and len(err.strip().splitlines()) == 1
    assert not res.exists()


def test_slurm_section_is_checked_through_the_protocol_whatever_the_backend(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    study = write_study(tmp_path, extra="slurm: {partiton: gpu}\n")
    for backend in ("local", "ray", "slurm"):
        assert main(["run", str(study), "--backend", backend, "--dry-run", "--results", str(tmp_path / "r")]) == 2
        assert "did you mean partition" in capsys.readouterr().err


def test_dry_run_compute_equals_the_stored_train_flops(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The dry run counts training compute with the function the rows use (not an assumed 3x forward).
    40 images at batch 16: the last batch of a pass is never partial, so 3 steps see 48 images."""
    path = write_study(tmp_path, models="[resnet@xs, vit@xs]", data_sizes="[8, 40]", steps=3)
    study = spec.load_study(path)
    planned = runner.trial_compute(study, spec.expand(study))
    res = tmp_path / "res"
    assert main(["run", str(path), "--dry-run", "--results", str(res)]) == 0
    table = capsys.readouterr().out
    assert main(["run", str(path), "--backend", "local", "--results", str(res), "--no-report"]) == 0
    df = store.read(res / "tiny")
    stored = dict(zip(df["trial_id"], df["train_flops"]))
    assert [c["train_flops"] for c in planned] == pytest.approx([stored[t.trial_id] for t in spec.expand(study)], rel=1e-12)
    total = sum(stored.values())
    # issue 26: one convention, 1 MAC = 2 FLOPs; the stored train_flops column counts MACs
    assert f"total training compute {total:.3g} MACs = {2 * total:.3g} FLOPs" in table.replace("\n", " ")


def _fake_squeue(tmp_path: Path, lines: str) -> tuple[str, Path]:
    """A `squeue` on PATH that prints `lines` and logs each call."""
    bindir, calls = tmp_path / "bin", tmp_path / "squeue.calls"
    bindir.mkdir()
    exe = bindir / "squeue"
    exe.write_text(f"#!/bin/sh\necho \"$@\" >> {calls}\ncat <<'EOF'\n{lines}\nEOF\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return f"{bindir}:{Path(sys.executable).parent}:/usr/bin:/bin", calls


def test_status_shows_slurm_jobs_in_flight_through_the_protocol(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    out_dir = tmp_path / "res" / "s"
    (out_dir / "trials").mkdir(parents=True)
    (out_dir / "slurm").mkdir()
    trials = {"a" * 16: "77_0", "b" * 16: "77_1", "c" * 16: "77_2"}
    (out_dir / "slurm" / "jobs.json").write_text(json.dumps({"submissions": [{"array_job": "77", "trials": trials}]}))
    path, calls = _fake_squeue(tmp_path, "77_0 PENDING\n77_1 RUNNING\n77_2 COMPLETED")
    monkeypatch.setenv("PATH", path)
    squeue._cache.clear()
    assert backends.in_flight(out_dir) == {"a" * 16: "queued", "b" * 16: "running"}
    assert main(["status", str(out_dir)]) == 1
    text = capsys.readouterr().out
    assert re.search(r"queued\s+│\s+1", text) and re.search(r"running\s+│\s+1", text), text
    assert len(calls.read_text().splitlines()) == 1  # the second ask within SQUEUE_EVERY_S reused the answer


def test_squeue_answers_many_jobs_with_one_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, calls = _fake_squeue(tmp_path, "5_0 RUNNING\n5_1 PENDING")
    monkeypatch.setenv("PATH", path)
    squeue._cache.clear()
    assert squeue.active(["5_0", "5_1", "5_2"]) == {"5_0", "5_1"}
    assert squeue.active(["5_1"]) == {"5_1"}  # a subset: the same answer
    assert len(calls.read_text().splitlines()) == 1
    from harness.backends import slurm_claims

    assert slurm_claims.HOLDER.active(["5_2"]) == set()  # claims' liveness check asks the same function
    assert len(calls.read_text().splitlines()) == 1
