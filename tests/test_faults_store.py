"""Fault injection for the results store (issue 15 items 3 and 4): corrupt and foreign files,
full disks, read-only roots, a results path that is a file, a name too long for the file system.

Each case: one line (`error: ...`, exit 2) or a note, never a traceback or a hang; nothing
deleted silently; no temporary files left. A full disk is simulated twice: by a patched writer
(everywhere) and by a small tmpfs (where this process may mount one: root on Linux).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from harness import claims, store
from harness.cli import main
from harness.store import ResultsDir, TrialOutput
from tests.conftest import write_study


def _row(tid: str, status: str = "ok", acc: float = 0.5, data_size: int = 100) -> dict:
    return {
        "study": "s",
        "trial_id": tid,
        "status": status,
        "error": "",
        "family": "vit",
        "size": "xs",
        "model": "vit@xs",
        "image_size": 28,
        "data_size": data_size,
        "seed": 0,
        "test_acc": acc,
        "params": 123,
        "steps": 10,
    }


def _temporaries(root: Path) -> list[Path]:
    return [p for p in root.rglob(".*") if p.name.endswith(".tmp") or p.name.startswith(".write-probe")]


@pytest.fixture
def two_rows(tmp_path: Path) -> ResultsDir:
    rd = ResultsDir(tmp_path / "s")
    rd.write(TrialOutput(_row("a", data_size=100), [{"epoch": 1.0, "step": 1, "test_acc": 0.4}]))
    rd.write(TrialOutput(_row("b", data_size=200), [{"epoch": 1.0, "step": 1, "test_acc": 0.5}]))
    return rd


# ----------------------------------------------------------------------------- corrupt or foreign files


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _other_schema(path: Path) -> None:
    pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}).to_parquet(path)


def _junk(path: Path) -> None:
    path.write_bytes(b"\x00junk, not parquet\n" * 10)


@pytest.mark.parametrize("spoil", [_truncate, _other_schema, _junk], ids=["truncated", "other-schema", "junk"])
def test_a_bad_trial_file_is_skipped_and_reported_once(
    two_rows: ResultsDir, spoil: object, capsys: pytest.CaptureFixture
) -> None:
    bad = two_rows.trial_file("b")
    spoil(bad)  # type: ignore[operator]
    assert store.done_ids(two_rows.path) == {"a"}  # the bad trial is not done
    assert main(["status", str(two_rows.path)]) == 0
    out = capsys.readouterr().out
    assert f"skipped 1 unreadable file: {bad}, move it away or delete it" in out.replace("\n", "")
    assert main(["table", str(two_rows.path), "--format", "csv"]) == 0
    out, err = capsys.readouterr()
    assert err.strip() == f"skipped 1 unreadable file: {bad}, move it away or delete it"
    assert "test_acc@data_size=100" in out and "data_size=200" not in out  # no phantom row
    assert bad.exists()  # reported, never deleted


def test_junk_in_curves_and_a_junk_file_name_in_trials(two_rows: ResultsDir, capsys: pytest.CaptureFixture) -> None:
    _junk(two_rows.curves / "junk.parquet")
    _junk(two_rows.trials / "junk.parquet")
    (two_rows.trials / "notes.txt").write_text("not ours: not a row file, not read")
    assert main(["table", str(two_rows.path)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("skipped 2 unreadable files: ") and err[0].endswith("delete them")
    assert str(two_rows.trials / "junk.parquet") in err[0] and str(two_rows.curves / "junk.parquet") in err[0]
    assert main(["plot", str(two_rows.path), "--kind", "curves"]) == 0


def test_run_moves_a_bad_trial_file_aside_and_runs_the_trial_again(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    study = write_study(tmp_path, name="bad", models="[vit@xs]", data_sizes="[16, 32]", steps=2)
    res = tmp_path / "res"
    assert main(["run", str(study), "--backend", "local", "--results", str(res), "--no-report"]) == 0
    rd = ResultsDir(res / "bad")
    first = sorted(rd.trials.glob("*.parquet"))[0]
    _truncate(first)
    (rd.trials / "junk.parquet").write_bytes(b"junk")
    capsys.readouterr()
    assert main(["run", str(study), "--backend", "local", "--results", str(res), "--no-report"]) == 0
    err = capsys.readouterr().err
    assert "1 already done, 1 to run" in err and err.count("moved unreadable file aside") == 2
    assert (rd.quarantine / "trials" / first.name).exists() and (rd.quarantine / "trials" / "junk.parquet").exists()
    df = store.read(rd.path)
    assert len(df) == 2 and (df["status"] == "ok").all() and not rd.unreadable.paths


def test_an_unreadable_compacted_file_falls_back_to_the_row_files(two_rows: ResultsDir) -> None:
    two_rows.compact()
    _junk(two_rows.compacted_trials)
    assert sorted(store.read(two_rows.path)["trial_id"]) == ["a", "b"]


# ----------------------------------------------------------------------------- claims


def test_a_claim_never_exists_half_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(f: object, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store, "_write", full)
    held = claims.Claims(tmp_path)
    with pytest.raises(OSError):
        held.acquire(["t1"])
    monkeypatch.undo()
    held.close()
    assert [p.name for p in ResultsDir(tmp_path).claims.iterdir()] == [".lock"]  # no 0-byte claim, no temporary


@pytest.mark.parametrize("content", [b"", b"{garbled"], ids=["empty", "garbled"])
def test_an_unreadable_claim_is_stale_not_a_300_s_wait(tmp_path: Path, content: bytes) -> None:
    directory = ResultsDir(tmp_path).claims
    directory.mkdir(parents=True)
    (directory / "t1").write_bytes(content)  # what an older version left on a full disk
    old = time.time() - 60
    os.utime(directory / "t1", (old, old))
    assert claims.holders(tmp_path) == {}  # status does not call it "running"
    with claims.Claims(tmp_path) as held:
        assert held.acquire(["t1"]) == (["t1"], {})
        assert json.loads((directory / "t1").read_text())["pid"] == os.getpid()


def test_a_fresh_unreadable_claim_gets_a_moment(tmp_path: Path) -> None:
    """Within UNREADABLE_GRACE_S it may still be an old-style writer filling it in: respected."""
    directory = ResultsDir(tmp_path).claims
    directory.mkdir(parents=True)
    (directory / "t1").write_bytes(b"")
    with claims.Claims(tmp_path) as held:
        assert list(held.acquire(["t1"])[1]) == ["t1"]


# ----------------------------------------------------------------------------- full disk, read-only, in the way


def _one_error_line(capsys: pytest.CaptureFixture, *expect: str) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    errors = [line for line in err if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in "\n".join(err), err
    for word in expect:
        assert word in errors[0], errors[0]
    return errors[0]


def test_full_disk_before_the_run_exits_2_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    def full(f: object, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store, "_write", full)
    res = tmp_path / "res"
    assert main(["run", str(write_study(tmp_path, steps=1)), "--backend", "local", "--results", str(res)]) == 2
    _one_error_line(capsys, "disk is full", str(res / "tiny"))
    assert not res.exists()


def test_full_disk_mid_run_exits_2_without_temporaries_or_claims(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    def full(self: pd.DataFrame, path: str, **kw: object) -> None:
        Path(path).write_bytes(b"PAR1 half")  # the disk filled up while the row was written
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", full)  # rows and curves; the study copy is bytes
    res = tmp_path / "res"
    study = write_study(tmp_path, models="[vit@xs]", data_sizes="[16]", steps=1)
    assert main(["run", str(study), "--backend", "local", "--results", str(res), "--no-report"]) == 2
    _one_error_line(capsys, "disk is full")
    out = ResultsDir(res / "tiny")
    assert not _temporaries(res) and not list(out.trials.glob("*")) and not list(out.claims.glob("[!.]*"))
    monkeypatch.undo()
    assert main(["run", str(study), "--backend", "local", "--results", str(res), "--no-report"]) == 0  # space again


def test_results_path_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    res = tmp_path / "res"
    res.write_text("a file where the results should go")
    assert main(["run", str(write_study(tmp_path, steps=1)), "--backend", "local", "--results", str(res)]) == 2
    _one_error_line(capsys, "not a directory")
    assert res.read_text() == "a file where the results should go"


def test_two_drivers_preflighting_at_once_each_remove_only_their_own_probe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the race behind a flaky test_two_drivers_at_once_run_each_trial_once: driver B wrote and removed
    # its probe between driver A's write and A's unlink, which then failed (ENOENT) and A exited 2
    real, inside = store.atomic_write, []

    def atomic_write_then_another_driver(path: str | Path, data: object, **kw: object) -> Path:
        out = real(path, data, **kw)  # type: ignore[arg-type]
        if Path(path).name.startswith(".write-probe") and not inside:
            inside.append(path)
            ResultsDir(tmp_path / "res" / "s").preflight()  # B's whole preflight, in A's window
        return out

    monkeypatch.setattr(store, "atomic_write", atomic_write_then_another_driver)
    ResultsDir(tmp_path / "res" / "s").preflight()
    assert inside and (tmp_path / "res" / "s").is_dir() and not _temporaries(tmp_path)


def test_a_failed_preflight_keeps_the_directory_another_driver_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    res = tmp_path / "res" / "s"
    res.parent.mkdir()
    real_mkdir = Path.mkdir

    def the_other_driver_wins(self: Path, *a: object, **kw: object) -> None:
        if self == res and not res.exists():
            os.mkdir(res)  # the other driver made it between our check and our mkdir
        real_mkdir(self, *a, **kw)  # type: ignore[arg-type]

    def full(f: object, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "mkdir", the_other_driver_wins)
    monkeypatch.setattr(store, "_write", full)
    with pytest.raises(store.StudyError, match="disk is full"):
        ResultsDir(res).preflight()
    assert res.is_dir()  # not ours to remove: the other driver is about to write its rows there


def test_a_preflight_failing_part_way_removes_the_parents_it_made(tmp_path: Path) -> None:
    with pytest.raises(store.StudyError, match="too long"):
        ResultsDir(tmp_path / "res" / "deeper" / ("n" * 300)).preflight()
    assert not (tmp_path / "res").exists()


def test_study_name_too_long_for_the_file_system(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    res = tmp_path / "res"
    study = write_study(tmp_path, name="long", steps=1)
    study.write_text(study.read_text().replace("name: long", "name: " + "n" * 300))
    assert main(["run", str(study), "--backend", "local", "--results", str(res)]) == 2
    _one_error_line(capsys, "too long")
    assert not res.exists()


@contextlib.contextmanager
def _tmpfs(path: Path, options: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({p.stderr.strip() or 'mount failed'}); the patched-writer tests cover it")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_read_only_results_root(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with _tmpfs(tmp_path / "ro", "ro,size=1m") as ro:
        assert main(["run", str(write_study(tmp_path, steps=1)), "--backend", "local", "--results", str(ro)]) == 2
        _one_error_line(capsys, "read-only")
        assert not list(ro.iterdir())


def test_full_tmpfs_before_and_during_a_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    study = write_study(tmp_path, models="[vit@xs]", data_sizes="[16]", steps=1)
    with _tmpfs(tmp_path / "small", "size=256k") as small:
        filler = small / "filler"
        with contextlib.suppress(OSError), open(filler, "wb") as f:
            while True:
                f.write(b"\0" * 4096)
        assert main(["run", str(study), "--backend", "local", "--results", str(small), "--no-report"]) == 2
        _one_error_line(capsys, "disk is full")
        assert sorted(p.name for p in small.iterdir()) == ["filler"]  # nothing else, no temporaries
        # room for the directory and the study files, not for a row: the trial's write fails mid-run
        # (4 KiB pages: the probe, study.yaml, study.json, a claim; a row file is ~20 KiB)
        filler.write_bytes(b"\0" * (256 * 1024 - 16 * 1024))
        assert main(["run", str(study), "--backend", "local", "--results", str(small), "--no-report"]) == 2
        _one_error_line(capsys, "disk is full", "trial ")
        assert (small / "tiny" / "study.json").exists()
        assert not _temporaries(small)
        assert not list(ResultsDir(small / "tiny").claims.glob("[!.]*"))
        filler.unlink()
        assert main(["run", str(study), "--backend", "local", "--results", str(small), "--no-report"]) == 0
        assert len(store.read(small / "tiny")) == 1
