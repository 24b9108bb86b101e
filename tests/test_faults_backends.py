"""Fault injection for the backends (issue 15 items 2, 6 and 8): clusters that do not answer, a
scheduler that is missing or silent, a GPU asked for where none is visible, SIGTERM to a driver.
Each case: one line on stderr, exit 2, nothing written -- or, for a signal, the run ends as Ctrl-C does.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import store
from harness.backends import ray_backend, squeue
from harness.cli import main
from tests.conftest import write_study
from tests.test_crash import HARNESS, stop_session, wait_for


def _one_error_line(capsys: pytest.CaptureFixture) -> str:
    lines = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


@pytest.fixture
def study(tmp_path: Path) -> Path:
    return write_study(tmp_path, models="[vit@xs]", data_sizes="[16]", steps=2)


# ----------------------------------------------------------------------------- Ray addresses


@pytest.mark.parametrize(
    "address, why",
    [
        ("127.0.0.1:1", "connection refused"),
        ("nosuch.invalid:6379", "unknown host"),
        ("10.0.0.5:notaport", "cannot read the Ray address"),
    ],
)
def test_cluster_address_that_does_not_answer_is_one_line_and_writes_nothing(
    tmp_path: Path, study: Path, capsys: pytest.CaptureFixture, address: str, why: str
) -> None:
    """Was: ray.init retried 127.0.0.1:1 for 10 minutes, after claims and the study copy were written."""
    res = tmp_path / "res"
    assert main(["run", str(study), "--address", address, "--results", str(res)]) == 2
    line = _one_error_line(capsys)
    assert "--address" in line and why in line and address in line
    assert not res.exists()


def test_address_auto_is_refused_before_the_results_directory_is_touched(
    tmp_path: Path, study: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    res = tmp_path / "res"
    assert main(["run", str(study), "--address", "auto", "--results", str(res)]) == 2
    assert "'auto'" in _one_error_line(capsys) and not res.exists()
    monkeypatch.setenv("RAY_ADDRESS", "auto")
    assert main(["run", str(study), "--results", str(res)]) == 2
    assert "'auto'" in _one_error_line(capsys) and not res.exists()


@pytest.fixture
def silent_listener() -> Iterator[str]:
    """A TCP port that accepts connections and never says a word (not a Ray head). 127.0.0.2:
    Ray rewrites 127.0.0.1 to the machine's own address, where this socket would not listen."""
    srv = socket.socket()
    srv.bind(("127.0.0.2", 0))
    srv.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield f"127.0.0.2:{srv.getsockname()[1]}"
    stop.set()
    t.join()
    for c in held:
        c.close()
    srv.close()


@pytest.mark.slow
def test_address_that_listens_but_is_no_ray_head_is_one_line_and_writes_nothing(
    tmp_path: Path, study: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, silent_listener: str
) -> None:
    """Was: ray.init kept retrying such a port (still waiting after 3.5 min here)."""
    monkeypatch.setattr(ray_backend, "GCS_TIMEOUT_S", 3.0)
    res = tmp_path / "res"
    assert main(["run", str(study), "--address", silent_listener, "--results", str(res)]) == 2
    line = _one_error_line(capsys)
    assert silent_listener in line and "no Ray head answered" in line
    assert not res.exists()


# ----------------------------------------------------------------------------- SLURM


def _fake_commands(directory: Path, **scripts: str) -> str:
    """Executables named like SLURM's commands; returns a PATH holding only them and python."""
    directory.mkdir(exist_ok=True)
    for name, body in scripts.items():
        path = directory / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    # only the tools the fakes use: /usr/bin (= /bin on merged-usr Debian) holds the real SLURM where CI runs one
    for tool in ("sleep",):
        if not (directory / tool).exists():
            (directory / tool).symlink_to(shutil.which(tool))
    return f"{directory}:{Path(sys.executable).parent}"


