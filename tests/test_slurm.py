"""SLURM backend: the `slurm:` section, the generated job script, checkpoint/resume, and real SLURM.

The cluster tests need the single-node SLURM from scripts/slurm_up.sh (.ci/run starts it and
sets HARNESS_TEST_SLURM=1); without it they are skipped. On that cluster the time-limit
signal arrives at a ~30 s cadence and requeued jobs wait `cred_expire` (10 s in our
slurm.conf, 120 s by default) before they start again: see scripts/slurm_up.sh.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from harness import data, spec, store, zoo
from harness import train as train_mod
from harness.backends import slurm
from harness.cli import main
from harness.errors import StudyError
from tests.conftest import write_study
from tests.test_crash import start_driver, stop_session, wait_for

ON_SLURM = bool(os.environ.get("HARNESS_TEST_SLURM")) and shutil.which("sbatch") is not None
NO_SLURM = "no SLURM: HARNESS_TEST_SLURM=1 is set by .ci/run after scripts/slurm_up.sh"

SYNTH = "dataset: {name: synthetic, num_classes: 4, channels: 1, image_size: 16, train_size: 256, test_size: 64}\n"


def study_with(tmp_path: Path, body: str, name: str = "s") -> spec.Study:
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        f"name: {name}\n{SYNTH}grid: {{model: [vit@xs], data_size: [32, 64]}}\ntrain: {{steps: 4, batch_size: 16}}\n{body}"
    )
    return spec.load_study(path)


# ----------------------------------------------------------------------------- parameters (no cluster needed)


def test_slurm_section_typo_names_the_key_and_the_fix(tmp_path: Path) -> None:
    st = study_with(tmp_path, "slurm: {partiton: gpu}\n")
    with pytest.raises(StudyError) as e:
        slurm.options(st)
    assert e.value.key == "slurm.partiton" and "did you mean partition" in e.value.fix and e.value.where.endswith("s.yaml")
    for body, key in [
        ("slurm: {time: soon}", "slurm.time"),
        ("slurm: {cpus_per_task: 0}", "slurm.cpus_per_task"),
        ("slurm: {setup: [1]}", "slurm.setup"),
        ("slurm: {mem_gb: -1}", "slurm.mem_gb"),
    ]:
        with pytest.raises(StudyError) as e:
            slurm.options(study_with(tmp_path, body + "\n"))
        assert e.value.key == key


def test_requeue_signal_comes_before_the_limit_with_time_to_spare(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """SLURM sends SIGUSR2 once less than signal_delay_s is left, so a delay as long as the limit signals
    the job as it starts (before submitit's handler is in place, where SIGUSR2 kills it): the default
    90 s is capped at half the limit, and a delay given that long is refused."""
    assert slurm.options(study_with(tmp_path, "slurm: {time: 1}\n"))["signal_delay_s"] == 30
    assert slurm.options(study_with(tmp_path, "slurm: {time: 2}\n"))["signal_delay_s"] == 60
    assert slurm.options(study_with(tmp_path, "slurm: {time: 3}\n"))["signal_delay_s"] == 90
    assert slurm.options(study_with(tmp_path, "slurm: {time: 5}\n"), {"time": 1})["signal_delay_s"] == 30  # --time
    assert slurm.options(study_with(tmp_path, "slurm: {time: 1, signal_delay_s: 50}\n"))["signal_delay_s"] == 50
    with pytest.raises(StudyError) as e:
        slurm.options(study_with(tmp_path, "slurm: {time: 1, signal_delay_s: 60}\n"))
    assert e.value.key == "slurm.signal_delay_s" and "not shorter than the time limit (1 min)" in e.value.what
    assert "below 60 (e.g. 30)" in e.value.fix
    with pytest.raises(StudyError):  # the limit from --time
        slurm.options(study_with(tmp_path, "slurm: {signal_delay_s: 90}\n"), {"time": 1})
    path = write_study(tmp_path, extra="slurm: {time: 1, signal_delay_s: 90}\n")
    res = tmp_path / "res"
    assert main(["run", str(path), "--backend", "slurm", "--results", str(res)]) == 2
    assert "slurm.signal_delay_s: 90 s is not shorter" in capsys.readouterr().err and not res.exists()


def test_bad_slurm_section_exits_2_whatever_the_backend_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = write_study(tmp_path, extra="slurm: {checkpoint_evry: 50}\n")
    res = tmp_path / "res"
    assert main(["run", str(path), "--backend", "local", "--results", str(res)]) == 2
    assert "slurm.checkpoint_evry" in capsys.readouterr().err and not res.exists()
    assert main(["run", str(write_study(tmp_path)), "--backend", "local", "--partition", "gpu", "--results", str(res)]) == 2
    assert "--partition applies to --backend slurm" in capsys.readouterr().err and not res.exists()


def test_time_limits_parse_like_sbatch() -> None:
    assert [slurm.parse_time(v) for v in (90, "90", "1:30:00", "45:30", "2-00:00:00", "1-12")] == [90, 90, 90, 46, 2880, 2160]


def test_defaults_come_from_resources_and_flags_override_the_study(tmp_path: Path) -> None:
    st = study_with(tmp_path, "resources: {cpus: 2, gpus: 0.25}\nslurm: {qos: low, time: 30}\n")
    opts = slurm.options(st, {"qos": "high", "partition": None})
    assert opts["cpus_per_task"] == 2 and opts["gpus_per_task"] == 1  # SLURM allocates whole GPUs
    assert opts["qos"] == "high" and opts["time"] == 30 and opts["partition"] is None


GOLDEN = """#!/bin/bash

# Parameters
#SBATCH --account=proj42
#SBATCH --array=0-1%2
#SBATCH --constraint=a100
#SBATCH --cpus-per-task=2
#SBATCH --error=/R/slurm/logs/%A_%a_0_log.err
#SBATCH --gpus-per-node=1
#SBATCH --job-name=harness-s
#SBATCH --mem=8192M
#SBATCH --nodes=1
#SBATCH --open-mode=append
#SBATCH --output=/R/slurm/logs/%A_%a_0_log.out
#SBATCH --partition=gpu
#SBATCH --qos=normal
#SBATCH --signal=USR2@90
#SBATCH --time=90
#SBATCH --wckey=submitit

# setup
module load cuda/12.4

# command
export SUBMITIT_EXECUTOR=slurm
srun --unbuffered --output /R/slurm/logs/%A_%a_%t_log.out --error /R/slurm/logs/%A_%a_%t_log.err python -u -m submitit.core._submit /R/slurm/logs
"""


def test_job_array_script_matches_golden(tmp_path: Path) -> None:
    """The sbatch script submitit generates from a study's `slurm:` section (STYLE 9: golden file)."""
    from submitit.slurm.slurm import _make_sbatch_string

    st = study_with(
        tmp_path,
        "resources: {cpus: 2, gpus: 0.5}\nslurm: {partition: gpu, time: '1:30:00', mem_gb: 8, "
        "account: proj42, qos: normal, array_parallelism: 4, setup: ['module load cuda/12.4'], "
        "checkpoint_every: 50, sbatch: {constraint: a100}}\n",
    )
    params = slurm.executor_parameters(st, slurm.options(st))
    text = _make_sbatch_string(
        command="python -u -m submitit.core._submit /R/slurm/logs",
        folder="/R/slurm/logs",
        map_count=len(spec.expand(st)),
        **params,
    )
    assert text == GOLDEN


# ----------------------------------------------------------------------------- checkpoint + resume (no cluster needed)


class Preempted(BaseException):
    """Stands in for submitit's SystemExit after a requeue (not an Exception: run_trial must not catch it)."""


def test_resume_from_checkpoint_reproduces_the_uninterrupted_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_study(tmp_path, models="[vit@xs]", data_sizes="[64]", steps=9)
    path.write_text(path.read_text().replace("eval_every: 2}", "eval_every: 2, augment: flip_shift}"))
    trial = spec.expand(spec.load_study(path))[0]
    ds = data.load(trial.dataset)

    def run(**kw: object) -> train_mod.TrainResult:
        torch.manual_seed(0)
        model = zoo.build(trial.model, image_size=16, in_chans=1, num_classes=4)
        return train_mod.train(model, ds, image_size=16, data_size=64, seed=0, cfg=trial.train, device=torch.device("cpu"), **kw)

    reference = run()
    ckpt = tmp_path / "ck" / "t.pt"
    calls = {"n": 0}
    original = train_mod.EpochSampler.next

    def preempt_at_step_6(self: train_mod.EpochSampler) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] == 6:
            raise Preempted
        return original(self)

    monkeypatch.setattr(train_mod.EpochSampler, "next", preempt_at_step_6)
    with pytest.raises(Preempted):
        run(checkpoint_path=ckpt, checkpoint_every=2)
    monkeypatch.setattr(train_mod.EpochSampler, "next", original)
    assert ckpt.exists() and not list(ckpt.parent.glob(".*tmp"))
    torch.manual_seed(123)  # whatever the global RNG now holds, the checkpoint restores it
    resumed = run(checkpoint_path=ckpt, checkpoint_every=2)
    assert (resumed.resumes, resumed.resumed_from_step) == (1, 4)
    strip = lambda curve: [{k: v for k, v in p.items() if k != "elapsed_s"} for p in curve]  # noqa: E731
    assert strip(resumed.curve) == strip(reference.curve)  # same losses and accuracies, step for step
    assert (resumed.test_acc, resumed.train_loss, resumed.samples_seen) == (
        reference.test_acc,
        reference.train_loss,
        reference.samples_seen,
    )
    assert (reference.resumes, reference.resumed_from_step) == (0, 0)


