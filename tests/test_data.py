"""IDX reading, stratified nested subsets, batches."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from harness import data
from harness.data import builtin  # where the Fashion-MNIST search reads DEBIAN_FASHION
from harness.errors import StudyError


def _write_idx(path: Path, arr: np.ndarray) -> None:
    header = struct.pack(">HBB", 0, 8, arr.ndim) + struct.pack(f">{arr.ndim}i", *arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def test_reads_idx_files_from_root(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    imgs, labels = rng.integers(0, 256, (50, 28, 28)), np.arange(50) % 10
    for split, n in (("train", 50), ("t10k", 20)):
        _write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", imgs[:n])
        _write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", labels[:n])
    info = data.describe({"name": "fashion_mnist", "root": str(tmp_path)})
    assert info.source["root"] == str(tmp_path)
    ds = data.load({"name": "fashion_mnist", "root": str(tmp_path)})
    assert ds.train.images.shape == (50, 1, 28, 28) and ds.train.images.dtype == torch.uint8
    assert torch.equal(ds.train.images[7, 0], torch.from_numpy(imgs[7].astype(np.uint8)))
    assert ds.test.labels.tolist() == (np.arange(20) % 10).tolist()


@pytest.mark.skipif(not data.DEBIAN_FASHION.is_dir(), reason="dataset-fashion-mnist not installed")
def test_real_fashion_mnist() -> None:
    ds = data.load({"name": "fashion_mnist"})
    assert ds.train.images.shape == (60000, 1, 28, 28) and ds.test.images.shape == (10000, 1, 28, 28)
    assert torch.bincount(ds.train.labels).tolist() == [6000] * 10
    assert 0.25 < ds.mean[0] < 0.32  # Fashion-MNIST's pixel mean is 0.286


def test_subset_is_stratified_deterministic_and_nested() -> None:
    ds = data.load({"name": "synthetic", "num_classes": 4, "train_size": 400, "test_size": 40})
    a = data.subset(ds.train, 100, seed=0)
    assert len(a) == 100 and torch.bincount(a.labels).tolist() == [25] * 4
    again = data.subset(ds.train, 100, seed=0)
    assert torch.equal(a.images, again.images)
    b = data.subset(ds.train, 200, seed=0)
    rows = {bytes(x.numpy()) for x in b.images}
    assert all(bytes(x.numpy()) in rows for x in a.images), "the small subset is inside the larger one"
    c = data.subset(ds.train, 100, seed=1)
    assert not torch.equal(a.images, c.images)
    odd = data.subset(ds.train, 10, seed=0)
    assert len(odd) == 10 and sorted(torch.bincount(odd.labels).tolist()) == [2, 2, 3, 3]


def test_batcher_resizes_normalises_and_augments() -> None:
    ds = data.load({"name": "synthetic", "num_classes": 4, "train_size": 64, "test_size": 8})
    b = data.Batcher(ds, image_size=32, device=torch.device("cpu"), augment="flip_shift")
    x = b(ds.train.images[:16])
    assert x.shape == (16, 1, 32, 32) and x.dtype == torch.float32
    assert abs(x.mean().item()) < 0.3
    g = torch.Generator().manual_seed(0)
    xa = b(ds.train.images[:16], train=True, generator=g)
    assert xa.shape == (16, 1, 32, 32) and not torch.allclose(xa, x)


def test_epoch_sampler_covers_every_sample_once_per_pass() -> None:
    s = data.EpochSampler(10, 5, seed=0)
    first = torch.cat([s.next(), s.next()]).sort().values
    assert first.tolist() == list(range(10))


def test_unknown_dataset_key() -> None:
    with pytest.raises(StudyError, match="did you mean num_classes"):
        data.describe({"name": "synthetic", "num_class": 3})


def test_dataset_root_reaches_the_trial_but_not_its_id(tmp_path: Path, monkeypatch) -> None:
    """A Fashion-MNIST `root:` must travel with the trial (workers load from it), yet moving the
    directory must not change trial ids."""
    from harness import spec
    from harness.trial import run_trial

    rng = np.random.default_rng(0)
    for split, n in (("train", 60), ("t10k", 20)):
        _write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    monkeypatch.setattr(builtin, "DEBIAN_FASHION", tmp_path / "absent")
    monkeypatch.delenv("HARNESS_DATA", raising=False)
    raw = {
        "name": "r",
        "dataset": {"name": "fashion_mnist", "root": str(tmp_path)},
        "grid": {"model": ["linear@xs"], "data_size": [20]},
        "train": {"steps": 2, "batch_size": 10, "curve_eval_size": 10},
        "profile": {"enabled": False},
    }
    (trial,) = spec.expand(spec.parse_study(raw))
    out = run_trial(trial)
    assert out.row["status"] == "ok", out.row["error"]
    moved = dict(raw, dataset={"name": "fashion_mnist", "root": str(tmp_path / ".")})
    assert spec.expand(spec.parse_study(moved))[0].trial_id == trial.trial_id
