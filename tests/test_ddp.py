"""Data-parallel trials (issue 25) on CPU with gloo: `resources.workers`, the local launcher,
N ranks vs one worker, a killed rank, resume of a multi-worker trial from its checkpoint.

The launcher's tests start real processes (spawn: each imports torch and timm), so they are slow."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import signal
import threading
from pathlib import Path

import psutil
import pytest

from harness import spec, store
from harness.backends.launch import run_data_parallel
from harness.cli import main
from harness.errors import StudyError
from tests.conftest import write_study

AUGMENTED = ("eval_every: 2}", "eval_every: 2, augment: flip_shift}")


def _study(tmp_path: Path, workers: int, name: str = "tiny", steps: int = 6, models: str = "[resnet@xs]") -> Path:
    p = write_study(tmp_path, name=name, models=models, data_sizes="[64]", steps=steps)
    text = p.read_text().replace(*AUGMENTED).replace("gpus: 0}", f"gpus: 0, workers: {workers}}}")
    p.write_text(text)
    return p


def test_workers_stay_out_of_the_trial_id(tmp_path: Path) -> None:
    one = spec.expand(spec.load_study(_study(tmp_path, 1, name="one")))
    two = spec.expand(spec.load_study(_study(tmp_path, 2, name="two")))
    assert [t.trial_id for t in one] == [t.trial_id for t in two]
    assert two[0].resources["workers"] == 2 and one[0].resources["workers"] == 1


def test_batch_that_does_not_divide_over_the_workers_is_refused_at_load(tmp_path: Path) -> None:
    with pytest.raises(StudyError) as e:
        spec.load_study(_study(tmp_path, 3))  # batch 16 over 3 workers
    assert e.value.key == "train.batch_size" and "multiple of 3" in e.value.fix
    res = tmp_path / "res"
    assert main(["run", str(_study(tmp_path, 3)), "--backend", "local", "--results", str(res)]) == 2
    assert not res.exists()  # nothing written


@pytest.mark.parametrize(
    ("resources", "key"),
    [
        ("workers: 0", "resources.workers"),
        ("workers: 4, nodes: 3", "resources.nodes"),
        ("workers: 2, gpus: 0.5", "resources.gpus"),
    ],
)
def test_bad_worker_resources_are_refused(tmp_path: Path, resources: str, key: str) -> None:
    p = write_study(tmp_path, data_sizes="[64]")
    p.write_text(p.read_text().replace("resources: {cpus: 1, gpus: 0}", f"resources: {{cpus: 1, {resources}}}"))
    with pytest.raises(StudyError) as e:
        spec.load_study(p)
    assert e.value.key == key


@pytest.mark.slow
def test_two_workers_match_one_worker_end_to_end(tmp_path: Path) -> None:
    """resnet@xs (BatchNorm, synchronised over gloo) with flip/shift augmentation: 2 ranks of batch
    8 train as 1 worker of batch 16, up to floating-point reduction order."""
    rows = {}
    for workers in (1, 2):
        d = tmp_path / f"w{workers}"
        d.mkdir()
        res = d / "res"
        assert main(["run", str(_study(d, workers)), "--backend", "local", "--results", str(res), "--no-report"]) == 0
        rows[workers] = store.read(res / "tiny").iloc[0]
        assert len(store.read_curves(res / "tiny")) > 0
    one, two = rows[1], rows[2]
    assert two["status"] == "ok" and one["trial_id"] == two["trial_id"]
    assert abs(one["train_loss"] - two["train_loss"]) <= 1e-3
    assert abs(one["test_acc"] - two["test_acc"]) <= 1 / 64  # the same model up to reduction order
    assert (one["world_size"], two["world_size"]) == (1, 2)
    assert two["dp_img_s"] > 0 and one["dp_img_s"] > 0 and pd_isnan(two["dp_mfu"])  # no CPU peak: NaN
    assert two["samples_seen"] == one["samples_seen"] == 6 * 16  # the global batch, not a rank's share


def pd_isnan(v: float) -> bool:
    return v != v


def _rank_processes() -> list[psutil.Process]:
    return [c for c in psutil.Process().children(recursive=True) if "spawn_main" in " ".join(c.cmdline())]


@pytest.mark.slow
def test_a_killed_rank_ends_the_trial_as_a_failed_row_naming_it(tmp_path: Path) -> None:
    trial = spec.expand(spec.load_study(_study(tmp_path, 2, steps=100_000, models="[vit@xs]")))[0]
    ckpt = tmp_path / "ck" / "t.pt"
    got: dict = {}
    runner = threading.Thread(target=lambda: got.update(out=run_data_parallel(trial, checkpoint_path=ckpt, checkpoint_every=1)))
    runner.start()
    _wait_for(lambda: ckpt.exists() or not runner.is_alive())  # both ranks are past step 1, inside DDP's collectives
    victim = max(_rank_processes(), key=lambda p: p.pid)
    os.kill(victim.pid, signal.SIGKILL)
    runner.join(timeout=180)  # the launcher's grace and the collective's failure bound this; a hang fails here
    assert not runner.is_alive()
    row = got["out"].row
    assert row["status"] == "failed" and re.search(r"rank [01] of 2 was killed by SIGKILL", row["error"]), row["error"]
    assert row["world_size"] == 2 and row["trial_id"] == trial.trial_id
    assert _rank_processes() == []  # no rank left behind


def _wait_for(condition: object, limit: int = 20_000) -> None:
    event = threading.Event()
    for _ in range(limit):  # polls every 10 ms, at most ~200 s
        if condition():  # type: ignore[operator]
            return
        event.wait(0.01)
    raise AssertionError("condition never held")


@pytest.mark.slow
def test_two_worker_trial_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    """Rank 0 writes the checkpoint, every rank resumes from it: a re-run finds the checkpoint of
    step 8 (9 steps, every 2) and continues to the same end as the run that wrote it."""
    trial = spec.expand(spec.load_study(_study(tmp_path, 2, steps=9)))[0]
    ckpt = tmp_path / "ck" / "t.pt"
    first = run_data_parallel(trial, checkpoint_path=ckpt, checkpoint_every=2)
    assert first.row["status"] == "ok", first.row["error"]
    assert ckpt.exists() and first.row["resumes"] == 0
    again = run_data_parallel(trial, checkpoint_path=ckpt, checkpoint_every=2)
    assert again.row["status"] == "ok", again.row["error"]
    assert (again.row["resumes"], again.row["resumed_from_step"]) == (1, 8)
    strip = lambda curve: [{k: v for k, v in p.items() if k != "elapsed_s"} for p in curve]  # noqa: E731
    assert strip(again.curve) == strip(first.curve)
    assert again.row["train_loss"] == first.row["train_loss"] and again.row["test_acc"] == first.row["test_acc"]


def test_rank_share_and_batcher_draws_cover_the_global_batch() -> None:
    import torch

    from harness.distributed import Context

    batch = torch.arange(16)
    shares = [Context(r, 4).share(batch) for r in range(4)]
    assert torch.equal(torch.cat(shares), batch)
    assert dataclasses.replace(Context(), rank=0).share(batch) is batch


@pytest.mark.slow
@pytest.mark.usefixtures("embedded_ray")  # one Ray for the in-process ray tests (conftest)
def test_two_workers_through_ray_train_match_one_worker(tmp_path: Path) -> None:
    """An embedded Ray: the 2-worker trial is a TorchTrainer (ScalingConfig of 2 workers, gloo)."""
    pytest.importorskip("ray.train.torch")
    from harness.trial import run_trial

    path = _study(tmp_path, 2)
    res = tmp_path / "res"
    assert main(["run", str(path), "--backend", "ray", "--results", str(res), "--no-report"]) == 0
    row = store.read(res / "tiny").iloc[0]
    trial = spec.expand(spec.load_study(path))[0]
    one = run_trial(dataclasses.replace(trial, resources=dict(trial.resources, workers=1))).row
    assert row["status"] == "ok" and row["trial_id"] == one["trial_id"] and row["world_size"] == 2
    assert abs(row["train_loss"] - one["train_loss"]) <= 1e-3
    assert not list((res / "tiny" / "ray_train" / "checkpoints").glob("*.pt"))  # the trial's checkpoint is gone when done


def _ray_train_workers() -> list[psutil.Process]:
    """Ray Train's rank actors among this driver's descendants (Ray titles them ray::RayTrainWorker...)."""
    out = []
    for c in psutil.Process().children(recursive=True):
        try:
            if "RayTrainWorker" in " ".join(c.cmdline()):
                out.append(c)
        except psutil.Error:  # ended while we looked
            pass
    return out


@pytest.mark.slow
@pytest.mark.usefixtures("embedded_ray")  # one Ray for the in-process ray tests (conftest)
def test_a_killed_ray_train_worker_is_retried_from_the_checkpoint_into_one_row(tmp_path: Path) -> None:
    """kill -9 of one rank mid-trial: FailureConfig restarts the worker group, which resumes from the
    trial's checkpoint (rank 0 writes one every tenth of the budget) and ends as exactly one ok row."""
    pytest.importorskip("ray.train.torch")
    steps = 100  # a checkpoint every 10 steps: the rank is killed after the first one, ~90 steps before the end
    path = _study(tmp_path, 2, steps=steps, models="[vit@xs]")
    path.write_text(path.read_text().replace("eval_every: 2,", f"eval_every: {steps},"))
    res = tmp_path / "res"
    ckpt = res / "tiny" / "ray_train" / "checkpoints"
    killed: list = []
    done = threading.Event()

    def kill_one_rank() -> None:  # ray.init wants the main thread: the driver runs there, the killer here
        waiting = threading.Event()
        for _ in range(60_000):  # polls every 10 ms, at most ~10 min
            if done.is_set():
                return
            workers = _ray_train_workers() if any(ckpt.glob("*.pt")) else []  # rank 0 checkpointed once
            if len(workers) == 2:
                killed.append(workers[-1].pid)
                os.kill(workers[-1].pid, signal.SIGKILL)
                return
            waiting.wait(0.01)

    killer = threading.Thread(target=kill_one_rank)
    killer.start()
    try:
        rc = main(["run", str(path), "--backend", "ray", "--results", str(res), "--no-report"])
    finally:
        done.set()
        killer.join()
    assert rc == 0 and len(killed) == 1  # a rank was killed mid-trial, and the run still succeeded
    df = store.read(res / "tiny")
    assert len(df) == 1  # one row: the retry is the same trial, stored once
    row = df.iloc[0]
    assert row["status"] == "ok" and row["world_size"] == 2 and row["steps"] == steps
    # the restarted ranks continued from a checkpoint (one every tenth of the budget), not from step 0
    assert row["resumes"] >= 1 and row["resumed_from_step"] >= steps // 10


