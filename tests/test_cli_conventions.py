"""One CLI convention (issue 26): `--json` on status, table and plot; fit's and plot's defaults;
exit 1 when fit/optimal fit nothing; comma lists in models; `--version` with the git sha;
`run --print-config`. On fixture rows and tiny synthetic studies, seconds in all."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import store
from harness.cli import main
from tests.analysis_fixtures import make_rows, store_dtypes
from tests.conftest import write_study


def _results(tmp_path: Path, data_sizes: tuple[int, ...] = (1000, 4000, 16000), fail: bool = False) -> Path:
    trials, _ = make_rows(families=("resnet", "vit"), sizes=("xs",), data_sizes=data_sizes, seeds=(0,), fail=fail)
    root = tmp_path / "res"
    (root / "trials").mkdir(parents=True)
    for _, row in store_dtypes(trials).iterrows():
        store.atomic_write(root / "trials" / f"{row['trial_id']}.parquet", lambda p, r=row: r.to_frame().T.to_parquet(p))
    return root


def test_status_json_counts_and_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = _results(tmp_path, fail=True)
    code = main(["status", str(root), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert out["results"] == str(root) and out["pending"] is None  # no study.json: nothing is known to be pending
    assert out["ok"] + out["failed"] == 6 and out["failed"] == len(out["failures"]) >= 1
    assert {"trial_id", "model", "data_size", "error"} <= set(out["failures"][0])
    assert code == out["exit_code"] == 1  # the same exit code as the table's
    assert main(["status", str(root)]) == 1


def test_fit_defaults_to_test_acc_against_data_size_and_exits_1_when_nothing_fits(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    root = _results(tmp_path)
    assert main(["fit", str(root), "--by", "family", "--bootstrap", "0", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["y"] == "test_acc" and rep["x"] == ["data_size"] and all(f["params"] for f in rep["fits"])
    two = _results(tmp_path / "two", data_sizes=(1000, 4000))  # 2 distinct x: no law can be fitted
    assert main(["fit", str(two), "--bootstrap", "0"]) == 1
    assert "nothing could be fitted" in capsys.readouterr().err
    assert main(["optimal", str(two), "--budget", "1e12", "--x", "params", "--x", "data_size", "--bootstrap", "0"]) == 1


def test_table_and_plot_json(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = _results(tmp_path)
    assert main(["table", str(root), "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert table["columns"][:2] == ["family", "model"] and len(table["records"]) == 2
    assert main(["table", str(root), "--csv"]) == 0 and capsys.readouterr().out.startswith("family,model")
    assert main(["plot", str(root), "--json", "--bootstrap", "0"]) == 0  # --kind defaults to scaling
    plot = json.loads(capsys.readouterr().out)
    assert plot["kind"] == "scaling" and all(Path(p).is_file() for p in plot["paths"])


def test_models_takes_a_comma_list(capsys: pytest.CaptureFixture) -> None:
    assert main(["models", "--family", "vit,resnet", "--json"]) == 0
    assert {r["family"] for r in json.loads(capsys.readouterr().out)} == {"vit", "resnet"}


def test_version_names_the_git_sha(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness import version

    version.git_sha.cache_clear()
    monkeypatch.setenv("HARNESS_GIT_SHA", "abc123def456")
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    version.git_sha.cache_clear()
    assert e.value.code == 0 and capsys.readouterr().out.strip() == "harness 0.1.0 (git abc123def456)"


def test_print_config_prints_the_resolved_study_and_runs_nothing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    study = write_study(tmp_path)
    results = tmp_path / "res"
    assert main(["run", str(study), "train.lr=3.0e-3", "--print-config", "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert "#   train.lr=3.0e-3" in out and "lr: 0.003" in out and not results.exists()
    assert main(["run", str(study), "train.lr=fast", "--print-config"]) == 2  # validated first: bad input is exit 2


def test_several_values_for_a_train_key_say_use_the_grid(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["run", str(write_study(tmp_path)), "train.lr=1e-3,3e-3", "--dry-run"]) == 2
    assert "sweep it on the grid: 'grid.lr=[1e-3,3e-3]'" in capsys.readouterr().err


def test_status_title_is_not_wrapped_mid_word(tmp_path: Path) -> None:
    from rich.console import Console

    from harness.runner import status

    root = _results(tmp_path)
    shown, _ = status(root)
    console = Console(width=len(str(root)) + 5, record=True, file=open(tmp_path / "out.txt", "w"))  # noqa: SIM115
    console.print(shown)
    # the whole path on one line while the terminal is wide enough for it (as the table's title it wrapped
    # at the table's width, a third of that)
    assert str(root) in console.export_text().splitlines()


def test_a_run_with_nothing_to_do_shows_no_empty_progress_bar(tmp_path: Path) -> None:
    from rich.console import Console

    from harness.runner import run_study

    study, results = write_study(tmp_path, models="[resnet@xs]", data_sizes="[32]", steps=2), tmp_path / "res"
    assert run_study(study, backend="local", results=results, report=False, console=Console(file=open(tmp_path / "a", "w"))) == 0  # noqa: SIM115
    console = Console(width=100, record=True, file=open(tmp_path / "b", "w"))  # noqa: SIM115
    assert run_study(study, backend="local", results=results, report=False, console=console) == 0
    text = console.export_text()
    assert "0 to run" in text and "0/0" not in text and "-:--:--" not in text


def test_saved_figures_keep_a_subtitle_wider_than_the_axes(tmp_path: Path) -> None:
    from PIL import Image

    from harness.analysis.plot_style import DPI, new_figure, save_figure

    fig, _ = new_figure()
    fig.suptitle("a subtitle far wider than the figure itself " * 4)
    png, _ = save_figure(fig, tmp_path, "wide")
    assert Image.open(png).size[0] > fig.get_size_inches()[0] * DPI  # the canvas grew to hold it: not clipped


def test_mlflow_gets_each_metric_once_per_step_and_hardware_as_tags() -> None:
    pytest.importorskip("mlflow")
    from harness.analysis.export_mlflow import MlflowSink
    from harness.analysis.export_records import record

    class Client:  # the calls _create makes, recorded
        def __init__(self) -> None:
            self.metrics: list = []

        def create_run(self, exp: str, **_: object) -> object:
            return type("Run", (), {"info": type("Info", (), {"run_id": "r1"})()})()

        def log_batch(self, rid: str, params: list, metrics: list) -> None:
            self.metrics += metrics

        def set_terminated(self, *_: object, **__: object) -> None:
            pass

    row = {
        "study": "s",
        "trial_id": "t",
        "status": "ok",
        "model": "vit@xs",
        "steps": 4,
        "test_acc": 0.5,
        "cpu_count": 2,
        "threads": 1,
    }
    rec = record(row, [{"step": 2, "test_acc": 0.3}, {"step": 4, "test_acc": 0.45}])
    assert "cpu_count" not in rec.metrics and rec.tags["cpu_count"] == "2" and rec.tags["threads"] == "1"
    sink = MlflowSink.__new__(MlflowSink)
    sink.client = Client()
    sink._create("e", rec)  # noqa: SLF001
    acc = [(m.step, m.value) for m in sink.client.metrics if m.key == "test_acc"]
    assert acc == [(2, 0.3), (4, 0.5)]  # the last step once, with the row's (final) value


def test_a_run_that_is_all_warm_up_says_so(tmp_path: Path) -> None:
    from rich.console import Console

    from harness.runner import run_study

    study = write_study(tmp_path, models="[resnet@xs]", data_sizes="[32]", steps=4)
    for overrides, said in ((["train.warmup_steps=10"], True), ([], False)):
        console = Console(width=300, record=True, file=open(tmp_path / "out", "w"))  # noqa: SIM115
        assert run_study(study, backend="local", results=tmp_path, dry_run=True, console=console, overrides=overrides) == 0
        assert ("1 of 1 trials are all warm-up (train.warmup_steps 10 >= their 4 steps" in console.export_text()) is said


def test_one_channels_and_classes_rule_for_counting(capsys: pytest.CaptureFixture) -> None:
    """models, profile and plan count with the same rule (issue 26): the input a size was made for —
    a published ImageNet config 3 channels / 1000 classes (timm's and the papers' counts), a small size
    Fashion-MNIST's 1 / 10 (what a default study writes); the flags override both."""
    from harness import flops, models, zoo
    from harness.cli import build_parser

    for argv in (["models"], ["profile", "vit@xs"]):
        args = build_parser(argv).parse_args(argv)
        assert (args.in_chans, args.num_classes) == (None, None), argv  # the rule decides per model
    args = build_parser(["plan", "--family", "vit"]).parse_args(["plan", "--family", "vit"])
    assert (args.in_chans, args.num_classes) == models.SMALL_DIMS == (1, 10)  # plan makes small shapes
    assert models.count_dims(zoo.resolve("vit@xs")) == (1, 10)
    assert models.count_dims(zoo.resolve("vit@b16")) == (3, 1000)
    assert models.count_dims(zoo.resolve("vit@b16"), 1, None) == (1, 1000)
    assert main(["models", "--family", "vit", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    xs, b16 = rows["vit@xs"], rows["vit@b16"]
    assert xs["params"] == flops.param_count(zoo.resolve("vit@xs"), image_size=xs["image_size"], in_chans=1, num_classes=10)
    assert (b16["in_chans"], b16["num_classes"], b16["params"]) == (3, 1000, 86_567_656)  # timm's ViT-B/16 to the unit
    assert main(["models", "--family", "vit", "--json", "--in-chans", "3", "--num-classes", "1000"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert (rows["vit@xs"]["in_chans"], rows["vit@xs"]["num_classes"]) == (3, 1000)