# ----------------------------------------------------------------------------- real SLURM


def _squeue(job: str) -> str:
    p = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True, timeout=30)
    return p.stdout.strip()


def _manifest(out_dir: Path) -> list[dict]:
    return json.loads((out_dir / "slurm" / "jobs.json").read_text())["submissions"]


@pytest.mark.cluster
@pytest.mark.skipif(not ON_SLURM, reason=NO_SLURM)
def test_smoke_study_as_one_job_array(tmp_path: Path) -> None:
    study = write_study(tmp_path, name="arr", models="[resnet@xs, vit@xs, mixer@xs, convnext@xs]", data_sizes="[64]", steps=6)
    res = tmp_path / "res"
    assert (
        main(
            [
                "run",
                str(study),
                "--backend",
                "slurm",
                "--smoke",
                "--results",
                str(res),
                "--no-report",
                "--time",
                "5",
                "--array-parallelism",
                "2",
            ]
        )
        == 0
    )
    out_dir = res / "arr-smoke"
    df = store.read(out_dir)
    assert len(df) == 4 and df["trial_id"].is_unique and (df["status"] == "ok").all()
    subs = _manifest(out_dir)
    assert len(subs) == 1  # one sbatch for the whole grid
    array = subs[0]["array_job"]
    assert sorted(df["slurm_job"]) == [f"{array}_{i}" for i in range(4)]
    assert "#SBATCH --array=0-3%2" in (out_dir / "slurm" / "logs" / f"{array}_submission.sh").read_text()
    assert main(["status", str(out_dir)]) == 0
    assert not list((out_dir / "claims").glob("[!.]*"))


