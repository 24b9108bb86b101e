"""`harness export` to a real MLflow server and to TensorBoard event files, `tracking:` in a study,
and the optional-extras discipline (a missing package: one line naming the extra, exit 2).

The MLflow tests start `mlflow server` on 127.0.0.1 (a free port, sqlite store and artifacts in a
temporary directory) once per module, wait for /health, read back with `MlflowClient`, and stop
the server by its process group at the end. TensorBoard runs are read back with TensorBoard's own
`EventAccumulator`.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.cli import main
from harness.store import ResultsDir, TrialOutput
from tests.conftest import write_study as write_study_file
from tests.test_sql import write_study

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    pytest.importorskip("mlflow")
    d = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    log = open(d / "server.log", "wb")  # noqa: SIM115 - open for the server's lifetime
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    cmd += ["--backend-store-uri", f"sqlite:///{d / 'mlflow.db'}", "--default-artifact-root", str(d / "artifacts")]
    # the job runner (huey consumers for MLflow's GenAI jobs) is not tracking: off, it starts faster
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=d, env=env, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180  # measured 21 s on 2 loaded cores (database migrations)
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None, (d / "server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "mlflow server did not answer /health in 180 s"
            time.sleep(0.3)
        yield uri
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and the uvicorn worker it started
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def client(uri: str) -> object:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def runs(uri: str, study: str) -> list:
    c = client(uri)
    exp = c.get_experiment_by_name(study)
    return [] if exp is None else c.search_runs([exp.experiment_id], max_results=1000)


def export(capsys: pytest.CaptureFixture, *argv: str) -> str:
    code = main(["export", *argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


# ----------------------------------------------------------------------------- MLflow


@pytest.mark.slow
def test_mlflow_one_run_per_trial_read_back_and_idempotent(mlflow_server: str, tmp_path: Path, capsys) -> None:
    rd = write_study(tmp_path, "mlf")
    rows, curves = rd.read(), rd.read_curves()
    out = export(capsys, str(rd.path), "--mlflow", mlflow_server)
    assert "12 trials (12 created, 0 updated, 0 unchanged)" in out and "View run" not in out
    got = runs(mlflow_server, "mlf")
    assert sorted(r.data.tags["trial_id"] for r in got) == sorted(rows["trial_id"])

    row = rows[rows["status"] == "ok"].iloc[0]
    run = next(r for r in got if r.data.tags["trial_id"] == row["trial_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == f"{row['model']} n={row['data_size']} 32px seed={row['seed']}"
    cfg = json.loads(row["config_json"])
    assert run.data.params == {k: str(v) for k, v in cfg.items()}  # the resolved config (flat in this fixture)
    assert run.data.metrics["test_acc"] == pytest.approx(row["test_acc"])
    assert run.data.metrics["params"] == row["params"]
    for tag in ("device", "dtype", "torch_version", "timm_version", "harness_version", "git_sha", "host", "study_hash"):
        assert run.data.tags[tag] == row[tag], tag
    assert run.data.tags["status"] == "ok"
    history = client(mlflow_server).get_metric_history(run.info.run_id, "test_acc")
    points = curves[curves["trial_id"] == row["trial_id"]].sort_values("step")
    assert [m.step for m in history][: len(points)] == list(points["step"])  # the curve, then the final value
    # issue 26: the last step is logged once, with the row's value (it was logged twice: the curve point and the row)
    by_step = {int(st): v for st, v in zip(points["step"], points["test_acc"])} | {int(row["steps"]): row["test_acc"]}
    assert len(history) == len(by_step)
    assert sorted(m.value for m in history) == pytest.approx(sorted(by_step.values()))

    failed = rows[rows["status"] == "failed"].iloc[0]
    frun = next(r for r in got if r.data.tags["trial_id"] == failed["trial_id"])
    assert frun.info.status == "FAILED" and frun.data.tags["status"] == "failed" and frun.data.tags["error"] == failed["error"]

    out = export(capsys, str(rd.path), "--mlflow", mlflow_server)  # again: nothing new
    assert "12 trials (0 created, 0 updated, 12 unchanged)" in out
    assert len(runs(mlflow_server, "mlf")) == 12

    retried = rd.read_row(failed["trial_id"])  # the failed trial is retried and succeeds
    retried.update(status="ok", error="", test_acc=0.5, started_at="2025-02-01T00:00:00")
    rd.write(TrialOutput(row=retried, curve=[{"step": 10, "test_acc": 0.4}, {"step": 20, "test_acc": 0.5}]))
    out = export(capsys, str(rd.path), "--mlflow", mlflow_server)
    assert "12 trials (0 created, 1 updated, 11 unchanged)" in out
    after = runs(mlflow_server, "mlf")
    mine = [r for r in after if r.data.tags["trial_id"] == failed["trial_id"]]
    assert len(after) == 12 and len(mine) == 1
    assert mine[0].info.status == "FINISHED" and mine[0].data.metrics["test_acc"] == 0.5


@pytest.mark.slow
def test_tracking_in_a_study_logs_each_trial_as_it_finishes(mlflow_server: str, tmp_path: Path, capsys) -> None:
    tb = tmp_path / "tb"
    study = write_study_file(
        tmp_path,
        name="tracked",
        models="[resnet@xs]",
        data_sizes="[32]",
        extra=f"tracking: {{mlflow: '{mlflow_server}', tensorboard: '{tb}'}}\n",
    )
    res = tmp_path / "results"
    assert main(["run", str(study), "--backend", "local", "--results", str(res), "--no-report"]) == 0
    rd = ResultsDir(res / "tracked")
    row = rd.read().iloc[0]
    (run,) = runs(mlflow_server, "tracked")
    assert run.data.tags["trial_id"] == row["trial_id"] and run.info.status == "FINISHED"
    assert run.data.params["train.lr"] == "0.001" and run.data.params["model.family"] == "resnet"
    assert run.data.metrics["test_acc"] == pytest.approx(row["test_acc"])
    steps = [m.step for m in client(mlflow_server).get_metric_history(run.info.run_id, "train_loss")]
    assert steps[:2] == [2, 4]  # eval_every 2 of 4 steps, then the row's final value
    assert len([p for p in (tb / "tracked").iterdir() if not p.name.startswith(".")]) == 1
    capsys.readouterr()
    out = export(capsys, str(rd.path), "--mlflow", mlflow_server, "--tensorboard", str(tb))
    assert out.count("1 trials (0 created, 0 updated, 1 unchanged)") == 2  # the run's logging is what export writes


def test_a_tracker_that_fails_warns_once_and_keeps_going(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tracking failure must not fail or lose the trial: the runner stores the row first, the
    tracker warns once per sink and turns it off."""
    pytest.importorskip("mlflow")
    from harness.analysis.export import Tracker

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    blocker = tmp_path / "file"
    blocker.write_text("a file where the log directory should be")
    warnings: list[str] = []
    sinks = {"mlflow": f"http://127.0.0.1:{free_port()}", "tensorboard": str(blocker / "tb")}
    tracker = Tracker(sinks, warnings.append, ResultsDir(tmp_path / "res"))
    row = {"study": "s", "trial_id": "abc", "status": "ok", "test_acc": 0.5, "model": "vit@xs"}
    tracker.log(row, [{"step": 1, "test_acc": 0.4}])
    tracker.log(row, [])
    tracker.close()
    assert len(warnings) == 2 and all(
        "tracking off for this run" in w and f"harness export {tmp_path / 'res'}" in w for w in warnings
    )
    assert tracker.sinks == []


