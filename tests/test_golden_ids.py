"""Every trial id of every study in studies/ and docs/studies/ is the one committed in
tests/golden/trial_ids.json: a refactor of the study language must not re-run finished trials."""

from __future__ import annotations

import json

import pytest

from tests.golden_ids import GOLDEN, ROOT, STUDIES, ids_of


def test_every_shipped_study_has_golden_ids() -> None:
    golden = json.loads(GOLDEN.read_text())
    assert sorted(golden) == sorted(str(p.relative_to(ROOT)) for p in STUDIES)


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: str(p.relative_to(ROOT)))
def test_trial_ids_unchanged(path) -> None:
    golden = json.loads(GOLDEN.read_text())[str(path.relative_to(ROOT))]
    assert ids_of(path) == golden
