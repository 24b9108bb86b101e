"""`runner.prepare` (harness run, status of a study file, --dry-run) expands the study once: loading
checks every cell by expanding the grid, and those trials are the ones returned (issue 27: at
100,000 trials a second expansion cost ~3 s). The ids are the golden ones, with and without --smoke."""

from __future__ import annotations

import importlib
import json

import pytest

from harness import runner, spec
from tests.golden_ids import GOLDEN, ROOT, STUDIES

expand_module = importlib.import_module("harness.spec.expand")  # the module (harness.spec.expand is the function)


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: str(p.relative_to(ROOT)))
def test_prepare_expands_once_to_the_golden_ids(path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = expand_module.expand

    def counted(study: spec.Study) -> list[spec.Trial]:
        calls.append(study.name)
        return real(study)

    monkeypatch.setattr(expand_module, "expand", counted)  # the loader's (check_cells)
    monkeypatch.setattr(spec, "expand", counted)  # the runner's
    golden = json.loads(GOLDEN.read_text())[str(path.relative_to(ROOT))]
    study, trials = runner.prepare(path)
    assert len(calls) == 1
    assert [t.trial_id for t in trials] == golden["full"]
    assert trials == real(study)  # the same trials, configs and all
    study, trials = runner.prepare(path, smoke=True)
    assert [t.trial_id for t in trials] == golden["smoke"]


def test_prepare_with_overrides_expands_the_overridden_study(monkeypatch: pytest.MonkeyPatch) -> None:
    path = ROOT / "studies" / "quickstart.yaml"
    study, trials = runner.prepare(path, overrides=["train.steps=7"])
    assert {t.train["steps"] for t in trials} == {7}
    assert trials == spec.expand(spec.load_study(path, ["train.steps=7"]))