# ----------------------------------------------------------------------------- TensorBoard


def event_files(d: Path) -> list[str]:
    return sorted(p.name for p in d.glob("events.out.tfevents.*"))


def test_tensorboard_run_per_trial_read_back_with_hparams_and_idempotent(tmp_path: Path, capsys) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    rd = write_study(tmp_path, "tbs")
    rows, curves = rd.read(), rd.read_curves()
    tb = tmp_path / "tb"
    out = export(capsys, str(rd.path), "--tensorboard", str(tb))
    assert "12 trials (12 created, 0 updated, 0 unchanged)" in out
    dirs = {p.name.rsplit("-", 1)[1]: p for p in (tb / "tbs").iterdir()}
    assert sorted(dirs) == sorted(rows["trial_id"])

    row = rows[rows["status"] == "ok"].iloc[0]
    d = dirs[row["trial_id"]]
    assert d.name == f"{row['model']}-n{row['data_size']}-32px-s{row['seed']}-{row['trial_id']}"
    acc = EventAccumulator(str(d))
    acc.Reload()
    points = curves[curves["trial_id"] == row["trial_id"]].sort_values("step")
    curve = acc.Scalars("curve/test_acc")
    assert [e.step for e in curve] == list(points["step"])
    assert [e.value for e in curve] == pytest.approx(list(points["test_acc"]), rel=1e-6)
    (final,) = acc.Scalars("final/test_acc")
    assert final.value == pytest.approx(row["test_acc"], rel=1e-6) and final.step == points["step"].max()
    content = acc.PluginTagToContent(metadata.PLUGIN_NAME)
    start = plugin_data_pb2.HParamsPluginData.FromString(content[metadata.SESSION_START_INFO_TAG]).session_start_info
    assert start.hparams["lr"].number_value == pytest.approx(0.003) and start.hparams["family"].string_value == row["family"]
    end = plugin_data_pb2.HParamsPluginData.FromString(content[metadata.SESSION_END_INFO_TAG]).session_end_info
    assert end.status == api_pb2.STATUS_SUCCESS

    failed = rows[rows["status"] == "failed"].iloc[0]
    facc = EventAccumulator(str(dirs[failed["trial_id"]]))
    facc.Reload()
    fend = plugin_data_pb2.HParamsPluginData.FromString(facc.PluginTagToContent("hparams")[metadata.SESSION_END_INFO_TAG])
    assert fend.session_end_info.status == api_pb2.STATUS_FAILURE

    before = {tid: event_files(p) for tid, p in dirs.items()}
    out = export(capsys, str(rd.path), "--tensorboard", str(tb))
    assert "12 trials (0 created, 0 updated, 12 unchanged)" in out
    assert {tid: event_files(p) for tid, p in dirs.items()} == before

    retried = rd.read_row(failed["trial_id"])
    retried.update(status="ok", error="", test_acc=0.5, started_at="2025-02-01T00:00:00")
    rd.write(TrialOutput(row=retried, curve=[{"step": 10, "test_acc": 0.4}]))
    out = export(capsys, str(rd.path), "--tensorboard", str(tb))
    assert "12 trials (0 created, 1 updated, 11 unchanged)" in out
    assert sorted(p.name for p in (tb / "tbs").iterdir()) == sorted(p.name for p in dirs.values())  # no leftovers
    (only,) = event_files(dirs[failed["trial_id"]])
    racc = EventAccumulator(str(dirs[failed["trial_id"]]))
    racc.Reload()
    assert [e.value for e in racc.Scalars("final/test_acc")] == [0.5]


