"""Issue 27: a trial whose process dies hard (OOM kill, abort) leaves a failed row, and its claim is
released the next time anyone looks (`harness status`, `harness run`): the claim's owner is gone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from harness import claims, runner
from harness.store import ResultsDir
from tests.test_sql import write_study

ROOT = Path(__file__).resolve().parents[1]
HOLD = (
    "import sys, time; from harness.claims import Claims; c = Claims(sys.argv[1]); c.acquire([sys.argv[2]]); "
    "print('held', flush=True); time.sleep(600)"
)


def killed_holder(rd: ResultsDir, tid: str) -> int:
    """A process that claims `tid` as a driver does, then dies by SIGKILL (as the OOM killer kills)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(rd.path), tid], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert p.stdout.readline().strip() == "held"
        assert claims.holders(rd)[tid]["pid"] == p.pid  # live while it runs
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait(30)
    return p.pid


def test_a_killed_holder_leaves_a_failed_row_and_no_claim(tmp_path: Path) -> None:
    rd = write_study(tmp_path / "results", "tiny")
    tid = sorted(rd.membership())[0]
    rd.trial_file(tid).unlink()  # a trial of the study with no row yet
    pid = killed_holder(rd, tid)
    assert (rd.claims / tid).exists() and tid not in claims.holders(rd)  # stale, still on disk

    counts = runner.status_counts(rd.path)  # anyone looking
    assert not (rd.claims / tid).exists()
    row = rd.read_row(tid)
    assert row["status"] == "failed" and row["study"] == "tiny"
    assert f"died without a row: pid {pid} on" in row["error"] and "re-run retries it" in row["error"]
    assert tid in {f["trial_id"] for f in counts["failures"]} and counts["running"] == 0
    assert claims.reap(rd) == []  # once


def test_a_stale_claim_over_an_ok_row_is_only_removed(tmp_path: Path) -> None:
    rd = write_study(tmp_path / "results", "tiny")
    tid = next(t for t, s in rd.statuses().items() if s == "ok")
    before = rd.row_stamp(tid)
    killed_holder(rd, tid)
    assert claims.reap(rd) == [] and not (rd.claims / tid).exists()
    assert rd.row_stamp(tid) == before  # the ok row untouched


def test_a_live_holder_is_left_alone(tmp_path: Path) -> None:
    rd = write_study(tmp_path / "results", "tiny")
    with claims.Claims(rd) as mine:
        mine.acquire(["live0000beef"])
        assert claims.reap(rd) == [] and (rd.claims / "live0000beef").exists()
        assert rd.read_row("live0000beef") is None


@pytest.mark.slow
def test_a_local_run_killed_mid_trial_is_a_failed_row_then_reruns(tmp_path: Path) -> None:
    """`harness run --backend local` SIGKILLed while its trial trains: `harness status` of the study shows
    the trial failed (died without a row, its model named) and the claim is gone."""
    from tests.conftest import write_study as crash_study
    from tests.test_crash import start_driver, stop_session, wait_for

    study = crash_study(tmp_path, name="oomkill", models="[resnet@xs]", data_sizes="[64]", steps=4000)
    rd = ResultsDir(tmp_path / "res" / "oomkill")
    args = [str(study), "--backend", "local", "--results", str(tmp_path / "res"), "--no-report"]
    first = start_driver(args, tmp_path / "first.log")
    try:
        wait_for(lambda: any(rd.claims.glob("[!.]*")) or first.poll() is not None, 240, "the trial's claim")
        assert first.poll() is None, (tmp_path / "first.log").read_text()
        os.kill(first.pid, signal.SIGKILL)
        first.wait(30)
    finally:
        stop_session(first.pid)
    counts = runner.status_counts(study, results=tmp_path / "res")  # the study file: its trials are known
    assert counts["failed"] == 1 and "died without a row" in counts["failures"][0]["error"]
    assert "resnet" in counts["failures"][0]["model"]  # the runner's look knows the trial
    assert not list(rd.claims.glob("[!.]*"))
