"""Command-line overrides (`harness run STUDY key=value key+=value`): parsing, applying, errors,
trial ids, dry run, the stored study copy, and what reaches the workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness import runner, spec, store
from harness.cli import main
from harness.errors import StudyError
from harness.spec import overrides
from tests.conftest import write_study


def _ids(path: Path, *ovs: str, smoke: bool = False) -> list[str]:
    return [t.trial_id for t in runner.prepare(path, smoke=smoke, overrides=ovs)[1]]


# ----------------------------------------------------------------------------- parsing and applying


@pytest.mark.parametrize(
    ("text", "path", "value", "append"),
    [
        ("train.lr=1e-3", ("train", "lr"), 1e-3, False),  # YAML 1.1 would read '1e-3' as text
        ("train.lr=-2.5E+2", ("train", "lr"), -250.0, False),
        ("train.lr=2.0e-3", ("train", "lr"), 2e-3, False),
        ("grid.seed=[0,1,2]", ("grid", "seed"), [0, 1, 2], False),
        ("train.compile=true", ("train", "compile"), True, False),
        ("train.steps=300", ("train", "steps"), 300, False),
        ("train.eval_size=null", ("train", "eval_size"), None, False),
        ("train.early_stop={patience: 3, max_steps: 100}", ("train", "early_stop"), {"patience": 3, "max_steps": 100}, False),
        ("grid.model+=[vit@s]", ("grid", "model"), ["vit@s"], True),
        ("grid.seed+=3", ("grid", "seed"), 3, True),
        ("description='1e-3'", ("description",), "1e-3", False),  # quoted stays text
        ("overrides.resnet@xs.lr=0.01", ("overrides", "resnet@xs", "lr"), 0.01, False),
        ("slurm.setup=[a=b]", ("slurm", "setup"), ["a=b"], False),  # only the first '=' splits
    ],
)
def test_parse(text: str, path: tuple, value: object, append: bool) -> None:
    o = overrides.parse(text)
    assert (o.path, o.value, o.append) == (path, value, append)
    assert type(o.value) is type(value)


def test_apply_sets_creates_appends_and_leaves_the_input_alone() -> None:
    raw = {"name": "s", "grid": {"model": ["vit@xs"], "seed": 0}, "train": {"steps": 10, "lr": 1e-3}}
    before = json.dumps(raw)
    out = overrides.apply(
        raw,
        overrides.parse_all(
            [
                "train.lr=3e-3",
                "grid.model+=[resnet@xs, mixer@xs]",
                "grid.seed+=1",  # a grid axis written as one value is a one-value list
                "profile.enabled=false",  # a section the file does not have
                "grid.seed+=[2]",
                "train.epochs=2",  # a budget on the command line replaces the file's (steps)
            ]
        ),
    )
    assert json.dumps(raw) == before
    assert out["train"] == {"lr": 3e-3, "epochs": 2}
    assert out["grid"] == {"model": ["vit@xs", "resnet@xs", "mixer@xs"], "seed": [0, 1, 2]}
    assert out["profile"] == {"enabled": False}
    # later overrides win; a null budget does not clear the others
    again = overrides.apply(raw, overrides.parse_all(["train.lr=1", "train.lr=2", "train.epochs=null"]))
    assert again["train"] == {"steps": 10, "lr": 2, "epochs": None}


def test_budget_keys_agree_with_spec() -> None:
    assert overrides.BUDGET_KEYS == spec.BUDGET_KEYS


def test_budget_override_replaces_the_files_budget(tmp_path: Path) -> None:
    path = write_study(tmp_path, models="[vit@xs]", data_sizes="[32]", extra="")
    (t,) = runner.prepare(path, overrides=["train.epochs=2"])[1]
    assert t.train["epochs"] == 2 and t.train["steps"] is None
    (t,) = runner.prepare(path, overrides=["train.val_size=64", "train.early_stop={patience: 3, max_steps: 100}"])[1]
    assert t.train["early_stop"] == {"patience": 3, "max_steps": 100} and t.train["steps"] is None


# ----------------------------------------------------------------------------- errors: one line, exit 2, nothing written


@pytest.mark.parametrize(
    ("override", "says"),
    [
        ("train.lr", "no '='"),
        ("=3", "bad key ''"),
        ("train..lr=3", "bad key 'train..lr'"),
        ("train.lr=", "no value after '='"),
        ("grid.seed=[0,1", "cannot read the value '[0,1' as YAML"),
        ("grid.model=[vit@xs", "cannot read the value"),
        ("train.lr+=1", "'+=' appends to a list, and 'train.lr' is 0.001 (a float)"),
        ("train+=1", "'+=' appends to a list, and 'train' is a mapping"),
        ("grid.lr+=[1e-3]", "nothing to append to: 'grid.lr' is not set"),
        ("train.lr.x=1", "'train.lr' is 0.001 (a float) in the study, not a section with keys"),
        ("grid.model.vit=1", "'grid.model' is a list in the study"),
        ("train.lrr=1e-3", "train.lrr: unknown key 'lrr' — did you mean lr?"),
        ("trian.lr=1e-3", "trian: unknown key 'trian' — did you mean train or tracking?"),
        ("grid.seeds=[1]", "grid.seeds: unknown key 'seeds' — did you mean seed"),
        ("grid.model=[vit@xss]", "grid.model[0]: unknown size 'xss' for family 'vit' — did you mean vit@xs"),
        ("train.optimizer=adam", "unknown optimizer 'adam' — did you mean adamw?"),
        ("resources.gpus=1.5", "fractional GPUs above 1"),
        ("train.epochs=0", "train.epochs must be a positive number"),
        ("slurm.partiton=gpu", "slurm.partiton: unknown key 'partiton' — did you mean partition?"),  # a backend's check
        ("slurm.time=soon", "slurm.time: invalid time limit 'soon'"),
    ],
)
def test_bad_override_is_one_line_exit_2_nothing_written(
    tmp_path: Path, capsys: pytest.CaptureFixture, override: str, says: str
) -> None:
    study, res = write_study(tmp_path, models="[vit@xs]", data_sizes="[32]"), tmp_path / "res"
    assert main(["run", str(study), override, "--backend", "local", "--results", str(res)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: command-line override '{override}': "), err
    assert says in err and len(err.splitlines()) == 1, err
    assert not res.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_gpu_override_on_a_cpu_machine_names_it(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """resources.gpus=0.5 is refused by the backend's preflight on a machine without CUDA (not by the
    study's validation): the line still names the override; --smoke runs it on the CPU."""
    study, res = write_study(tmp_path, models="[vit@xs]", data_sizes="[32]"), tmp_path / "res"
    assert main(["run", str(study), "resources.gpus=0.5", "--backend", "local", "--results", str(res)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: command-line override 'resources.gpus=0.5': resources.gpus: resources.gpus is 0.5 but no CUDA")
    assert not res.exists()
    st, _ = runner.prepare(study, smoke=True, overrides=["resources.gpus=0.5"])
    assert st.resources["gpus"] == 0


def test_error_no_override_set_names_the_file_and_lists_them(tmp_path: Path) -> None:
    """dataset.train_size=10 makes the file's data_size 32 too large: the error is at grid.data_size."""
    study = write_study(tmp_path, models="[vit@xs]", data_sizes="[32]")
    with pytest.raises(StudyError) as e:
        spec.load_study(study, ["dataset.train_size=10", "train.lr=1e-3"])
    assert e.value.where == f"{study} with command-line overrides dataset.train_size=10 train.lr=1e-3"
    assert e.value.key == "grid.data_size[0]" and "larger than the synthetic training split (10 images)" in e.value.what


@pytest.mark.slow
def test_cli_subprocess_exit_2(tmp_path: Path) -> None:
    """As a user runs it: `python -m harness run STUDY train.lrr=1e-3`, exit 2, one line, nothing written."""
    study, res = write_study(tmp_path), tmp_path / "res"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    p = subprocess.run(
        [sys.executable, "-m", "harness", "run", str(study), "--results", str(res), "train.lrr=1e-3"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert p.returncode == 2, p.stderr
    assert p.stderr.startswith("error: command-line override 'train.lrr=1e-3': train.lrr: unknown key 'lrr' — did you mean lr?")
    assert not res.exists()


# ----------------------------------------------------------------------------- ids, dry run, smoke, status


def test_no_op_override_keeps_every_trial_id(tmp_path: Path) -> None:
    study = write_study(tmp_path)  # lr 1.0e-3, steps 4
    base = _ids(study)
    # values equal to the file's or to the defaults; resources are not part of an id
    assert _ids(study, "train.lr=1e-3", "train.steps=4", "train.compile=false", "grid.seed=[0]", "resources.gpus=0") == base
    assert _ids(study, "grid.model=[resnet@xs, vit@xs]") == base
    assert _ids(study, "train.lr=1e-3", smoke=True) == _ids(study, smoke=True)
    changed = _ids(study, "train.lr=3e-3")
    assert len(changed) == len(base) and not set(changed) & set(base)
    assert _ids(study, "grid.seed+=1")[:1] == base[:1] and len(_ids(study, "grid.seed+=1")) == 2 * len(base)


def test_dry_run_shows_the_overridden_trials(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    study, res = write_study(tmp_path, models="[vit@xs]", data_sizes="[32]"), tmp_path / "res"
    # overrides before and after options, in the order typed: grid.seed+=2 extends the list set first
    argv = ["run", str(study), "grid.seed=[0,1]", "--dry-run", "--results", str(res), "grid.seed+=2", "grid.lr=[1e-3,3e-3]"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "6 trials (6 to run)" in out and " lr " in out and "0.003" in out
    ids = set(_ids(study, "grid.seed=[0,1,2]", "grid.lr=[1e-3,3e-3]"))
    assert ids == {line.split()[1] for line in out.splitlines() if line.startswith("│")}
    assert not res.exists()


def test_options_after_overrides_are_still_checked(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as e:
        main(["run", "s.yaml", "train.lr=1", "--bogus"])
    assert e.value.code == 2 and "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_smoke_with_overrides(tmp_path: Path) -> None:
    study = write_study(tmp_path, models="[vit@xs]", data_sizes="[32]")
    st, (t,) = runner.prepare(study, smoke=True, overrides=["train.lr=5e-3", "train.label_smoothing=0.1"])
    assert st.name == "tiny-smoke" and t.train["lr"] == 5e-3 and t.train["label_smoothing"] == 0.1
    assert t.train["steps"] == spec.SMOKE_STEPS


def test_status_with_overrides_needs_a_study_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["status", str(tmp_path), "train.lr=1"]) == 2
    assert "command-line overrides need a study file" in capsys.readouterr().err


# ----------------------------------------------------------------------------- what reaches a worker


def test_workers_get_the_overridden_trials_not_the_study_path(tmp_path: Path) -> None:
    """SLURM (submitit) and Ray ship each Trial pickled with cloudpickle; no worker re-reads the study
    file, so the overrides travel inside the trials. This is the pickle a SLURM array task loads."""
    from submitit.core.utils import DelayedSubmission

    from harness.backends.slurm_job import TrialJob

    study = write_study(tmp_path, models="[vit@xs]", data_sizes="[32]")
    _, trials = runner.prepare(study, overrides=["train.lr=5e-3", "resources.cpus=2", "grid.seed=[7]"])
    job = TrialJob(str(tmp_path / "res" / "tiny"), 0, 10)
    DelayedSubmission(job, trials[0]).dump(tmp_path / "job.pkl")
    loaded = DelayedSubmission.load(tmp_path / "job.pkl")
    (t,) = loaded.args
    assert t.trial_id == trials[0].trial_id and t.train["lr"] == 5e-3 and t.seed == 7 and t.resources["cpus"] == 2
    assert str(study) not in json.dumps(vars(loaded.function))  # the job knows only where to write


# ----------------------------------------------------------------------------- end to end and the stored copy


def test_run_local_with_override_records_it_and_reruns_nothing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    study, res = write_study(tmp_path, models="[resnet@xs]", data_sizes="[32]"), tmp_path / "res"
    args = ["--backend", "local", "--results", str(res), "--no-report"]
    assert main(["run", str(study), "train.lr=3e-3", "grid.seed+=[1]", *args]) == 0
    rd = store.ResultsDir(res / "tiny")
    df = store.read(rd.path)
    assert sorted(df["seed"]) == [0, 1] and (df["status"] == "ok").all()
    assert {json.loads(c)["train"]["lr"] for c in df["config_json"]} == {3e-3}
    # the stored copy: the resolved study with a header naming the source and the overrides
    text = rd.study_file.read_text()
    assert text.startswith(f"# resolved from {study} with command-line overrides:\n#   train.lr=3e-3\n#   grid.seed+=[1]\n")
    assert spec.read_yaml(rd.study_file, "x")["train"]["lr"] == 3e-3
    manifest = json.loads(rd.membership_file.read_text())
    assert manifest["overrides"] == ["train.lr=3e-3", "grid.seed+=[1]"] and set(manifest["trial_ids"]) == set(df["trial_id"])
    mtimes = {p.name: p.stat().st_mtime_ns for p in rd.trials.iterdir()}
    capsys.readouterr()
    # the stored copy runs as the same study; the same overrides typed another way run nothing either
    assert main(["run", str(rd.study_file), *args]) == 0
    assert main(["run", str(study), "grid.seed=[0,1]", "train.lr=0.003", *args]) == 0
    assert "2 already done, 0 to run" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in rd.trials.iterdir()} == mtimes
    assert main(["status", str(study), "--results", str(res), "train.lr=3e-3", "grid.seed+=1"]) == 0
    assert main(["status", str(study), "--results", str(res)]) == 1  # without them: other trials, pending
    assert main(["run", str(study), "--dry-run", "--results", str(res)]) == 0
    assert rd.study_file.read_text().startswith("# resolved")  # a dry run records nothing
