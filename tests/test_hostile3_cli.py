"""Issue 27, the remaining cases: each one clear line, exit 2, the exact command."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from harness.cli import main


@pytest.mark.parametrize(
    "argv, says",
    [
        (["plan", "--isoflop", "1e12", "--family", "vit", "--study", "../x"], "starts with '.'"),
        (["plan", "--isoflop", "1e12", "--family", "vit", "--study", "a b: c"], "invalid study name"),
        (["plan", "--isoflop", "0,nan", "--family", "vit"], "budget 0 is not a positive number"),
        (["plan", "--isoflop", "1e12,nan", "--family", "vit"], "budget nan is not a positive number"),
        (
            ["plan", "--isoflop", "1e9", "--family", "vit", "--image-size", "16", "--sizes", "100000"],
            "--sizes 100000 is above 64",
        ),
        (["plan", "--isoflop", "1e40", "--family", "vit"], "--isoflop: budget 1e+40 MACs: target"),
        (["plan", "--isoflop", "1e9,1e10", "--family", "linear"], "--family: budget 1e+09 MACs: linear has 1 distinct shape"),
        (["plan", "--isoflop", "1e9", "--family", "mlp,linear", "--study", "s"], "linear has no width or depth"),
    ],
)
def test_bad_plan_input_is_one_line(argv: list[str], says: str, capsys: pytest.CaptureFixture) -> None:
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and says in err and len(err.strip().splitlines()) == 1, err


def test_fit_budgets_zero_or_nan_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from tests.test_sql import write_study

    rd = write_study(tmp_path, "f")
    code = main(["fit", str(rd.path), "--isoflop", "--y", "test_acc", "--x", "params", "--budgets", "0,nan"])
    err = capsys.readouterr().err
    assert code == 2 and "not a positive number" in err and "Warning" not in err


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_models_json_to_a_full_disk_is_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """`harness models --json > /dev/full` ended in a traceback. Two families that count in milliseconds:
    the write fails the same way whatever the list holds (every registered model took ~20 s to count),
    and main's one `except OSError` covers both a write inside the verb and its final flush."""
    with capsys.disabled(), open("/dev/full", "w") as full:
        monkeypatch.setattr(sys, "stdout", full)
        err = io.StringIO()
        monkeypatch.setattr(sys, "stderr", err)
        code = main(["models", "--json", "--family", "mlp,linear"])
        monkeypatch.undo()
    assert code == 2 and err.getvalue().count("\n") == 1 and "No space left on device" in err.getvalue(), err.getvalue()
