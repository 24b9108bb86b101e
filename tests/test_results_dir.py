"""ResultsDir: the one owner of the results layout, and its compacted read path (issue 13 items 1, 4)."""

from __future__ import annotations

import ast
import random
import re
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest

from harness import store
from harness.store import ResultsDir, TrialOutput
from tests.analysis_fixtures import write_results

HARNESS = Path(__file__).resolve().parents[1] / "harness"

# ----------------------------------------------------------------------------- nobody else builds a path

_NAMES = r"(trials|curves|claims|slurm|checkpoints|logs|report|plots|quarantine|compact|study\.yaml|study\.json|jobs\.json)"
LAYOUT_PATTERNS = [
    re.compile(r"/\s*f?[\"']" + _NAMES + r"\b"),  # out_dir / "trials"
    re.compile(r"[\"']" + _NAMES + r"[\"']\s*/"),  # "slurm" / x
    re.compile(r"[\"'](trials|curves|claims|slurm)/"),  # "trials/..."
    re.compile(r"\}\.parquet[\"']"),  # f"{trial_id}.parquet"
    re.compile(r"\}\.pt[\"']"),  # f"{trial_id}.pt"
    re.compile(r"glob\(\s*f?[\"'][^\"']*\.parquet"),  # glob("*.parquet")
    re.compile(r"[\"'][^\"'\n]*jobs\.json[^\"'\n]*[\"']"),  # any string naming the jobs manifest
    re.compile(r"[\"']checkpoints[/\"']"),
    re.compile(r"Path\([^)]*[\"']" + _NAMES + r"[\"']"),  # Path(x, "trials")
]


PARQUET_GLOB = next(p for p in LAYOUT_PATTERNS if p.pattern.startswith("glob"))
# modules that read a user's dataset, where a *.parquet glob is a dataset's files (a Hugging Face
# dataset saved as parquet), not the results layout: every other pattern still applies to them
DATASET_READERS = {"harness/data/hf.py"}