def test_slurm_without_sbatch_is_one_line_and_writes_nothing(
    tmp_path: Path, study: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", _fake_commands(tmp_path / "bin"))  # nothing SLURM on it
    res = tmp_path / "res"
    assert main(["run", str(study), "--backend", "slurm", "--results", str(res)]) == 2
    assert "sbatch/srun not found" in _one_error_line(capsys) and not res.exists()


@pytest.mark.parametrize(
    "squeue_body, why",
    [
        ("echo 'slurm_load_jobs error: Unable to contact slurm controller (connect failure)' >&2; exit 1", "Unable to contact"),
        ("exec sleep 60", "no answer from the controller"),
    ],
)
def test_slurm_controller_that_does_not_answer_is_one_line_and_writes_nothing(
    tmp_path: Path, study: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, squeue_body: str, why: str
) -> None:
    monkeypatch.setenv("PATH", _fake_commands(tmp_path / "bin", sbatch="exit 0", srun="exit 0", squeue=squeue_body))
    monkeypatch.setattr(squeue, "TIMEOUT_S", 1.0)
    res = tmp_path / "res"
    assert main(["run", str(study), "--backend", "slurm", "--results", str(res)]) == 2
    line = _one_error_line(capsys)
    assert "SLURM controller does not answer" in line and why in line
    assert not res.exists()


# ----------------------------------------------------------------------------- GPUs


@pytest.mark.parametrize("backend", ["local", "ray"])
def test_gpus_asked_where_no_cuda_is_visible_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture, backend: str) -> None:
    """Was: trained on CPU silently. Embedded Ray too (it runs the trials on this machine)."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible here")
    path = write_study(tmp_path, models="[vit@xs]", data_sizes="[16]", steps=2)
    path.write_text(path.read_text().replace("resources: {cpus: 1, gpus: 0}", "resources: {cpus: 1, gpus: 1}"))
    res = tmp_path / "res"
    assert main(["run", str(path), "--backend", backend, "--results", str(res)]) == 2
    line = _one_error_line(capsys)
    assert "resources.gpus is 1 but no CUDA device is visible here" in line and "gpus: 0" in line
    assert not res.exists()


# ----------------------------------------------------------------------------- SIGTERM


def _sigterm_after_first_row(tmp_path: Path, backend: str) -> None:
    """SIGTERM once a row is on disk: exit 143, an 'interrupted' line, finished rows intact, no claim
    left, no stack dump; the re-run (here: local) completes the study with each trial once."""
    study = write_study(tmp_path, name="term", models="[resnet@xs, vit@xs]", data_sizes="[32, 64, 128]", steps=30)
    out_dir = tmp_path / "res" / "term"
    cmd = [HARNESS, "run", str(study), "--backend", backend, "--results", str(tmp_path / "res"), "--no-report"]
    log = tmp_path / "driver.log"
    with open(log, "w") as f:  # own session: stop_session cleans up an embedded Ray by PID
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: store.trial_files(out_dir) or proc.poll() is not None, 300, "the first row")
        assert proc.poll() is None, "the driver finished before the signal: make the study longer\n" + log.read_text()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(120)
    finally:
        stop_session(proc.pid)
    text = log.read_text()
    assert code == 143, text
    assert "interrupted" in text and "Traceback" not in text and "Stack trace" not in text and "SIGABRT" not in text, text
    first = store.read(out_dir)
    assert 1 <= len(first) < 6 and (first["status"] == "ok").all()
    assert not [p for p in (out_dir / "claims").glob("[!.]*")], "claims left behind"
    assert main(["run", str(study), "--backend", "local", "--results", str(tmp_path / "res"), "--no-report"]) == 0
    final = store.read(out_dir)
    assert len(final) == 6 and final["trial_id"].is_unique and (final["status"] == "ok").all()


@pytest.mark.slow
def test_sigterm_to_a_local_driver_ends_like_ctrl_c(tmp_path: Path) -> None:
    _sigterm_after_first_row(tmp_path, "local")


@pytest.mark.slow
def test_sigterm_to_a_ray_driver_ends_like_ctrl_c(tmp_path: Path) -> None:
    """Was: exit 134 and a C++ stack dump (ray.init's own SIGTERM handler)."""
    if os.environ.get("RAY_ADDRESS"):
        pytest.skip("this test needs the embedded Ray")
    _sigterm_after_first_row(tmp_path, "ray")
