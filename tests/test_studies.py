"""Every shipped study loads and runs in smoke mode (STYLE 4: Ray's --smoke-test)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import spec, store
from harness.cli import main

STUDIES = sorted((Path(__file__).resolve().parent.parent / "studies").glob("*.yaml"))
QUICK = {"quickstart", "attention_cost_small"}  # the rest take 30-130 s each on 2 shared cores: marked slow


@pytest.mark.parametrize(
    "path", [pytest.param(p, marks=() if p.stem in QUICK else pytest.mark.slow) for p in STUDIES], ids=[p.stem for p in STUDIES]
)
def test_shipped_study_runs_in_smoke_mode(path: Path, tmp_path: Path) -> None:
    study = spec.load_study(path)
    head = path.read_text().lstrip()
    assert head.startswith("#"), "a shipped study starts with a comment block: claim, command, runtime, expectation"
    assert main(["run", str(path), "--smoke", "--backend", "local", "--results", str(tmp_path), "--no-report"]) == 0
    df = store.read(tmp_path / f"{study.name}-smoke")
    assert len(df) == len(spec.expand(study)) and (df["status"] == "ok").all()