ON_SLURM = bool(os.environ.get("HARNESS_TEST_SLURM")) and shutil.which("sbatch") is not None


@pytest.mark.cluster
@pytest.mark.skipif(not ON_SLURM, reason="no SLURM: HARNESS_TEST_SLURM=1 is set by .ci/run after scripts/slurm_up.sh")
def test_two_tasks_through_slurm_match_one_worker(tmp_path: Path) -> None:
    """One job of 2 tasks (submitit), the process group from its JobEnvironment; rank 0 stores the row."""
    from harness.trial import run_trial

    path = _study(tmp_path, 2)
    res = tmp_path / "res"
    assert main(["run", str(path), "--backend", "slurm", "--results", str(res), "--no-report", "--time", "5"]) == 0
    df = store.read(res / "tiny")
    assert len(df) == 1  # one row, stored once by rank 0
    row = df.iloc[0]
    trial = spec.expand(spec.load_study(path))[0]
    one = run_trial(dataclasses.replace(trial, resources=dict(trial.resources, workers=1))).row
    assert row["status"] == "ok" and row["trial_id"] == one["trial_id"] and row["world_size"] == 2
    assert abs(row["train_loss"] - one["train_loss"]) <= 1e-3
    job = row["slurm_job"]
    assert "_" not in job  # a job of its own, not an array task
    script = (res / "tiny" / "slurm" / "logs" / f"{job}_submission.sh").read_text()
    assert "#SBATCH --ntasks-per-node=2" in script and "#SBATCH --nodes=1" in script