def layout_literals(source: str, patterns: list[re.Pattern] = LAYOUT_PATTERNS) -> list[str]:
    """Lines of `source` (docstrings and comments left out) that build a results-layout path."""
    lines = source.splitlines()
    for node in ast.walk(ast.parse(source)):
        body = getattr(node, "body", None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            for i in range(body[0].lineno - 1, body[0].end_lineno):
                lines[i] = ""
    hits = []
    for line in lines:
        code = re.sub(r"\s#.*$", "", line)
        if any(p.search(code) for p in patterns):
            hits.append(line.strip())
    return hits


def test_the_pattern_finds_what_it_should() -> None:
    bad = '''
def f(out_dir, tid):
    """results/<study>/trials/<id>.parquet is fine in a docstring"""
    a = Path(out_dir) / "trials" / f"{tid}.parquet"  # two hits on one line
    b = sorted(p.glob("*/curves/*.parquet"))
    c = slurm_dir(out_dir) / "jobs.json"
    d = root / "checkpoints"
    e = KINDS = ("scaling", "curves")  # a plot kind, not a path
    return "trials/" + tid
'''
    assert layout_literals(bad) == [
        'a = Path(out_dir) / "trials" / f"{tid}.parquet"  # two hits on one line',
        'b = sorted(p.glob("*/curves/*.parquet"))',
        'c = slurm_dir(out_dir) / "jobs.json"',
        'd = root / "checkpoints"',
        'return "trials/" + tid',
    ]


def test_no_results_layout_path_outside_the_store() -> None:
    found = {}
    for path in sorted(HARNESS.rglob("*.py")):
        if path.name == "store.py" and path.parent == HARNESS:
            continue
        name = str(path.relative_to(HARNESS.parent))
        patterns = [p for p in LAYOUT_PATTERNS if not (name in DATASET_READERS and p is PARQUET_GLOB)]
        hits = layout_literals(path.read_text(), patterns)
        if hits:
            found[name] = hits
    assert not found, f"build these paths with harness.store.ResultsDir: {found}"


def test_every_path_comes_from_one_object(tmp_path: Path) -> None:
    rd = ResultsDir.of(tmp_path, "s")
    assert rd.trial_file("t") == tmp_path / "s" / "trials" / "t.parquet"
    assert rd.curve_file("t") == tmp_path / "s" / "curves" / "t.parquet"
    assert rd.claim_file("t") == tmp_path / "s" / "claims" / "t"
    assert rd.checkpoint("t") == tmp_path / "s" / "slurm" / "checkpoints" / "t.pt"
    assert rd.slurm_jobs == tmp_path / "s" / "slurm" / "jobs.json" and rd.slurm_logs.parent == rd.slurm
    assert {rd.study_file.name, rd.membership_file.name} == {"study.yaml", "study.json"}
    assert rd.compacted_trials.parent == rd.compacted_curves.parent == rd.compact_dir
    assert store.study_dir(tmp_path, "s") == rd.path  # the module-level API is a thin wrapper


def test_atomic_write_payloads_and_exclusive(tmp_path: Path) -> None:
    p = tmp_path / "d" / "f"
    store.atomic_write(p, "text")
    assert p.read_text() == "text"
    store.atomic_write(p, b"bytes")
    assert p.read_bytes() == b"bytes"
    store.atomic_write(p, lambda tmp: Path(tmp).write_text("by a writer"))
    assert p.read_text() == "by a writer"
    with pytest.raises(FileExistsError):
        store.atomic_write(p, "again", exclusive=True)
    assert p.read_text() == "by a writer" and sorted(x.name for x in p.parent.iterdir()) == ["f"]


def test_one_reader_drops_a_copied_row_like_the_analysis_did(tmp_path: Path) -> None:
    """A row copied under another file name: store.read and analysis agree on one row per trial."""
    from harness.analysis.io import load_results

    rd = ResultsDir(tmp_path)
    rd.write(TrialOutput({"trial_id": "a", "status": "failed", "error": "x", "started_at": "2025-01-01T00:00:00"}))
    store.atomic_write(
        rd.trials / "copy.parquet",
        lambda tmp: store.row_frame(
            {"trial_id": "a", "status": "ok", "error": "", "started_at": "2025-01-02T00:00:00"}
        ).to_parquet(tmp),
    )
    assert store.read(tmp_path)["status"].tolist() == ["ok"]
    assert load_results(tmp_path)[0]["status"].tolist() == ["ok"]


def test_a_retry_in_the_same_second_is_the_later_row(tmp_path: Path) -> None:
    """started_at has milliseconds: of two runs in one second the later wins, also next to a whole-second row."""
    rd = ResultsDir(tmp_path)
    rows = [
        ("first", "failed", "2025-01-01T00:00:07.900+00:00"),
        ("retry", "ok", "2025-01-01T00:00:07.950+00:00"),
        ("older", "failed", "2025-01-01T00:00:07+00:00"),  # written before started_at had milliseconds
    ]
    for name, status, started in rows:
        store.atomic_write(
            rd.trials / f"{name}.parquet",
            lambda tmp, s=status, t=started: store.row_frame(
                {"trial_id": "a", "status": s, "error": "" if s == "ok" else "x", "started_at": t}
            ).to_parquet(tmp),
        )
    assert store.read(tmp_path)["started_at"].tolist() == ["2025-01-01T00:00:07.950+00:00"]


# ----------------------------------------------------------------------------- compaction


def test_compacted_reads_equal_the_row_files(tmp_path: Path) -> None:
    root = write_results(tmp_path / "r")
    rd = ResultsDir(root)
    before, curves_before, st_before = rd.read(), rd.read_curves(), rd.statuses()
    assert rd.compact() == (len(before), len(curves_before))
    pd.testing.assert_frame_equal(rd.read(), before)
    pd.testing.assert_frame_equal(rd.read_curves(), curves_before)
    assert rd.statuses() == st_before


def test_a_newer_row_file_wins_over_its_compacted_copy(tmp_path: Path) -> None:
    rd = ResultsDir(tmp_path)
    for tid in "abc":
        rd.write(TrialOutput({"trial_id": tid, "status": "failed", "error": "x", "test_acc": 0.0}))
    rd.compact()
    rd.write(TrialOutput({"trial_id": "b", "status": "ok", "error": "", "test_acc": 0.9}))  # retried after
    rd.write(TrialOutput({"trial_id": "d", "status": "ok", "error": "", "test_acc": 0.8}))  # new after
    rd.trial_file("c").unlink()  # removed after (moved aside by hand)
    df = rd.read().set_index("trial_id")
    assert sorted(df.index) == ["a", "b", "d"] and df.loc["b", "test_acc"] == 0.9
    assert rd.done_ids() == {"b", "d"} and rd.statuses() == {"a": "failed", "b": "ok", "d": "ok"}


def _writer_script(directory: Path, ids: list[str], rounds: int) -> str:
    return (
        f"from harness.store import ResultsDir, TrialOutput\n"
        f"rd = ResultsDir({str(directory)!r})\n"
        f"for r in range({rounds}):\n"
        f"    for tid in {ids!r}:\n"
        f"        rd.write(TrialOutput({{'trial_id': tid, 'status': 'ok', 'error': '', 'test_acc': float(r)}},"
        f" [{{'epoch': 1.0, 'step': r, 'test_acc': float(r)}}]))\n"
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_concurrent_writers_and_compactions_never_double_count_or_lose_a_trial(tmp_path: Path, seed: int) -> None:
    """Writer threads rewrite random trials, a process writes its own, compactions and reads run between.

    Every read: one row per trial, every trial whose first write finished before the read began is
    there. At the end: each trial's row (and curve) is its last write, compacted or not."""
    rng = random.Random(seed)
    rd = ResultsDir(tmp_path / "s")
    ids = [f"t{i:03d}" for i in range(60)]
    proc_ids = [f"p{i:02d}" for i in range(10)]
    last: dict[str, float] = {}
    written: set[str] = set()
    lock = threading.Lock()
    errors: list[str] = []
    stop = threading.Event()

    def writer(k: int) -> None:
        r = random.Random(seed * 100 + k)
        for n in range(50):
            tid = r.choice(ids)
            acc = float(k * 1000 + n)
            with lock:  # the lock orders writes of one trial, so "last" is well defined
                rd.write(
                    TrialOutput(
                        {"trial_id": tid, "status": "ok" if n % 3 else "failed", "error": "", "test_acc": acc},
                        [{"epoch": 1.0, "step": n, "test_acc": acc}],
                    )
                )
                last[tid] = acc
                written.add(tid)

    def compactor() -> None:
        while not stop.is_set():
            ResultsDir(rd.path).compact()

    def reader() -> None:
        while not stop.is_set():
            with lock:
                must = set(written)
            reader_rd = ResultsDir(rd.path)
            df = reader_rd.read() if rng.random() < 0.5 else None
            st = reader_rd.statuses()
            if df is not None and not df["trial_id"].is_unique:
                errors.append("a trial counted twice")
            missing = must - set(st) - set(proc_ids)
            if missing:
                errors.append(f"lost {sorted(missing)[:3]}")
            if reader_rd.unreadable.paths:
                errors.append(f"unreadable {reader_rd.unreadable.paths}")

    proc = subprocess.Popen(
        [sys.executable, "-c", _writer_script(rd.path, proc_ids, 3)],
        cwd=HARNESS.parent,
        env={"PYTHONPATH": str(HARNESS.parent), "PATH": "/usr/bin:/bin"},
    )
    threads = [threading.Thread(target=writer, args=(k,)) for k in range(3)]
    side = [threading.Thread(target=compactor), threading.Thread(target=reader)]
    for t in threads + side:
        t.start()
    for t in threads:
        t.join()
    assert proc.wait(timeout=300) == 0
    rd.compact()  # a compaction between the last writes and the final reads
    stop.set()
    for t in side:
        t.join()
    assert not errors, errors[:5]
    expected = {**last, **dict.fromkeys(proc_ids, 2.0)}
    for fresh in (ResultsDir(rd.path), ResultsDir(rd.path)):
        df = fresh.read()
        assert df["trial_id"].is_unique and dict(zip(df["trial_id"], df["test_acc"])) == expected
        curves = fresh.read_curves()
        assert dict(zip(curves["trial_id"], curves["test_acc"])) == expected
        rd.compact()
    # and once more without the compacted files: the row files alone say the same
    rd.compacted_trials.unlink()
    assert dict(zip(rd.read()["trial_id"], rd.read()["test_acc"])) == expected


def test_harness_compact_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from harness.cli import main

    root = write_results(tmp_path / "r", families=("vit",))
    assert main(["compact", str(root)]) == 0
    assert "12 rows" in capsys.readouterr().out and ResultsDir(root).compacted_trials.exists()
    assert main(["compact", str(tmp_path / "nope")]) == 2
