"""Issue 27, exports: one per target at a time, duplicates removed on re-export, Ctrl-C one line."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.analysis import export
from harness.cli import main
from harness.errors import StudyError
from tests.test_sql import write_study


def test_a_second_export_to_the_same_target_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("tensorboard")
    rd = write_study(tmp_path, "lk")
    tb = tmp_path / "tb"
    with export.target_lock(str(tmp_path / "." / "tb"), "tensorboard"):  # another spelling of the same directory
        code = main(["export", str(rd.path), "--tensorboard", str(tb)])
        err = capsys.readouterr().err
        assert code == 2 and "another harness export to this target is running" in err and not tb.exists()
    assert main(["export", str(rd.path), "--tensorboard", str(tb)]) == 0  # released: the next one runs


def test_ctrl_c_during_export_is_one_line_exit_130(tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch) -> None:
    pytest.importorskip("tensorboard")
    from harness.analysis.export_tensorboard import TensorboardSink

    rd = write_study(tmp_path, "cc")

    def interrupted(self: object, rec: object) -> str:
        raise KeyboardInterrupt

    monkeypatch.setattr(TensorboardSink, "log", interrupted)
    code = main(["export", str(rd.path), "--tensorboard", str(tmp_path / "tb")])
    err = capsys.readouterr().err
    assert code == 130 and err.strip().startswith("interrupted:") and len(err.strip().splitlines()) == 1


class FakeClient:
    """The MlflowClient calls the sink makes, over a list of runs."""

    def __init__(self, runs: list) -> None:
        self.runs, self.deleted = runs, []

    def delete_run(self, run_id: str) -> None:
        self.deleted.append(run_id)


def run(rid: str, trial: str, stamp: str) -> SimpleNamespace:
    return SimpleNamespace(
        info=SimpleNamespace(run_id=rid), data=SimpleNamespace(tags={"trial_id": trial, "harness.stamp": stamp})
    )


def test_re_export_removes_duplicate_runs_of_a_trial() -> None:
    """Two concurrent exports once left 72 runs for 37 trials; later exports said 'unchanged' and kept them."""
    pytest.importorskip("mlflow")
    from harness.analysis.export_mlflow import MlflowSink

    sink = MlflowSink.__new__(MlflowSink)
    runs = [run("a", "t1", "s"), run("b", "t1", "s"), run("c", "t1", "s"), run("d", "t2", "s")]
    sink.client = FakeClient(runs)
    sink._experiments = {"st": "1"}
    sink._index = {"1": {"t1": runs[:3], "t2": runs[3:]}}
    rec = SimpleNamespace(study="st", trial_id="t1", stamp="s")
    assert sink.log(rec) == "updated" and sink.client.deleted == ["b", "c"]
    assert sink.log(rec) == "unchanged" and sink.client.deleted == ["b", "c"]
    assert sink.log(SimpleNamespace(study="st", trial_id="t2", stamp="s")) == "unchanged"


def test_lock_is_per_target(tmp_path: Path) -> None:
    with export.target_lock("sqlite:///a.db", "a"), export.target_lock("sqlite:///b.db", "b"):
        with pytest.raises(StudyError, match="another harness export"):
            with export.target_lock(f"sqlite:///{Path('a.db').resolve()}", "a"):
                pass
