"""benchmarks/bookkeeping.py's fixture: its compact/, built from the tables the row files were cut
from (no read-back), is what `ResultsDir.compact()` makes of the same files (equal tables, stamps
and metadata included), and the readers (store.read, load_results, status, done_ids) return the
same through either."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from benchmarks import bookkeeping
from harness import flops, store
from harness.analysis.io import load_results
from harness.rowfiles import read_file
from harness.runner import status_counts

N = 1000


def _reads(rd: store.ResultsDir) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict, set[str]]:
    trials, curves = load_results(rd.path)
    return store.read(rd.path), trials, curves, status_counts(rd.path), rd.done_ids()


def _same(a: tuple, b: tuple) -> None:
    for x, y in zip(a[:3], b[:3]):
        pd.testing.assert_frame_equal(x, y)
    assert a[3:] == b[3:]


@pytest.mark.slow  # 10-15 s: 1,000 trials' 2,000 files written, then all read back by `compact()`
def test_compacted_fixture_is_what_compact_makes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # counted FLOPs and parameters are only values in the rows here; counting them imports torch and timm (~10 s)
    monkeypatch.setattr(flops, "forward_gmacs", lambda model, **dims: 0.01 * len(model.name))
    monkeypatch.setattr(flops, "param_count", lambda model, **dims: 1000 * len(model.name))
    _, results = bookkeeping.make(N, cache=tmp_path)
    rd = store.ResultsDir(results / f"book{N}")
    built = [read_file(p) for p in (rd.compacted_trials, rd.compacted_curves)]
    direct = _reads(rd)
    assert direct[3]["ok"] == N and direct[3]["pending"] == 0 and direct[3]["exit_code"] == 0
    assert len(direct[4]) == N and len(direct[2]) == 10 * N

    shutil.rmtree(rd.compact_dir)
    assert rd.compact() == (N, 10 * N)  # the store's compaction of the same files
    for mine, theirs in zip(built, (read_file(p) for p in (rd.compacted_trials, rd.compacted_curves))):
        assert mine.equals(theirs, check_metadata=True)  # stamps included: the same files, the same rows
    _same(_reads(rd), direct)
    assert sorted(direct[4]) == sorted(rd.membership())