# ----------------------------------------------------------------------------- study key, flags, extras


def test_tracking_key_is_validated_and_changes_no_trial_id(tmp_path: Path, capsys) -> None:
    from harness import spec

    plain = spec.expand(spec.load_study(write_study_file(tmp_path, name="a")))
    tracked = spec.load_study(write_study_file(tmp_path, name="a", extra="tracking: {mlflow: 'http://h:5000'}\n"))
    assert tracked.tracking == {"mlflow": "http://h:5000"}
    assert [t.trial_id for t in spec.expand(tracked)] == [t.trial_id for t in plain]
    assert spec.smoke(tracked).tracking == tracked.tracking
    for extra, words in (
        ("tracking: {mlfow: x}\n", ["tracking.mlfow", "did you mean mlflow"]),
        ("tracking: {mlflow: 3}\n", ["tracking.mlflow", "non-empty string"]),
        ("tracking: http://h\n", ["tracking", "mapping"]),
    ):
        path = write_study_file(tmp_path, name="bad", extra=extra)
        assert main(["run", str(path), "--backend", "local", "--results", str(tmp_path / "r")]) == 2
        err = capsys.readouterr().err
        assert all(w in err for w in words), err
    assert not (tmp_path / "r").exists()


def test_export_without_a_target_is_exit_2(tmp_path: Path, capsys) -> None:
    rd = write_study(tmp_path, "x")
    assert main(["export", str(rd.path)]) == 2
    assert "give --mlflow URI and/or --tensorboard DIR" in capsys.readouterr().err


PROBE = """
import json, sys
for name in json.loads(sys.argv[1]):
    sys.modules[name] = None  # import fails as if not installed
from harness.cli import main
print("PROBE " + json.dumps([main(a) for a in json.loads(sys.argv[2])]))
"""


