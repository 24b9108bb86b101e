"""Issue 27, round 2: the remaining hostile cases, each one clear line (exit 2 or a failed row)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness import data
from harness.data import shards as wds_data
from harness.errors import StudyError

pytest.importorskip("webdataset")


@pytest.fixture(autouse=True)
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    wds_data._index_cached.cache_clear()


def png(i: int) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.full((8, 8), 20 * i, np.uint8)).save(out, format="PNG")
    return out.getvalue()


def write_tar(path: Path, members: list[tuple[str, bytes]]) -> list[tarfile.TarInfo]:
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, payload in members:
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    with tarfile.open(path) as tar:
        return tar.getmembers()


def samples(n: int = 6, image: bytes | None = None) -> list[tuple[str, bytes]]:
    """Image first, then label: a cut inside the label leaves the last sample without one."""
    return [m for i in range(n) for m in ((f"k{i}.png", image or png(i)), (f"k{i}.cls", str(i % 2).encode()))]


def cfg(path: Path, **extra: object) -> dict:
    return {"name": "webdataset", "urls": str(path), "image_size": 8, "channels": 1, "test_fraction": 0.5, **extra}


def cut(path: Path, at: int) -> None:
    path.write_bytes(path.read_bytes()[:at])


@pytest.mark.parametrize("where", ["image data", "label data", "label header", "middle image"])
def test_a_truncated_shard_names_the_shard_and_the_fix(tmp_path: Path, where: str) -> None:
    """A cut shard raised tarfile.ReadError, or (cut inside the last label) blamed label_key and suggested `png`."""
    shard = tmp_path / "s.tar"
    members = write_tar(shard, samples())
    last_png, last_cls = members[-2], members[-1]
    at = {
        "image data": last_png.offset_data + 10,
        "label data": last_cls.offset_data,
        "label header": last_cls.offset + 100,
        "middle image": members[4].offset_data + 10,
    }[where]
    cut(shard, at)
    with pytest.raises(StudyError, match=r"shard .*s\.tar is truncated or corrupt") as e:
        data.describe(cfg(shard))
    assert e.value.key == "dataset.urls" and "label_key" not in str(e.value) and "whole" in e.value.fix


def test_a_non_image_member_names_the_shard_and_the_member(tmp_path: Path) -> None:
    """It failed at train time as "cannot identify image file <_io.BytesIO ...>", no shard or key named."""
    shard = tmp_path / "s.tar"
    write_tar(shard, samples(image=b"this is text, not a png"))
    says = r"webdataset member k\d\.png in .*s\.tar is not a readable image"
    for streamed in ({"max_memory_mb": 0, "workers": 0}, {}):  # decoded per batch (statistics first), or into memory
        with pytest.raises(ValueError, match=says) as e:
            data.load(cfg(shard, **streamed))
        assert "BytesIO" not in str(e.value) and "image_key" in str(e.value)


def test_a_changed_shard_is_an_error_not_new_trial_ids(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The docs say changed shards are an error; a re-run silently trained new trial ids beside the old rows."""
    import json

    import yaml

    from harness import spec
    from harness.cli import main
    from harness.store import ResultsDir, TrialOutput

    shard = tmp_path / "s.tar"
    write_tar(shard, samples(8))
    study_file = tmp_path / "s.yaml"
    study_file.write_text(
        yaml.safe_dump(
            {
                "name": "wds",
                "dataset": cfg(shard),
                "grid": {"model": ["mlp@xs"], "data_size": [4], "image_size": [8]},
                "train": {"steps": 1, "batch_size": 2, "warmup_steps": 0},
                "profile": {"enabled": False},
            }
        )
    )
    (trial,) = spec.expand(spec.load_study(study_file))
    row = {"trial_id": trial.trial_id, "study": "wds", "status": "ok", "config_json": json.dumps(trial.config(), sort_keys=True)}
    ResultsDir(tmp_path / "results" / "wds").write(TrialOutput(row=row, curve=[]))
    run = ["run", str(study_file), "--backend", "local", "--results", str(tmp_path / "results"), "--dry-run"]
    assert main(run) == 0  # the same data: the stored row is this trial
    capsys.readouterr()
    write_tar(shard, samples(8, image=png(9)))  # the same keys and labels, other images
    wds_data._index_cached.cache_clear()
    assert main(run) == 2
    err = capsys.readouterr().err
    assert "dataset.urls" in err and "data changed since the rows" in err and "new study name" in err, err
    assert len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("layout", ["parquet", "disk"])
