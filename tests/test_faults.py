"""Fault injection: what a hostile user sees. Extend it by category.

The promise (docs/guides/studies.md, "Bad input"; once the README): bad input gets ONE line on stderr, `error: FILE: KEY: what — fix`,
exit code 2, and nothing is written; anything accepted gives an honest row. `refused` checks all
three for a study file, `refused_cli` for any other command line. Storage faults (full disk,
corrupt files) live in test_faults_store.py, unreachable clusters and signals in
test_faults_backends.py.

About two thirds of the cases failed on the code before issue 15 (a traceback, a silent
acceptance, exit 0 or a dishonest row; an 8192 px grid was accepted and the trial was killed for
memory); the rest guard what already worked. The ids in `QUICKSTART_IDS` come from that code.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from harness import spec
from harness.cli import main
from tests.analysis_fixtures import write_results

SYNTH = "dataset: {name: synthetic, num_classes: 4, channels: 1, image_size: 16, train_size: 256, test_size: 64}\n"
GRID = "grid: {model: [vit@xs], data_size: [32], image_size: [16]}\n"
OK = "name: x\n" + SYNTH + GRID + "train: {steps: 2, batch_size: 16, warmup_steps: 1}\nprofile: {enabled: false}\n"


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


def refused_cli(capsys: pytest.CaptureFixture, argv: list[str], watch: Path) -> str:
    """Run `harness ARGV`; assert exit 2, exactly one `error:` line on stderr and no file created or
    removed under `watch`. Returns the line."""
    before = _files(watch)
    capsys.readouterr()
    code = main(argv)
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2, (code, out, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert _files(watch) == before, "a refused command must write nothing"
    return lines[0]


def refused(tmp_path: Path, capsys: pytest.CaptureFixture, study: str | bytes, *args: str) -> str:
    """Write `study` and `harness run` it: exit 2, one line naming the file, nothing written
    anywhere under tmp_path (a name of '..' would write next to the results root)."""
    path = tmp_path / "study.yaml"
    path.write_bytes(study if isinstance(study, bytes) else study.encode())
    results = tmp_path / "results"
    line = refused_cli(
        capsys, ["run", str(path), "--backend", "local", "--results", str(results), "--no-report", *args], tmp_path
    )
    assert str(path) in line, line
    assert " — " in line, f"every error says how to fix it: {line}"
    return line


# ----------------------------------------------------------------------------- names and paths


@pytest.mark.parametrize(
    "name,expect",
    [
        ('".."', "not a directory of its own"),
        ('"."', "not a directory of its own"),
        ("a/b", "invalid study name"),
        ('"a\\\\b"', "invalid study name"),
        (".hidden", "starts with '.'"),
        ("-rf", "starts with '-'"),
        ("a" * (spec.NAME_MAX + 1), f"above the {spec.NAME_MAX} allowed"),
        ("5", "not text"),
        ("[a, b]", "not text"),
    ],
)
def test_study_name_is_one_safe_path_component(tmp_path: Path, capsys: pytest.CaptureFixture, name: str, expect: str) -> None:
    line = refused(tmp_path, capsys, OK.replace("name: x", f"name: {name}"))
    assert "name:" in line and expect in line, line


def test_longest_allowed_name_loads(tmp_path: Path) -> None:
    p = tmp_path / "s.yaml"
    p.write_text(OK.replace("name: x", "name: " + "a" * spec.NAME_MAX))
    assert spec.load_study(p).name == "a" * spec.NAME_MAX


# ----------------------------------------------------------------------------- the file itself


@pytest.mark.parametrize(
    "blob,expect",
    [
        ("name: café\n".encode("latin-1") + SYNTH.encode() + GRID.encode(), "not UTF-8 text: byte 0xe9 at line 1"),
        (OK.encode("utf-16"), "not UTF-8 text"),
        (bytes(range(256)) * 4, "not a text file"),
        (b"name: x\x00\n" + GRID.encode(), "binary data at line 1"),
        (b"name: x\x07\n", "unprintable character #x0007 at line 1"),
        (b"", "this file is empty"),
        (b"- vit@xs\n- resnet@xs\n", "this file is a YAML list"),
        (b"just words\n", "this file is a YAML str"),
    ],
)
def test_unreadable_study_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture, blob: bytes, expect: str) -> None:
    assert expect in refused(tmp_path, capsys, blob)


def test_utf8_with_bom_is_read(tmp_path: Path) -> None:
    p = tmp_path / "s.yaml"
    p.write_bytes(b"\xef\xbb\xbf" + OK.encode())
    assert spec.load_study(p).name == "x"


@pytest.mark.parametrize(
    "text,expect",
    [
        (
            OK.replace("steps: 2,", "steps: 2, steps: 5,"),
            "duplicate key 'steps' at line 4, column 19 (first given at line 4, column 9)",
        ),
        (OK + "name: y\n", "duplicate key 'name' at line 6, column 1 (first given at line 1, column 1)"),
        (
            OK.replace("grid: {", "grid: {seed: [0], ").replace("image_size: [16]}", "image_size: [16], seed: [1]}"),
            "duplicate key 'seed'",
        ),
    ],
)
def test_duplicate_yaml_keys_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture, text: str, expect: str) -> None:
    line = refused(tmp_path, capsys, text)
    assert expect in line and "keep one" in line, line


def test_yaml_anchors_and_merge_keys_still_work(tmp_path: Path) -> None:
    p = tmp_path / "s.yaml"
    p.write_text(
        "name: x\n" + SYNTH + "grid: {model: &m [vit@xs], data_size: [32], image_size: [16]}\n"
        "train: {steps: 2, batch_size: 16, warmup_steps: 1}\nprofile: {<<: {enabled: true, iters: 2}, iters: 3}\n"
    )
    assert spec.load_study(p).profile["iters"] == 3  # a key after a merge overrides it, as YAML says: not a duplicate


# ----------------------------------------------------------------------------- values


@pytest.mark.parametrize(
    "old,new,expect",
    [
        ("warmup_steps: 1}", "warmup_steps: 1, label_smoothing: 1.0}", "train.label_smoothing must be in [0, 1)"),
        ("warmup_steps: 1}", "warmup_steps: 1, label_smoothing: -0.1}", "train.label_smoothing must be a non-negative"),
        ("warmup_steps: 1}", "warmup_steps: 1, momentum: 1.5, optimizer: sgd}", "train.momentum must be in [0, 1)"),
        ("warmup_steps: 1}", "warmup_steps: 1, lr: 0}", "train.lr is 0"),
        ("steps: 2,", "epochs: .inf,", "train.epochs must be a positive number, got inf"),
        ("steps: 2,", "epochs: .nan,", "train.epochs must be a positive number, got nan"),
        ("warmup_steps: 1}", "warmup_steps: 1, eval_size: 1000}", "larger than the synthetic test split (64 images)"),
        ("batch_size: 16,", "batch_size: 0,", "train.batch_size: must be a positive integer"),
        ("warmup_steps: 1}", "warmup_steps: 1, weight_decay: .nan}", "train.weight_decay"),
        ("{enabled: false}", "{enabled: 'no'}", "profile.enabled must be true or false"),
        ("profile: {enabled: false}", "profile: {iters: -1}", "profile.iters"),
        ("profile: {enabled: false}", "resources: {gpus: .inf}", "resources.gpus must be a non-negative number, got inf"),
        ("profile: {enabled: false}", "resources: {gpus: .nan}", "resources.gpus"),
        ("profile: {enabled: false}", "resources: {cpus: 1.5}", "resources.cpus must be a whole number"),
        ("profile: {enabled: false}", "description: [a, b]", "description must be text"),
        ("image_size: [16]}", "image_size: [16], seed: [-1]}", "grid.seed[0]: must be a non-negative integer"),
        ("image_size: [16]}", "image_size: [16], seed: [4294967296]}", "grid.seed[0]: seed 4294967296 is above 4294967295"),
        ("image_size: [16]}", "image_size: [18]}", "not a multiple of the patch size 4"),
        ("image_size: [16]}", "image_size: [8192]}", f"above the {spec.MAX_IMAGE_SIZE} px limit"),
        ("image_size: [16]}", "image_size: [0]}", "grid.image_size[0]: must be a positive integer"),
        ("image_size: [16]}", "image_size: ['16']}", "grid.image_size[0]: must be a positive integer, got '16'"),
        ("data_size: [32]", "data_size: [-5]", "grid.data_size[0]: must be a positive integer"),
        ("data_size: [32]", "data_size: [32.5]", "grid.data_size[0]"),
        ("data_size: [32]", "data_size: [100000]", "larger than the synthetic training split"),
        ("data_size: [32]", "data_size: []", "grid.data_size: empty axis"),
        ("model: [vit@xs]", "model: ['vit @ xs']", "unknown model family 'vit '"),
        ("model: [vit@xs]", "model: ['vit@x s']", "unknown size 'x s'"),
        ("model: [vit@xs]", "model: [{family: vit, mlp_ratio: .inf}]", "vit mlp_ratio must be a positive number, not inf"),
        ("model: [vit@xs]", "model: [{family: vit, depth: 0}]", "vit depth must be a positive integer"),
        ("model: [vit@xs]", "model: [null]", "a model is 'family@size' or a mapping"),
        ("num_classes: 4,", "num_classes: 4, colour: red,", "dataset.colour: unknown key 'colour'"),
    ],
)
def test_bad_value_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture, old: str, new: str, expect: str) -> None:
    assert old in OK
    line = refused(tmp_path, capsys, OK.replace(old, new))
    assert expect in line, line


# ----------------------------------------------------------------------------- honest rows


def _run_ok(tmp_path: Path, text: str) -> pd.DataFrame:
    p = tmp_path / "study.yaml"
    p.write_text(text)
    res = tmp_path / "results"
    assert main(["run", str(p), "--backend", "local", "--results", str(res), "--no-report"]) == 0
    return pd.concat([pd.read_parquet(f) for f in sorted((res / "x" / "trials").glob("*.parquet"))])


def test_batch_larger_than_the_subset_records_the_batch_used(tmp_path: Path) -> None:
    # a data-scaling study with batch 16 and data_size 8 trains full-batch on 8: the row says 8
    rows = _run_ok(tmp_path, OK.replace("data_size: [32]", "data_size: [8, 32]"))
    assert dict(zip(rows["data_size"], rows["batch_size"])) == {8: 8, 32: 16}
    assert set(rows["steps"]) == {2}
    trials = spec.expand(spec.load_study(tmp_path / "study.yaml"))
    assert [t.batch_size for t in trials] == [8, 16]
    assert all(t.train["batch_size"] == 16 for t in trials)  # the id hashes the study's budget, as before


def test_count_only_study_row_carries_the_counts(tmp_path: Path) -> None:
    # steps 0 with profiling off is the count-only study of studies/vit_sizes.yaml: the row is
    # honest (params and GMACs counted, nothing timed or trained), so it is allowed
    rows = _run_ok(tmp_path, OK.replace("steps: 2", "steps: 0").replace("data_size: [32], ", ""))
    (row,) = rows.to_dict("records")
    assert row["status"] == "ok" and row["params"] > 0 and row["fwd_gmacs"] > 0
    assert pd.isna(row.get("test_acc")) and pd.isna(row.get("infer_img_s"))


# ----------------------------------------------------------------------------- same model, same trial

# trial ids of studies/quickstart.yaml and studies/model_scaling.yaml recorded from the code before
# issue 15: a user's re-run must find its finished trials
QUICKSTART_IDS = {
    ("resnet@xs", 1000): "8ca513dee06e",
    ("vit@xs", 1000): "26ffdcab0cc2",
    ("mixer@xs", 1000): "b6588de6ac59",
    ("convnext@xs", 1000): "0c6c250fb5db",
}
MODEL_SCALING_IDS = {
    ("resnet{block=basic,layers=[2,2,2,1],stem=small,width=8}", 16000, 0): "9bff923b2682",
    ("vit{depth=6,heads=2,mlp_ratio=4,patch=4,width=64}", 16000, 1): "240fe366220a",
    ("convnext{depths=[2,2,4,1],dims=[8,16,32,64],patch=2}", 16000, 0): "0f80b06bf58a",
}
STUDIES = Path(__file__).parent.parent / "studies"


def test_named_sizes_and_explicit_shapes_keep_their_ids() -> None:
    quick = {(t.model.name, t.data_size): t.trial_id for t in spec.expand(spec.load_study(STUDIES / "quickstart.yaml"))}
    assert {k: quick[k] for k in QUICKSTART_IDS} == QUICKSTART_IDS
    scaling = {
        (t.model.name, t.data_size, t.seed): t.trial_id for t in spec.expand(spec.load_study(STUDIES / "model_scaling.yaml"))
    }
    assert {k: scaling[k] for k in MODEL_SCALING_IDS} == MODEL_SCALING_IDS


@pytest.mark.parametrize(
    "spellings",
    [
        [
            "vit@xs",
            "{family: vit}",
            "{family: vit, size: xs}",
            "{family: vit, patch: 4, width: 64, depth: 4, heads: 2, mlp_ratio: 4}",
            "{family: vit, size: s, width: 64, depth: 4, heads: 2}",
            "VIT@XS",
        ],
        ["{family: vit, size: xs, depth: 8}", "{family: vit, depth: 8}", "{family: vit, size: s, width: 64, depth: 8, heads: 2}"],
        ["resnet@xs", "{family: resnet, layers: [1, 1, 1, 1]}", "{family: resnet, size: s, layers: [1, 1, 1, 1]}"],
        ["convnext@xs", "{family: convnext, patch: 2, depths: [1, 1, 3, 1], dims: [16, 32, 64, 128]}"],
    ],
)
def test_same_resolved_shape_is_the_same_trial(tmp_path: Path, spellings: list[str]) -> None:
    ids, names = set(), set()
    for i, model in enumerate(spellings):
        p = tmp_path / f"s{i}.yaml"
        p.write_text(OK.replace("model: [vit@xs]", f"model: [{model}]"))
        (t,) = spec.expand(spec.load_study(p))
        ids.add(t.trial_id)
        names.add(t.model.name)
    assert len(ids) == 1, (spellings, ids)
    if "@" in spellings[0] and "{" not in spellings[0]:  # a table row is shown by its size name
        assert names == {spellings[0]}
    # one study listing every spelling runs the trial once
    p = tmp_path / "all.yaml"
    p.write_text(OK.replace("model: [vit@xs]", f"model: [{', '.join(spellings)}]"))
    assert len(spec.expand(spec.load_study(p))) == 1


def test_different_shapes_stay_different_trials(tmp_path: Path) -> None:
    p = tmp_path / "s.yaml"
    p.write_text(OK.replace("model: [vit@xs]", "model: [vit@xs, {family: vit, depth: 5}, vit@s, {family: vit, mlp_ratio: 2}]"))
    assert len({t.trial_id for t in spec.expand(spec.load_study(p))}) == 4


# ----------------------------------------------------------------------------- other commands' arguments


@pytest.mark.parametrize(
    "argv,expect",
    [
        (["models", "--image-size", "-3"], "--image-size: must be a positive integer, got -3"),
        (["models", "--image-size", "0"], "--image-size: must be a positive integer, got 0"),
        (["models", "--in-chans", "0"], "--in-chans: must be a positive integer"),
        (["models", "--family", "vit", "--image-size", "30"], "no model of family 'vit' takes 30 px input"),
        (
            ["plan", "--family", "vit", "--targets", "1e12"],
            "out of reach for vit at 28 px: its planning grid reaches 15.3k to 50.5M params",
        ),
        (["plan", "--family", "vit", "--targets", "1"], "out of reach for vit"),
        (["plan", "--family", "mixer,vit", "--targets", "0.1M,1e12"], "out of reach for mixer"),
        (
            ["plan", "--family", "resnet", "--match", "gmacs", "--targets", "1000"],
            "target 1e+03 GMACs is out of reach for resnet",
        ),
    ],
)
def test_bad_command_line_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture, argv: list[str], expect: str) -> None:
    assert expect in refused_cli(capsys, argv, tmp_path)


def test_models_image_size_that_some_take_lists_those(capsys: pytest.CaptureFixture) -> None:
    assert main(["models", "--json", "--image-size", "30"]) == 0  # resnet, convnext, mlp take 30 px; vit does not
    import json

    families = {r["family"] for r in json.loads(capsys.readouterr().out)}
    assert "resnet" in families and "vit" not in families


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_results(tmp_path_factory.mktemp("faults") / "res")


@pytest.mark.parametrize(
    "argv,expect",
    [
        (
            ["plot", "{R}", "--kind", "pareto", "--x", "nosuch"],
            "--x: pareto cannot plot against 'nosuch' — use one of fwd_gmacs, train_flops, infer_img_s",
        ),
        (["plot", "{R}", "--kind", "curves", "--x", "nosuch"], "--x: column 'nosuch' is not in the learning curves"),
        (["plot", "{R}", "--kind", "curves", "--y", "nosuch"], "--y: column 'nosuch' is not in the learning curves"),
        (["plot", "{R}", "--kind", "cost", "--y", "nosuch"], "--y: column 'nosuch' is not in the results"),
        (["plot", "{R}", "--kind", "scaling", "--x", "nosuch"], "column 'nosuch' is not in the results"),
        (["fit", "{R}", "--y", "test_acc", "--x", "model"], "--x: column 'model' holds labels (e.g."),
        (["fit", "{R}", "--y", "family", "--x", "data_size"], "pass --by family"),
        (["fit", "{R}", "--y", "test_acc", "--x", "nosuch"], "column 'nosuch' is not in the results"),
    ],
)
def test_analysis_column_that_cannot_be_used_is_one_line(
    results: Path, capsys: pytest.CaptureFixture, argv: list[str], expect: str
) -> None:
    line = refused_cli(capsys, [a.replace("{R}", str(results)) for a in argv], results)
    assert expect in line, line
