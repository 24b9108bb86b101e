"""Crash safety on every backend: kill -9 of the driver then a re-run, and two drivers at once.

The drivers are real `harness run` processes. Each is started in its own session so that after
kill -9 the test can find what it left behind (embedded Ray's agents, workers) and stop those
processes by PID. No sleeps: every wait is a condition with a timeout.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from harness import claims, store
from tests.conftest import write_study

HARNESS = str(Path(sys.executable).parent / "harness")
RAY_ADDRESS = os.environ.get("HARNESS_TEST_RAY_ADDRESS")


def wait_for(cond: Callable[[], object], timeout: float, what: str, every: float = 0.2) -> object:
    """Poll `cond` until it is truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


def session_pids(sid: int) -> list[int]:
    """Live processes of the session a test started (the driver and everything it spawned). A zombie
    is already dead: the driver, if it exited before the test called `wait()` on it, stays one until
    pytest's process ends, and waiting for it to go would only hide the test's real failure."""
    out = []
    for p in psutil.process_iter():
        try:
            if os.getsid(p.pid) == sid and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p.pid)
        except (ProcessLookupError, PermissionError, psutil.NoSuchProcess):
            continue
    return out


def stop_session(sid: int) -> None:
    """SIGKILL, by PID, whatever is left of a session this test started; wait until it is gone."""
    for pid in session_pids(sid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    wait_for(lambda: not session_pids(sid), 30, f"session {sid} to end")


def start_driver(args: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
    with open(log, "w") as f:
        return subprocess.Popen(
            [HARNESS, "run", *args], stdout=f, stderr=subprocess.STDOUT, start_new_session=True, env={**os.environ, **(env or {})}
        )


def rows(out_dir: Path) -> list[Path]:
    return store.trial_files(out_dir)


def expected_ids(study: Path) -> set[str]:
    from harness import spec

    return {t.trial_id for t in spec.expand(spec.load_study(study))}


def assert_exactly_once(study: Path, out_dir: Path) -> None:
    df = store.read(out_dir)
    assert df["trial_id"].is_unique
    assert set(df["trial_id"]) == expected_ids(study)
    assert (df["status"] == "ok").all(), df[df["status"] != "ok"][["trial_id", "error"]]
    assert not any(p for p in (out_dir / "trials").iterdir() if p.name.endswith(".tmp"))
    assert not [p for p in claims.claims_dir(out_dir).glob("[!.]*")], "claims left behind"


def kill_then_rerun(tmp_path: Path, args: list[str], name: str, timeout: float) -> None:
    study = write_study(tmp_path, name=name, models="[resnet@xs, vit@xs]", data_sizes="[32, 64, 128]", steps=30)
    out_dir = tmp_path / "res" / name
    base = [str(study), "--results", str(tmp_path / "res"), "--no-report", *args]
    first = start_driver(base, tmp_path / "first.log")
    try:
        wait_for(lambda: rows(out_dir) or first.poll() is not None, timeout, "the first row")
        assert first.poll() is None, "the driver finished before it could be killed: make the study longer"
        os.kill(first.pid, signal.SIGKILL)
        first.wait(30)
    finally:
        stop_session(first.pid)  # embedded Ray: its agents and workers, by PID
    before = {p.name: p.stat().st_mtime_ns for p in rows(out_dir)}
    assert 1 <= len(before) < 6
    second = start_driver(base, tmp_path / "second.log")
    try:
        assert second.wait(timeout) == 0, (tmp_path / "second.log").read_text()
    finally:
        stop_session(second.pid)
    assert_exactly_once(study, out_dir)
    after = {p.name: p.stat().st_mtime_ns for p in rows(out_dir)}
    assert {k: after[k] for k in before} == before, "finished trials were run again"
    log = (tmp_path / "second.log").read_text()
    assert f"{len(before)} already done" in log


@pytest.mark.slow
def test_kill9_driver_then_rerun_local(tmp_path: Path) -> None:
    kill_then_rerun(tmp_path, ["--backend", "local"], "crash_local", timeout=240)


@pytest.mark.slow
def test_kill9_driver_then_rerun_ray(tmp_path: Path) -> None:
    """On the test Ray cluster when it is up (HARNESS_TEST_RAY_ADDRESS), else on an embedded local Ray."""
    where = ["--address", RAY_ADDRESS] if RAY_ADDRESS else []
    kill_then_rerun(tmp_path, ["--backend", "ray", *where], "crash_ray", timeout=240)


@pytest.mark.slow
def test_two_drivers_at_once_run_each_trial_once(tmp_path: Path) -> None:
    study = write_study(tmp_path, name="twice", models="[resnet@xs, vit@xs]", data_sizes="[32, 64]", steps=20)
    args = [str(study), "--backend", "local", "--results", str(tmp_path / "res"), "--no-report"]
    a, b = start_driver(args, tmp_path / "a.log"), start_driver(args, tmp_path / "b.log")
    try:
        assert a.wait(240) == 0 and b.wait(240) == 0
    finally:
        stop_session(a.pid)
        stop_session(b.pid)
    assert_exactly_once(study, tmp_path / "res" / "twice")
    ran = 0
    for name in ("a.log", "b.log"):
        lines = (tmp_path / name).read_text().splitlines()
        to_run = int(re.search(r"(\d+) to run", lines[0]).group(1))
        trained = sum(line.lstrip().startswith("ok ") for line in lines)
        stored_by_other = sum(line.lstrip().startswith("stored ") for line in lines)
        assert trained + stored_by_other == to_run, lines  # each of its trials: run here, or waited for
        ran += trained
    assert ran == 4  # every trial trained by exactly one of the two drivers


# ----------------------------------------------------------------------------- claims, directly


def test_claim_of_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    directory = claims.claims_dir(tmp_path)
    directory.mkdir(parents=True)
    (directory / "t1").write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid, "pid_started": 1.0, "token": "x"}))
    (tmp_path / "trials").mkdir()
    (tmp_path / "trials" / ".t1.parquet.abc.tmp").write_text("half a file")
    with claims.Claims(tmp_path) as held:
        mine, others = held.acquire(["t1", "t2"])
        assert mine == ["t1", "t2"] and not others
        assert json.loads((directory / "t1").read_text())["pid"] == os.getpid()
        assert not list((tmp_path / "trials").glob("*.tmp"))  # the dead writer's temporary is swept
    assert not list(directory.glob("[!.]*"))  # released on close