@pytest.mark.cluster
@pytest.mark.skipif(not ON_SLURM, reason=NO_SLURM)
def test_no_wait_status_and_a_second_driver_waits_for_the_jobs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """--no-wait returns at once; status shows the jobs queued; a re-run waits for those jobs instead of
    submitting again; a trial that raises is a failed row carrying the traceback's last line."""
    bad = write_study(
        tmp_path,
        name="boom",
        models="[vit@xs, resnet@xs]",
        data_sizes="[32]",
        lr="1.0e+30",
        extra="slurm: {sbatch: {hold: true}}\n",
    )  # held: queued until this test releases it
    res, out_dir = tmp_path / "res", tmp_path / "res" / "boom"
    args = [str(bad), "--backend", "slurm", "--results", str(res), "--no-report", "--time", "5"]
    assert main(["run", *args, "--no-wait"]) == 0
    array = _manifest(out_dir)[0]["array_job"]
    capsys.readouterr()
    try:
        assert main(["status", str(out_dir)]) == 1
        status = capsys.readouterr().out
        assert re.search(r"queued\s+│\s+2", status) and re.search(r"running\s+│\s+0", status), status
        second = start_driver(args, tmp_path / "second.log")
        wait_for(lambda: "being run elsewhere" in (tmp_path / "second.log").read_text(), 120, "the second driver to wait")
    finally:
        subprocess.run(["scontrol", "release", array], check=True, timeout=30)
    try:
        assert second.wait(180) == 1, (tmp_path / "second.log").read_text()  # 1: trials failed (rows written)
    finally:
        stop_session(second.pid)
    assert len(_manifest(out_dir)) == 1  # the second driver submitted nothing
    df = store.read(out_dir)
    assert len(df) == 2 and (df["status"] == "failed").all()
    for _, row in df.iterrows():
        last = row["traceback"].strip().splitlines()[-1]
        assert row["error"].startswith("NonFiniteLoss: loss became nan") and last.endswith(row["error"]), (row["error"], last)