@pytest.mark.slow
def test_a_missing_extra_names_it_exit_2_nothing_written(tmp_path: Path) -> None:
    rd = write_study(tmp_path, "x")
    study = write_study_file(tmp_path, name="tracked", extra="tracking: {mlflow: 'http://127.0.0.1:1'}\n")
    out = tmp_path / "out"
    argvs = [
        ["sql", str(rd.path), "SELECT 1", "--parquet", str(out / "q.parquet")],
        ["export", str(rd.path), "--mlflow", "http://127.0.0.1:1", "--tensorboard", str(out / "tb")],
        ["export", str(rd.path), "--tensorboard", str(out / "tb")],
        ["run", str(study), "--backend", "local", "--results", str(out / "results")],
    ]
    extras = ["sql", "mlflow", "tensorboard", "mlflow"]
    p = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(["duckdb", "mlflow", "tensorboard"]), json.dumps(argvs)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)},
    )
    line = next((x for x in p.stdout.splitlines() if x.startswith("PROBE ")), None)
    assert line is not None, p.stdout[-3000:] + p.stderr[-3000:]
    assert json.loads(line[6:]) == [2, 2, 2, 2]
    lines = [x for x in p.stderr.splitlines() if x.strip()]
    assert len(lines) == 4, p.stderr
    for msg, extra in zip(lines, extras):
        assert msg.startswith("error: ") and f"pip install 'harness[{extra}]'" in msg and "is not installed" in msg, msg
    assert not out.exists()


def test_require_imports_or_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.errors import StudyError
    from harness.extras import require

    assert require("json", "none").dumps([]) == "[]"
    monkeypatch.setitem(sys.modules, "webdataset", None)
    with pytest.raises(StudyError) as e:
        require("webdataset", "webdataset")
    assert (
        e.value.line()
        == "the 'webdataset' package is not installed — pip install 'harness[webdataset]' (or pip install 'harness[all]')"
    )


def test_tracker_reads_the_stored_curve_when_workers_stored_the_row(tmp_path: Path) -> None:
    """SLURM workers store their own rows: the driver gets the row without its curve, the tracker reads it from the store."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from harness.analysis.export import Tracker

    rd = write_study(tmp_path, "w", families=("resnet",), data_sizes=(1000,), seeds=(0,), fail=False)
    row = rd.read_row(rd.read()["trial_id"].iloc[0])
    warnings: list[str] = []
    tracker = Tracker({"tensorboard": str(tmp_path / "tb")}, warnings.append, rd)
    tracker.log(row, [])
    (d,) = (tmp_path / "tb" / "w").iterdir()
    acc = EventAccumulator(str(d))
    acc.Reload()
    assert not warnings and len(acc.Scalars("curve/test_acc")) == len(rd.read_curves())


# ----------------------------------------------------------------------------- live tracking


@pytest.mark.slow  # ~25 s: MLflow's database set-up and a trial
def test_curve_points_reach_tensorboard_and_mlflow_while_the_trial_trains(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`tracking:` streams each curve point as it is evaluated (harness.live): before the trial
    ends the TensorBoard run directory holds the points so far (no marker yet) and MLflow has a
    `live` run; the stored row's run replaces both, nothing logged twice, and export adds nothing."""
    pytest.importorskip("tensorboard")
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from harness.analysis import export_mlflow, export_tensorboard

    tb, uri = tmp_path / "tb", f"sqlite:///{tmp_path / 'mlflow.db'}"
    seen: list[tuple] = []
    tb_live, mlflow_live = export_tensorboard.TensorboardSink.live, export_mlflow.MlflowSink.live

    def tb_spy(self: export_tensorboard.TensorboardSink, rec: object) -> None:
        tb_live(self, rec)
        d = self.run_dir(rec)
        acc = EventAccumulator(str(d))
        acc.Reload()
        seen.append(("tb", len(acc.Scalars("curve/train_loss")), (d / export_tensorboard.MARKER).exists()))

    def mlflow_spy(self: export_mlflow.MlflowSink, rec: object) -> None:
        mlflow_live(self, rec)
        (run,) = self.client.search_runs([self.experiment(rec.study)])
        history = self.client.get_metric_history(run.info.run_id, "train_loss")
        seen.append(("mlflow", len(history), run.data.tags["harness.stamp"], run.data.tags["status"]))

    monkeypatch.setattr(export_tensorboard.TensorboardSink, "live", tb_spy)
    monkeypatch.setattr(export_mlflow.MlflowSink, "live", mlflow_spy)
    study = write_study_file(
        tmp_path,
        name="live",
        models="[resnet@xs]",
        data_sizes="[32]",
        extra=f"tracking: {{mlflow: '{uri}', tensorboard: '{tb}'}}\n",
    )
    res = tmp_path / "results"
    assert main(["run", str(study), "--backend", "local", "--results", str(res), "--no-report"]) == 0
    # eval_every 2 of 4 steps: points at steps 2 and 4, each seen while the trial still trained
    assert [s for s in seen if s[0] == "tb"] == [("tb", 1, False), ("tb", 2, False)]
    assert [s for s in seen if s[0] == "mlflow"] == [("mlflow", 1, "live", "running"), ("mlflow", 2, "live", "running")]
    rd = ResultsDir(res / "live")
    row = rd.read().iloc[0]
    (run,) = MlflowClient(tracking_uri=uri).search_runs(
        [MlflowClient(tracking_uri=uri).get_experiment_by_name("live").experiment_id]
    )
    assert run.info.status == "FINISHED" and run.data.tags["harness.stamp"] != "live"
    steps = [m.step for m in MlflowClient(tracking_uri=uri).get_metric_history(run.info.run_id, "train_loss")]
    assert steps == [2, 4]  # the final step once: the row's value, not the live point's as well
    (d,) = [p for p in (tb / "live").iterdir() if not p.name.startswith(".")]
    acc = EventAccumulator(str(d))
    acc.Reload()
    assert (d / export_tensorboard.MARKER).exists() and [e.step for e in acc.Scalars("curve/train_loss")] == [2, 4]
    assert row["status"] == "ok"
    lines = export_path_lines(rd.path, uri, tb)
    assert all("1 trials (0 created, 0 updated, 1 unchanged)" in line for line in lines)