@pytest.mark.parametrize("keep", ["4 bytes", "half", "all but the last byte"])
def test_a_truncated_hf_file_is_named(tmp_path: Path, layout: str, keep: str, capfd: pytest.CaptureFixture) -> None:
    """An HF folder with a truncated .parquet (or save_to_disk .arrow): a message naming neither file nor cause."""
    datasets = pytest.importorskip("datasets")
    from harness.data import hf

    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b"])})
    rows = {"image": [Image.fromarray(np.full((8, 8), 9 * i, np.uint8)) for i in range(16)], "label": [i % 2 for i in range(16)]}
    ds = datasets.Dataset.from_dict(rows, features=features)
    datasets.disable_progress_bars()
    root = tmp_path / "hf"
    if layout == "parquet":
        (root / "data").mkdir(parents=True)
        ds.to_parquet(str(root / "data" / "train-00000-of-00001.parquet"))
    else:
        ds.save_to_disk(str(root))
    (bad,) = root.rglob(f"*.{layout if layout == 'parquet' else 'arrow'}")
    raw = bad.read_bytes()
    bad.write_bytes(raw[: {"4 bytes": 4, "half": len(raw) // 2, "all but the last byte": -1}[keep]])
    for f in (hf._hf_splits, hf._hf_labels, hf.image_column):
        f.cache_clear()
    capfd.readouterr()
    with pytest.raises(StudyError, match=rf"{bad.name} is truncated or not an? (Parquet|Arrow) file") as e:
        data.describe({"name": "hf", "path": str(root), "image_size": 8, "channels": 1, "cache_dir": str(tmp_path / "c")})
    assert e.value.key == "dataset.path" and "again whole" in e.value.fix
    assert "Failed to read schema" not in capfd.readouterr().err  # datasets' own log line comes no more


@pytest.mark.parametrize(
    "uri, says",
    [
        ("htp://localhost:5000", "has the scheme 'htp://', which MLflow does not know"),
        ("sqlite:///{d}/half.db", "is half-created: 2 tables but no schema version"),
        ("sqlite:///{d}/garbage.db", "is not a readable sqlite database"),
    ],
)
def test_a_bad_mlflow_target_is_one_line(tmp_path: Path, uri: str, says: str, capsys: pytest.CaptureFixture) -> None:
    """`htp://` said "Model registry functionality is unavailable"; a sqlite store whose tables an
    interrupted export left half-created broke every later export with a hint that did not help."""
    pytest.importorskip("mlflow")
    import sqlite3

    from harness.cli import main
    from tests.test_sql import write_study

    rd = write_study(tmp_path, "ml")
    half = sqlite3.connect(tmp_path / "half.db")  # MLflow's first tables, not yet its alembic_version
    half.executescript("CREATE TABLE experiments (experiment_id INTEGER); CREATE TABLE runs (run_uuid TEXT);")
    half.close()
    (tmp_path / "garbage.db").write_bytes(b"not a database, but not empty either" * 100)
    before = {p: p.stat().st_mtime_ns for p in tmp_path.glob("*.db")}
    code = main(["export", str(rd.path), "--mlflow", uri.format(d=tmp_path)])
    out, err = capsys.readouterr()
    assert code == 2 and says in err and len(err.strip().splitlines()) == 1, err
    assert "--mlflow" in err and ("mv " in err or "http://" in err or "move this one away" in err)
    assert {p: p.stat().st_mtime_ns for p in tmp_path.glob("*.db")} == before  # nothing written


@pytest.mark.parametrize("value", ["1000000000", "1e9"])
def test_a_huge_profile_batch_blames_the_profile_batch(value: str, capsys: pytest.CaptureFixture) -> None:
    """`profile.batch_size=1e9` blamed the training batch (the OOM message named train.batch_size first)."""
    from harness.cli import main

    code = main(["run", "studies/quickstart.yaml", f"profile.batch_size={value}", "--dry-run", "--backend", "local"])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    assert "profile.batch_size:" in err and "train.batch_size" not in err, err
    if value == "1000000000":
        assert "a profile batch (1,000,000,000)" in err and "profile.enabled: false" in err, err


def test_sql_over_a_root_with_a_copied_study_keeps_both_copies(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`cp -r results/tiny results/tiny_copy`: `harness sql results ...` silently kept one copy of each row."""
    import shutil

    from harness.cli import main
    from tests.test_sql import write_study

    root = tmp_path / "results"
    rd = write_study(root, "tiny")
    shutil.copytree(rd.path, root / "tiny_copy")
    q = "SELECT study, count(*) AS n, count(DISTINCT trial_id) AS ids FROM trials GROUP BY study ORDER BY study"
    assert main(["sql", str(root), q, "--csv"]) == 0
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert [line.split(",")[0] for line in lines[1:]] == ["tiny", "tiny_copy"], out
    assert lines[1].split(",")[1:] == lines[2].split(",")[1:]  # every row of both copies
    assert "tiny_copy holds rows of study 'tiny'" in err and "both kept" in err, err
    assert main(["sql", str(root), "SELECT count(*) FROM curves GROUP BY study", "--csv"]) == 0
    counts = capsys.readouterr().out.strip().splitlines()[1:]
    assert len(counts) == 2 and counts[0] == counts[1] != "0", counts


@pytest.mark.parametrize(
    "override, says, key",
    [
        ("slurm.sbatch={mail-type: [a, b]}", "must be a string, a number or true", "slurm.sbatch.mail-type"),
        ("slurm.sbatch={comment: {x: 1}}", "must be a string, a number or true", "slurm.sbatch.comment"),
        ('slurm.sbatch={comment: "a\\nrm -rf ~"}', "holds a control character", "slurm.sbatch.comment"),
        ("slurm.sbatch={comment: " + "x" * 2000 + "}", "longer than 1024 characters", "slurm.sbatch.comment"),
        ("slurm.sbatch={exclusive: false}", "must be a string, a number or true", "slurm.sbatch.exclusive"),
        ('slurm.sbatch={"a b": 1}', "is not an sbatch option name", "slurm.sbatch"),
        ("slurm.sbatch={array: 0-99}", "--array is set by harness", "slurm.sbatch.array"),
        ("slurm.sbatch={time: 10}", "set slurm.time instead", "slurm.sbatch.time"),
        ("slurm.sbatch={" + ", ".join(f"o{i}: 1" for i in range(65)) + "}", "65 options is above the 64 limit", "slurm.sbatch"),
    ],
)
def test_slurm_sbatch_override_values_are_validated(override: str, says: str, key: str, capsys: pytest.CaptureFixture) -> None:
    """`slurm.sbatch=` values were not validated (sizes, types): a list, a mapping or a line break reached #SBATCH lines."""
    from harness.cli import main

    code = main(["run", "studies/quickstart.yaml", override, "--backend", "slurm", "--dry-run"])
    out, err = capsys.readouterr()
    assert code == 2 and says in err and f"{key}:" in err and len(err.strip().splitlines()) == 1, err


def test_good_sbatch_options_pass() -> None:
    from harness.backends import slurm

    slurm.check_sbatch({"constraint": "a100", "hold": True, "nice": 10, "mail_type": "END"}, "s.yaml", "slurm.sbatch")