def test_live_claim_is_respected_and_released_claim_is_free(tmp_path: Path) -> None:
    first = claims.Claims(tmp_path)
    assert first.acquire(["t1"]) == (["t1"], {})
    with claims.Claims(tmp_path) as second:  # same process, another driver: the pid is alive
        mine, others = second.acquire(["t1", "t2"])
        assert mine == ["t2"] and others["t1"]["token"] == first.token
        first.close()
        assert second.acquire(["t1"]) == (["t1"], {})


def test_claim_from_another_host_lives_until_its_lease_expires(tmp_path: Path) -> None:
    directory = claims.claims_dir(tmp_path)
    directory.mkdir(parents=True)
    (directory / "t1").write_text(json.dumps({"host": "elsewhere", "pid": 1, "token": "x"}))
    with claims.Claims(tmp_path, lease_s=3600) as held:
        assert list(held.acquire(["t1"])[1]) == ["t1"]
    old = time.time() - 7200
    os.utime(directory / "t1", (old, old))
    with claims.Claims(tmp_path, lease_s=3600) as held:
        assert held.acquire(["t1"]) == (["t1"], {})


def test_a_trial_stored_by_another_driver_before_we_claim_it_is_not_run_again(tmp_path: Path) -> None:
    """The runner plans from the rows on disk; a trial another driver finishes before our claim is skipped."""
    from harness import spec
    from harness.store import TrialOutput

    trials = spec.expand(spec.load_study(write_study(tmp_path, data_sizes="[32]")))
    store.write(TrialOutput({"trial_id": trials[0].trial_id, "status": "ok", "error": ""}), tmp_path)
    ran: list[str] = []

    def execute(ts: list, held: claims.Claims) -> object:
        for t in ts:
            ran.append(t.trial_id)
            yield TrialOutput({"trial_id": t.trial_id, "status": "ok", "error": ""})

    events = list(claims.run_exclusive(trials, execute, tmp_path))
    assert ran == [trials[1].trial_id]
    assert [(e.trial_id, e.output is None) for e in events] == [(trials[0].trial_id, True), (trials[1].trial_id, False)]
