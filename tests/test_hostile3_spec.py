"""Issue 27, the study file: caps checked at load, overrides validated, the dry run linear in trials."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import spec
from harness.spec import identity

SYNTH = """name: s
dataset: {name: synthetic, num_classes: 10, train_size: 2000, test_size: 200, image_size: 16, channels: 3}
grid:
  model: [resnet@xs]
  data_size: [100]
  image_size: [16]
  seed: [0]
train: {steps: 2, batch_size: 16}
profile: {enabled: false}
"""


@pytest.fixture
def study_file(tmp_path: Path) -> Path:
    p = tmp_path / "s.yaml"
    p.write_text(SYNTH)
    return p


def test_expansion_hashes_the_study_once_and_each_trial_once(study_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`grid.seed=[0..N]` used to recompute the study hash per trial (a 20k-seed dry run took > 120 s)."""
    calls = {"study": 0, "trial": 0}
    real_study, real_hash = identity.study_hash, identity.config_hash

    def count_study(s: object) -> str:
        calls["study"] += 1
        return real_study(s)

    def count_hash(cfg: dict) -> str:
        calls["trial"] += 1
        return real_hash(cfg)

    n = 2000
    study = spec.load_study(study_file, [f"grid.seed=[{','.join(map(str, range(n)))}]"])
    monkeypatch.setattr(identity, "study_hash", count_study)
    monkeypatch.setattr(identity, "config_hash", count_hash)
    trials = spec.expand(study)
    ids = [t.trial_id for t in trials] + [t.trial_id for t in trials]
    assert len(trials) == n and len(set(ids)) == n
    assert calls["study"] == 1 and calls["trial"] <= n + 1
    assert spec.varying_train_keys(trials) == []


def refused(study_file: Path, *overrides: str) -> str:
    with pytest.raises(spec.StudyError) as e:
        spec.load_study(study_file, list(overrides))
    return e.value.line()


VIDEO = ["dataset.frames=100000", "grid.frames=[100000]", "grid.model=[r3d@xs]"]


@pytest.mark.parametrize(
    "overrides, says",
    [
        (VIDEO, "100000 frames per clip is above the 1024 limit"),
        (["dataset.frames=512", "grid.frames=[512]", "grid.model=[r3d@xs]", "dataset.train_size=200000"], "needs about"),
        (["dataset.train_size=1000000000"], "needs about"),
        (["grid.model=[{family: mlp, depth: 10000}]"], "depth 10000 is above the 512 limit"),
        (["grid.model=[{family: mlp, width: 10000000}]"], "width 10000000 is above"),
        (
            ["eval={few_shot: [1], few_shot_draws: 100000000}"],
            "eval.few_shot_draws: 100000000 few-shot draws per shot count is above the 1000 limit",
        ),
        (["resources.memory_mb=1"], "resources.memory_mb"),
        (["resources.memory_mb=-3"], "must be a positive number of MiB"),
    ],
)
def test_oversized_studies_are_refused_at_load_without_allocating(study_file: Path, overrides: list[str], says: str) -> None:
    """Each used to run until the kernel's OOM killer ended the driver (or ran unbounded)."""
    import tracemalloc

    tracemalloc.start()
    line = refused(study_file, *overrides)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert says in line, line
    assert peak < 200 * 2**20  # nothing near the estimate was allocated


def test_memory_estimate_names_its_parts(study_file: Path) -> None:
    line = refused(study_file, "dataset.train_size=1000000000")
    assert "data " in line and "params" in line and "MiB" in line and "resources.memory_mb" in line


def test_cpus_above_the_machine_refused_on_the_local_backend(study_file: Path) -> None:
    from harness.backends.local import BACKEND

    study = spec.load_study(study_file, ["resources.cpus=1000000000"])
    with pytest.raises(spec.StudyError, match="resources.cpus is 1e\\+09 but this machine has"):
        BACKEND.preflight(study)


@pytest.mark.parametrize(
    "override",
    [
        "description=a\nb",
        "description='x\ntracking: {mlflow: file:///tmp/evil}'",  # a quoted scalar may span lines
        "description=\r\nname: other",
    ],
)
def test_the_stored_study_header_is_data_not_text(study_file: Path, tmp_path: Path, override: str) -> None:
    """results/NAME/study.yaml re-runs as the same study, whatever the override text."""
    from harness.spec import overrides as ov
    from harness.spec.reading import read_yaml

    raw = spec.read_study_mapping(study_file)
    parsed = ov.parse_all([override])
    text = ov.resolved_yaml(raw, parsed, str(study_file) + "\ntracking: {mlflow: x}")
    stored = tmp_path / "study.yaml"
    stored.write_text(text)
    assert read_yaml(stored, str(stored)) == ov.apply(raw, parsed)
    head = text.split("# (the file's own comments are not kept)")[0]
    assert all(line.startswith("#") for line in head.splitlines())


BOMB = "slurm.sbatch={a: &a [x,x,x,x,x,x,x,x,x,x], b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a], c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b], d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c], e: [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]}"  # noqa: E501


def test_a_yaml_alias_bomb_is_refused(study_file: Path, tmp_path: Path) -> None:
    line = refused(study_file, BOMB)
    assert "expands to more than 100,000 values" in line and "slurm.sbatch" in line
    bomb = tmp_path / "bomb.yaml"
    body = BOMB.split("=", 1)[1]
    bomb.write_text(SYNTH + f"slurm: {{sbatch: {body}}}\n")
    line = refused(bomb)
    assert "expands to more than" in line and str(bomb) in line


def test_the_model_share_is_counted_for_the_trials_about_to_run(study_file: Path, tmp_path: Path) -> None:
    """Load checks what needs no model (data and a batch: no torch); `harness run` counts the models of
    the trials it is about to run (a finished study never builds one), `--dry-run` those of all trials."""
    from harness.runner import run_study

    small = ["resources.memory_mb=3"]  # 1.7 MiB of data and a batch fit; resnet@xs's weights and AdamW do not
    study = spec.load_study(study_file, small)
    spec.check_run_memory(study, [])  # nothing to run: nothing counted
    with pytest.raises(spec.StudyError) as e:
        spec.check_run_memory(study, spec.expand(study))
    assert e.value.key == "resources.memory_mb" and "params" in e.value.line(), e.value.line()
    for dry in (False, True):
        with pytest.raises(spec.StudyError, match="needs about"):
            run_study(study_file, backend="local", results=tmp_path / "r", overrides=small, dry_run=dry)
    assert not (tmp_path / "r").exists()  # refused before anything was written