@pytest.mark.cluster
@pytest.mark.skipif(not ON_SLURM, reason=NO_SLURM)
def test_time_limit_requeues_and_resumes_from_checkpoint(tmp_path: Path) -> None:
    """A 1-minute limit: SIGUSR2 comes 10-40 s after the start (signal_delay_s=20 plus slurmctld's 30 s
    check cadence), submitit requeues the job, and the requeued job continues from its last checkpoint.
    The trial trains over 40 s, so the first run always hits the limit. Once a run that left a
    checkpoint has been requeued, the test raises the limit of the queued job (as a user may) so the
    resumed run finishes instead of timing out again: ~1.5 minutes instead of 3."""
    body = (
        "grid: {model: [vit@xs], data_size: [256], image_size: [16], seed: [0]}\n"
        "train: {steps: STEPS, batch_size: 32, lr: 1.0e-3, warmup_steps: 1}\nprofile: {enabled: false}\n"
        "slurm: {time: 1, signal_delay_s: 20, checkpoint_every: 20, max_timeouts: 8}\n"
    )
    calib = tmp_path / "calib.yaml"
    calib.write_text(f"name: calib\n{SYNTH}" + body.replace("STEPS", "40"))
    from harness.trial import run_trial

    per_step = run_trial(spec.expand(spec.load_study(calib))[0]).row["train_time_s"] / 40
    steps = max(400, math.ceil(42 / per_step))  # ~42 s of training: longer than the longest first window
    study = tmp_path / "limit.yaml"
    study.write_text(f"name: limit\n{SYNTH}" + body.replace("STEPS", str(steps)))
    res, out_dir = tmp_path / "res", tmp_path / "res" / "limit"
    driver = start_driver([str(study), "--backend", "slurm", "--results", str(res), "--no-report"], tmp_path / "driver.log")
    try:
        job = wait_for(
            lambda: (out_dir / "slurm" / "jobs.json").exists() and _manifest(out_dir)[0]["trials"], 60, "the submission"
        )
        job = next(iter(job.values()))
        err = out_dir / "slurm" / "logs" / f"{job}_0_log.err"
        ckpt = out_dir / "slurm" / "checkpoints" / f"{_manifest(out_dir)[0]['trials'].popitem()[0]}.pt"

        def requeued_with_checkpoint() -> bool:  # a window shorter than python's start-up leaves none: wait for the next
            return (
                err.exists()
                and "DUE TO JOB REQUEUE" in err.read_text()
                and ckpt.exists()
                and _squeue(job) in ("PENDING", "REQUEUED", "REQUEUE_HOLD")
            )

        wait_for(requeued_with_checkpoint, 240, "the time limit, a checkpoint and the requeue", every=0.5)
        subprocess.run(["scontrol", "update", f"JobId={job}", "TimeLimit=10"], check=True, timeout=30)
        assert driver.wait(300) == 0, (tmp_path / "driver.log").read_text()
    finally:
        stop_session(driver.pid)
    row = store.read(out_dir).iloc[0]
    assert row["status"] == "ok" and row["steps"] == steps and row["slurm_job"] == job
    assert row["resumes"] >= 1 and 0 < row["resumed_from_step"] < steps  # continued, not restarted at step 0
    assert row["resumed_from_step"] % 20 == 0  # from a checkpoint boundary
    curve = store.read_curves(out_dir)
    assert curve["step"].tolist() == sorted(curve["step"]) and curve["step"].iloc[-1] == steps
    assert curve["samples_seen"].iloc[-1] == steps * 32
    assert "this job is timed-out" in err.read_text()
    assert not list((out_dir / "slurm" / "checkpoints").glob("*.pt"))  # removed once the row is stored


