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


def _other_index() -> bytes:
    import io

    import numpy as np

    out = io.BytesIO()  # a whole .npz, but of arrays that do not agree (another index copied in, cut arrays)
    np.savez(
        out,
        shard=np.zeros(5, np.int32) + 7,
        offset=np.zeros(3, np.int64),
        size=np.zeros(3, np.int64),
        labels=np.array(["0"]),
        digest="x",
    )
    return out.getvalue()


@pytest.mark.parametrize("garbage", [b"", b"PK\x03\x04 truncated", b"not a zip at all", _other_index()])
def test_a_broken_webdataset_index_cache_is_rebuilt(
    shards: Path,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    garbage: bytes,
) -> None:
    """A truncated or garbage index cache file raised BadZipFile; the user had to find and delete it."""
    from harness.data import shards as wds_mod

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    wds_mod._index_cached.cache_clear()
    want = data.describe(wds_cfg(shards))
    files = list((tmp_path / "cache" / "webdataset").glob("*.npz"))
    assert files
    for f in files:
        f.write_bytes(garbage)
    wds_mod._index_cached.cache_clear()
    got = data.describe(wds_cfg(shards))
    assert (got.config, got.train_size, got.test_size) == (want.config, want.train_size, want.test_size)
    assert all(f.stat().st_size > len(garbage) for f in files)  # rewritten whole