def export_path_lines(results: Path, uri: str, tb: Path) -> list[str]:
    from harness.analysis.export import export_path

    return export_path(results, mlflow=uri, tensorboard=tb)


def test_a_live_tracker_that_fails_warns_once_and_the_trial_goes_on(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from harness.analysis.export import Tracker

    blocker = tmp_path / "file"
    blocker.write_text("a file where the log directory should be")
    warnings: list[str] = []
    tracker = Tracker({"tensorboard": str(blocker / "tb")}, warnings.append, ResultsDir(tmp_path / "res"))
    row = {"study": "s", "trial_id": "abc", "status": "running", "model": "vit@xs"}
    tracker.live(row, [{"step": 1, "train_loss": 2.0}])
    tracker.live(row, [{"step": 1, "train_loss": 2.0}, {"step": 2, "train_loss": 1.5}])
    tracker.log(dict(row, status="ok"), [{"step": 2, "train_loss": 1.5}])
    assert len(warnings) == 1 and "tracking off for this run" in warnings[0] and tracker.sinks == []


def test_a_live_curve_pickles_as_a_plain_list() -> None:
    """A checkpoint carries the curve, never the callback (harness.live.Curve)."""
    import pickle

    from harness import live

    got: list[dict] = []
    curve = live.Curve([{"step": 1}], got.append)
    curve.append({"step": 2})
    back = pickle.loads(pickle.dumps(curve))
    assert got == [{"step": 2}] and type(back) is list and back == [{"step": 1}, {"step": 2}]


def test_a_worker_process_logs_its_own_live_points(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A trial in a worker process (SLURM job, Ray worker, data-parallel rank) has no listener of the
    driver's: it inherits the tracking section (harness.live.ENV) and writes its points itself."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from harness import live
    from harness.runner import prepare
    from harness.trial import run_trial

    tb = tmp_path / "tb"
    _, (trial,) = prepare(write_study_file(tmp_path, name="w", models="[resnet@xs]", data_sizes="[32]"))
    monkeypatch.setenv(live.ENV, json.dumps({"tensorboard": str(tb)}))
    out = run_trial(trial)
    (d,) = (tb / "w").iterdir()
    acc = EventAccumulator(str(d))
    acc.Reload()
    assert out.row["status"] == "ok" and [e.step for e in acc.Scalars("curve/train_loss")] == [2, 4]
    assert not (d / "harness.json").exists()  # the driver's log of the stored row writes the run whole