@pytest.mark.cluster
@pytest.mark.skipif(not ON_SLURM, reason=NO_SLURM)
def test_timeout_without_checkpointing_is_a_failed_time_limit_row(tmp_path: Path) -> None:
    """Without slurm.checkpoint_every a timed-out job is not requeued (it would start again from step 0):
    its row says so. The timeout signal is the one SLURM sends (SIGUSR2), delivered by the test with
    `scancel --signal` once the trial runs, as submitit's own tests do. The limit is 5 minutes so that
    SLURM's own signal (at 3.5 minutes) cannot come first: with a 1-minute limit it came 0-30 s after
    the start, which on a loaded CI machine can be before the job has started the trial."""
    study = tmp_path / "nockpt.yaml"
    study.write_text(
        f"name: nockpt\n{SYNTH}grid: {{model: [vit@xs], data_size: [256], image_size: [16], seed: [0]}}\n"
        "train: {steps: 100000, batch_size: 32}\nprofile: {enabled: false}\nslurm: {time: 5}\n"
    )
    res, out_dir = tmp_path / "res", tmp_path / "res" / "nockpt"
    driver = start_driver([str(study), "--backend", "slurm", "--results", str(res), "--no-report"], tmp_path / "driver.log")
    try:
        job = wait_for(
            lambda: (out_dir / "slurm" / "jobs.json").exists() and _manifest(out_dir)[0]["trials"], 60, "the submission"
        )
        job = next(iter(job.values()))
        out = out_dir / "slurm" / "logs" / f"{job}_0_log.out"
        # the job logs this once submitit's signal handlers are installed and the trial starts
        wait_for(lambda: out.exists() and "harness: trial" in out.read_text(), 120, "the trial to start")
        subprocess.run(["scancel", "--signal", "USR2", job], check=True, timeout=30)
        assert driver.wait(120) == 1, (tmp_path / "driver.log").read_text()
    finally:
        stop_session(driver.pid)
    row = store.read(out_dir).iloc[0]
    assert row["status"] == "failed" and row["error"].startswith("TimeLimit: hit the SLURM time limit (5 min)")
    assert "checkpoint_every" in row["error"] and len(_manifest(out_dir)) == 1


@pytest.mark.cluster
@pytest.mark.skipif(not ON_SLURM, reason=NO_SLURM)
def test_job_that_ends_without_a_row_becomes_a_failed_row(tmp_path: Path) -> None:
    """A job cancelled before it could store anything: the waiting driver writes the failed row."""
    study = write_study(tmp_path, name="cancelled", models="[vit@xs]", data_sizes="[32]", extra="slurm: {sbatch: {hold: true}}\n")
    res, out_dir = tmp_path / "res", tmp_path / "res" / "cancelled"
    driver = start_driver([str(study), "--backend", "slurm", "--results", str(res), "--no-report"], tmp_path / "driver.log")
    try:
        job = wait_for(
            lambda: (out_dir / "slurm" / "jobs.json").exists() and _manifest(out_dir)[0]["trials"], 60, "the submission"
        )
        job = next(iter(job.values()))
        subprocess.run(["scancel", job], check=True, timeout=30)
        assert driver.wait(120) == 1, (tmp_path / "driver.log").read_text()
    finally:
        stop_session(driver.pid)
    row = store.read(out_dir).iloc[0]
    assert row["status"] == "failed" and row["error"].startswith(f"SLURM job {job} CANCELLED without a result")
    assert not list((out_dir / "claims").glob("[!.]*"))  # the dead job's claim is gone with it
