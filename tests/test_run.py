"""End to end on synthetic data: both backends, resume, failed rows, CLI exit codes."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from harness import spec, store
from harness.cli import main
from harness.trial import run_trial
from tests.conftest import write_study


def _results(root: Path, name: str = "tiny") -> pd.DataFrame:
    return store.read(root / name)


def test_run_trial_row_has_schema_and_provenance(tiny_study: Path) -> None:
    trial = spec.expand(spec.load_study(tiny_study))[0]
    out = run_trial(trial)
    r = out.row
    assert r["status"] == "ok", r.get("traceback")
    # mfu: NaN on CPU; frames, frame_stride: video trials only (None for images, by design);
    # issue 24's columns: branched wsd budgets and pruned (successive halving) rows only
    only_some = {"mfu", "frames", "frame_stride", "trunk_steps_reused", "halving_rung", "pruned_step", "pruned_metric"}
    assert set(store.COLUMNS) - only_some <= {k for k, v in r.items() if v is not None}
    assert r["sample_unit"] == "img" and r["frames"] is None
    assert r["params"] > 0 and r["fwd_gmacs"] > 0 and r["train_flops"] == pytest.approx(r["train_gmacs"] * 1e9 * 4 * 16)
    assert 2.5 < r["train_gmacs"] / r["fwd_gmacs"] < 3.1  # backward ~2x forward (counted, not assumed)
    assert r["infer_img_s"] > 0 and r["train_img_s"] > 0 and r["latency_ms_p50"] > 0
    assert 0 <= r["test_acc"] <= 1 and r["device"] == "cpu" and r["dtype"] == "fp32"
    assert r["torch_version"] and r["timm_version"] and r["git_sha"] and r["host"]
    assert json.loads(r["config_json"])["data_size"] == 32
    assert [p["step"] for p in out.curve] == [2, 4]
    # UTC with milliseconds (a retry in the same second must still read as the later run)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", r["started_at"]), r["started_at"]


def test_local_backend_end_to_end_and_resume(tmp_path: Path, tiny_study: Path) -> None:
    res = tmp_path / "res"
    assert main(["run", str(tiny_study), "--backend", "local", "--results", str(res), "--no-report"]) == 0
    df = _results(res)
    assert len(df) == 4 and (df["status"] == "ok").all()
    assert len(store.read_curves(res / "tiny")["trial_id"].unique()) == 4
    mtimes = {p.name: p.stat().st_mtime_ns for p in (res / "tiny" / "trials").iterdir()}
    # a re-run finds everything done and touches nothing
    assert main(["run", str(tiny_study), "--backend", "local", "--results", str(res), "--no-report"]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in (res / "tiny" / "trials").iterdir()} == mtimes


def test_failing_trial_is_a_row_and_exit_code_1_then_retried(tmp_path: Path) -> None:
    # lr 1e30: AdamW steps are ~lr in size, so the logits overflow and the loss is non-finite at once
    bad = write_study(tmp_path, name="boom", models="[vit@xs]", data_sizes="[32]", lr="1.0e+30")
    res = tmp_path / "res"
    assert main(["run", str(bad), "--backend", "local", "--results", str(res), "--no-report"]) == 1
    row = _results(res, "boom").iloc[0]
    assert row["status"] == "failed" and "NonFiniteLoss" in row["error"] and math.isnan(row["test_acc"])
    assert row["model"] == "vit@xs" and row["data_size"] == 32  # config columns are filled
    assert main(["status", str(res / "boom")]) == 1
    # failed trials are retried on the next run (here still failing: still one row)
    assert main(["run", str(bad), "--backend", "local", "--results", str(res), "--no-report"]) == 1
    assert len(_results(res, "boom")) == 1


def test_bad_input_exits_2_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("name: bad\ngrid: {model: [vit@xss], data_size: [100]}\n")
    res = tmp_path / "res"
    assert main(["run", str(p), "--results", str(res)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {p}: grid.model[0]") and "vit@xs" in err and len(err.splitlines()) == 1
    assert not res.exists()
    assert main(["run", str(write_study(tmp_path)), "--backend", "slurmm", "--results", str(res)]) == 2
    assert not res.exists()


def test_dry_run_prints_trials_and_runs_nothing(tmp_path: Path, tiny_study: Path, capsys: pytest.CaptureFixture) -> None:
    res = tmp_path / "res"
    assert main(["run", str(tiny_study), "--dry-run", "--results", str(res)]) == 0
    out = capsys.readouterr().out
    assert "resnet@xs" in out and "vit@xs" in out and "GMACs" in out and "4 to run" in out
    assert not res.exists()


def test_models_json(capsys: pytest.CaptureFixture) -> None:
    # a published ImageNet config counts with ImageNet's input by default (issue 26's rule): the paper's ViT-B/16
    assert main(["models", "--json", "--family", "vit"]) == 0
    rows = json.loads(capsys.readouterr().out)
    b16 = next(r for r in rows if r["name"] == "vit@b16")
    assert b16 == {
        "name": "vit@b16",
        "family": "vit",
        "size": "b16",
        "image_size": 224,
        "in_chans": 3,
        "num_classes": 1000,
        "params": 86567656,
        "fwd_gmacs": pytest.approx(17.58, rel=0.01),
    }
    assert main(["models", "--family", "vitt"]) == 2


@pytest.mark.slow
@pytest.mark.usefixtures("embedded_ray")  # one Ray for the in-process ray tests (conftest)
def test_ray_backend_end_to_end(tmp_path: Path, tiny_study: Path) -> None:
    """Embedded local Ray: every trial a task, the driver writes each row as it arrives."""
    res = tmp_path / "res"
    assert main(["run", str(tiny_study), "--results", str(res), "--no-report"]) == 0
    df = _results(res)
    assert len(df) == 4 and (df["status"] == "ok").all()
    assert df["trial_id"].is_unique
    assert (df["niceness"] == os.nice(0)).all()  # not Ray's default +15 for workers


@pytest.mark.slow
def test_console_script_smoke(tmp_path: Path) -> None:
    """The installed `harness` command, as a user runs it (subprocess, exit code and output)."""
    exe = Path(sys.executable).parent / "harness"
    p = subprocess.run(
        [
            str(exe),
            "run",
            str(write_study(tmp_path, models="[mixer@xs]", data_sizes="[16]")),
            "--backend",
            "local",
            "--results",
            str(tmp_path / "r"),
            "--no-report",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    assert "1/1 ok" in p.stderr


@pytest.mark.slow
def test_ctrl_c_keeps_finished_trials_and_rerun_completes(tmp_path: Path) -> None:
    """SIGINT after the first stored trial: exit 130, stored rows intact, the re-run does the rest."""
    import signal

    study = write_study(tmp_path, name="intr", models="[resnet@xs, vit@xs, mixer@xs]", data_sizes="[32, 64]", steps=6)
    exe = Path(sys.executable).parent / "harness"
    cmd = [str(exe), "run", str(study), "--backend", "local", "--results", str(tmp_path / "r"), "--no-report"]
    # default SIGINT in the child even when pytest itself runs with SIGINT ignored (a background job of
    # a non-interactive shell, `make test &`): an ignored disposition survives exec and the child would never see it
    proc = subprocess.Popen(
        cmd,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert proc.stderr is not None
    for line in proc.stderr:  # the runner prints one line per stored trial: wait for the first
        if line.lstrip().startswith("ok"):
            break
    proc.send_signal(signal.SIGINT)
    rest = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130, rest
    assert "interrupted" in rest
    first = _results(tmp_path / "r", "intr")
    assert 1 <= len(first) < 6 and (first["status"] == "ok").all()
    assert main(cmd[1:]) == 0
    final = _results(tmp_path / "r", "intr")
    assert len(final) == 6 and final["trial_id"].is_unique and (final["status"] == "ok").all()


def test_one_line_per_trial_shows_what_was_measured() -> None:
    """Profiled, profiling off, profile-only: the progress line never prints 'nan'."""
    from harness.runner import _one_line

    base = {"model": "vit@xs", "data_size": 1000, "image_size": 28, "seed": 0, "duration_s": 12.0, "status": "ok"}
    nan = float("nan")
    profiled = _one_line(store.TrialOutput({**base, "test_acc": 0.75, "train_img_s": 500.0}, []))
    assert "acc=0.7500" in profiled and "train 500 img/s" in profiled
    off = _one_line(
        store.TrialOutput({**base, "test_acc": 0.75, "train_img_s": nan, "samples_seen": 32000, "train_time_s": 64.0}, [])
    )
    assert "trained at 500 img/s" in off and "nan" not in off
    only = _one_line(store.TrialOutput({**base, "test_acc": nan, "train_img_s": 90.0, "infer_img_s": 300.0}, []))
    assert "acc" not in only and "train 90 img/s" in only and "infer 300 img/s" in only and "nan" not in only
