"""Atomic writes and resume bookkeeping."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from harness import store
from harness.store import TrialOutput


def _row(tid: str, status: str = "ok", acc: float = 0.5) -> dict:
    return {
        "study": "s",
        "trial_id": tid,
        "status": status,
        "error": "" if status == "ok" else "RuntimeError: x",
        "family": "vit",
        "model": "vit@xs",
        "image_size": 28,
        "data_size": 100,
        "seed": 0,
        "test_acc": acc if status == "ok" else math.nan,
        "params": 123,
    }


def test_write_read_roundtrip_with_schema(tmp_path: Path) -> None:
    store.write(
        TrialOutput(
            _row("a"),
            [
                {
                    "epoch": 1.0,
                    "step": 1,
                    "samples_seen": 8,
                    "train_loss": 1.0,
                    "test_acc": 0.4,
                    "test_loss": 1.1,
                    "lr": 0.1,
                    "elapsed_s": 0.1,
                }
            ],
        ),
        tmp_path,
    )
    store.write(TrialOutput(_row("b", "failed")), tmp_path)
    df = store.read(tmp_path)
    assert set(store.COLUMNS) <= set(df.columns)
    assert df.set_index("trial_id").loc["a", "test_acc"] == 0.5
    assert math.isnan(df.set_index("trial_id").loc["b", "test_acc"])
    assert store.done_ids(tmp_path) == {"a"}
    assert list(store.read_curves(tmp_path)["trial_id"]) == ["a"]


def test_failed_then_ok_leaves_one_row(tmp_path: Path) -> None:
    store.write(TrialOutput(_row("a", "failed")), tmp_path)
    store.write(TrialOutput(_row("a", "ok", 0.7)), tmp_path)
    df = store.read(tmp_path)
    assert len(df) == 1 and df["status"].iloc[0] == "ok" and df["test_acc"].iloc[0] == 0.7


def test_a_write_that_dies_leaves_the_old_file_and_no_temporaries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store.write(TrialOutput(_row("a", "ok", 0.1)), tmp_path)

    def boom(self: pd.DataFrame, path: str, **kw: object) -> None:
        Path(path).write_bytes(b"PAR1 half a file")  # what a killed writer leaves behind
        raise KeyboardInterrupt

    monkeypatch.setattr(pd.DataFrame, "to_parquet", boom)
    with pytest.raises(KeyboardInterrupt):
        store.write(TrialOutput(_row("a", "ok", 0.9)), tmp_path)
    monkeypatch.undo()
    assert store.read(tmp_path)["test_acc"].tolist() == [0.1]
    assert [p.name for p in (tmp_path / "trials").iterdir()] == ["a.parquet"]


def test_readers_ignore_temporaries(tmp_path: Path) -> None:
    (tmp_path / "trials").mkdir()
    (tmp_path / "trials" / ".x.parquet.abc.tmp").write_bytes(b"junk")
    assert store.read(tmp_path).empty and store.done_ids(tmp_path) == set()
