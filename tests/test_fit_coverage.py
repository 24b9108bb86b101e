"""benchmarks/fit_coverage.py runs in its smoke mode (seconds)."""

from __future__ import annotations

import pytest

from benchmarks import fit_coverage


def test_coverage_benchmark_smoke(capsys: pytest.CaptureFixture) -> None:
    assert fit_coverage.main(["--smoke"]) == 0
    out = capsys.readouterr().out
    assert "| power | 2 | 3 |" in out
