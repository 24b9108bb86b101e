"""The Python API (harness/api.py): run from a dict with overrides, load, table, fit, plot; and
`import harness` stays light (the names are exported lazily)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import harness
from harness.errors import StudyError
from tests.conftest import TINY

STUDY = yaml.safe_load(TINY.format(name="apitiny", models="[resnet@xs, vit@xs]", data_sizes="[32, 64]", steps=4, lr="1.0e-3"))


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> harness.Results:
    root = tmp_path_factory.mktemp("api") / "res"
    # overrides as on the command line: the run has 2 steps and one model, not the dict's 4 and two
    return harness.run(STUDY, overrides=["train.steps=2", "grid.model=[resnet@xs]"], backend="local", results=root, report=False)


def test_run_from_a_dict_with_overrides(ran: harness.Results) -> None:
    assert ran.exit_code == 0 and ran.path.name == "apitiny"
    df = ran.trials
    assert len(df) == 2 and set(df["model"]) == {"resnet@xs"} and (df["status"] == "ok").all()
    assert {json.loads(c)["train"]["steps"] for c in df["config_json"]} == {2}
    assert set(ran.curves["trial_id"]) == set(df["trial_id"])
    # the study copy in the results directory lists the overrides, as a CLI run's does
    assert json.loads((ran.path / "study.json").read_text())["overrides"] == ["train.steps=2", "grid.model=[resnet@xs]"]


def test_load_table_fit_plot_return_what_the_cli_prints(ran: harness.Results, tmp_path: Path) -> None:
    res = harness.load(ran.path)
    assert len(res.trials) == 2
    table = res.table()
    d = table.to_dict()
    assert d["columns"][:2] == ["family", "model"] and len(d["records"]) == 1 and "test_acc (%)" in d["title"]
    assert str(table).startswith("**test_acc")
    json.dumps(d)  # JSON-ready
    rep = harness.fit(res, y="test_acc", x="data_size", by="family", bootstrap=0)
    assert rep.to_dict()["by"] == "family" and rep.to_dict()["x"] == ["data_size"]
    assert rep.to_dict() == harness.fit(str(ran.path), y="test_acc", x=["data_size"], by="family", bootstrap=0).to_dict()
    out = res.plot("curves", out=tmp_path / "plots")
    assert out.to_dict()["kind"] == "curves" and out.paths and all(Path(p).is_file() for p in out.paths)


def test_run_from_yaml_text_dry_run_writes_no_rows(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    text = TINY.format(name="apitext", models="[resnet@xs]", data_sizes="[32]", steps=2, lr="1.0e-3")
    res = harness.run(text, backend="local", results=tmp_path, dry_run=True)
    assert res.exit_code == 0 and not res.path.exists()
    assert "apitext: 1 trials" in capsys.readouterr().out


def test_bad_input_raises_the_cli_line(tmp_path: Path) -> None:
    with pytest.raises(StudyError, match=r"train\.lr"):
        harness.run(STUDY, overrides=["train.lr=fast"], backend="local", results=tmp_path)
    with pytest.raises(TypeError, match="unknown options"):
        harness.run(STUDY, backend="local", results=tmp_path, partiton="gpu")
    with pytest.raises(StudyError, match="does not exist"):
        harness.load(tmp_path / "nowhere")
    assert not any(tmp_path.iterdir())


def test_import_harness_is_light() -> None:
    code = "import sys, harness; harness.run; print(sorted(m for m in ('torch', 'pandas', 'ray') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
