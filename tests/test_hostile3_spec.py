"""Issue 27, the study file: caps checked at load, overrides validated, the dry run linear in trials."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import spec
from harness.spec import identity

SYNTH = """name: s
dataset: {name: synthetic, num_classes: 10, train_size: 2000, test_size: 200, image_size: 16, channels: 3}
grid:
  model: [resnet@xs]
  data_size: [100]
  image_size: [16]
  seed: [0]
train: {steps: 2, batch_size: 16}
profile: {enabled: false}
"""


@pytest.fixture
def study_file(tmp_path: Path) -> Path:
    p = tmp_path / "s.yaml"
    p.write_text(SYNTH)
    return p


def test_expansion_hashes_the_study_once_and_each_trial_once(study_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`grid.seed=[0..N]` used to recompute the study hash per trial (a 20k-seed dry run took > 120 s)."""
    calls = {"study": 0, "trial": 0}
    real_study, real_hash = identity.study_hash, identity.config_hash

    def count_study(s: object) -> str:
        calls["study"] += 1
        return real_study(s)

    def count_hash(cfg: dict) -> str:
        calls["trial"] += 1
        return real_hash(cfg)

    n = 2000
    study = spec.load_study(study_file, [f"grid.seed=[{','.join(map(str, range(n)))}]"])
    monkeypatch.setattr(identity, "study_hash", count_study)
    monkeypatch.setattr(identity, "config_hash", count_hash)
    trials = spec.expand(study)
    ids = [t.trial_id for t in trials] + [t.trial_id for t in trials]
    assert len(trials) == n and len(set(ids)) == n
    assert calls["study"] == 1 and calls["trial"] <= n + 1
    assert spec.varying_train_keys(trials) == []
