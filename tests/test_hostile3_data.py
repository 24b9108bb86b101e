"""Issue 27, data: test data that is training data is refused (the same HF split, shared shards)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import data
from harness.errors import StudyError
from tests.test_streams import fashion, hf_cfg, hf_dirs, shards, wds_cfg  # noqa: F401 (fixtures)


@pytest.mark.parametrize(
    "test_urls",
    ["{d}/train-{000..002}.tar", "{d}/train-001.tar", "{d}/../shards/train-000.tar"],
)
def test_webdataset_test_shards_that_are_training_shards_are_refused(shards: Path, test_urls: str) -> None:  # noqa: F811
    cfg = wds_cfg(shards, test_urls=test_urls.replace("{d}", str(shards)))
    with pytest.raises(StudyError, match="test shards are training shards too") as e:
        data.describe(cfg)
    assert e.value.key == "dataset.test_urls" and "test_fraction" in e.value.fix


def test_hf_test_split_equal_to_the_training_split_is_refused(hf_dirs: dict, tmp_path: Path) -> None:  # noqa: F811
    with pytest.raises(StudyError, match="test_split 'train' is the split the trials train on") as e:
        data.describe(hf_cfg(hf_dirs["disk"], tmp_path, test_split="train"))
    assert e.value.key == "dataset.test_split"
