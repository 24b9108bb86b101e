"""CIFAR-10 and ImageFolder loaders on files the tests write; in-memory vs streamed ImageFolder."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from harness import data, spec, zoo
from harness.errors import StudyError
from harness.train import train
from harness.trial import run_trial


@pytest.fixture(autouse=True)
def one_thread_and_fresh_caches() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # shared 2-core machine; identical float sums across both paths
    data.scan_imagefolder.cache_clear()
    data.load_cached.cache_clear()
    yield
    torch.set_num_threads(threads)


# ----------------------------------------------------------------------------- CIFAR-10


def write_cifar(root: Path, per_batch: int = 4, test: int = 6) -> Path:
    """A tiny cifar-10-batches-py: the real layout (pickled dicts with bytes keys), few images."""
    d = root / data.CIFAR_DIR
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in data.CIFAR_FILES:
        n = test if name == "test_batch" else per_batch
        batch = {
            b"batch_label": name.encode(),
            b"labels": [int(v) for v in rng.integers(0, 10, n)],
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"filenames": [b"x.png"] * n,
        }
        with open(d / name, "wb") as f:
            pickle.dump(batch, f)
    return d


def test_cifar_reads_the_python_batches(tmp_path: Path) -> None:
    d = write_cifar(tmp_path)
    info = data.describe({"name": "cifar10", "root": str(tmp_path)})
    assert (info.num_classes, info.in_chans, info.native_size) == (10, 3, 32)
    assert info.source["root"] == str(d) and info.config == {"name": "cifar10", "root": str(tmp_path)}
    assert data.describe(info.config).config == info.config  # a trial reloads from the config alone
    ds = data.load({"name": "cifar10", "root": str(d)})  # the batches folder itself works too
    assert ds.train.images.shape == (20, 3, 32, 32) and ds.train.images.dtype == torch.uint8
    assert ds.test.images.shape == (6, 3, 32, 32) and ds.test.labels.dtype == torch.long
    with open(d / "data_batch_2", "rb") as f:
        raw = pickle.load(f, encoding="bytes")
    row = raw[b"data"][1]  # image 5 overall; R plane, then G, then B, each row-major 32 x 32
    img = ds.train.images[5]
    assert img[0, 0, 1] == row[1] and img[1, 0, 0] == row[1024] and img[2, 31, 31] == row[3071]
    assert ds.train.labels[4:8].tolist() == raw[b"labels"]
    assert len(ds.mean) == 3


def test_cifar_found_through_harness_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_cifar(tmp_path)
    monkeypatch.setenv("HARNESS_DATA", str(tmp_path))
    info = data.describe({"name": "cifar10"})
    assert info.config == {"name": "cifar10"}  # found on the default path: nothing to carry


def test_cifar_missing_or_incomplete(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HARNESS_DATA", raising=False)
    with pytest.raises(StudyError) as err:
        data.describe({"name": "cifar10", "root": str(tmp_path / "nowhere")})
    assert err.value.key == "dataset.root" and "cifar-10-python.tar.gz" in err.value.fix
    assert "download: true" in err.value.fix
    d = write_cifar(tmp_path)
    (d / "data_batch_3").unlink()
    with pytest.raises(StudyError, match="incomplete: data_batch_3 missing"):
        data.describe({"name": "cifar10", "root": str(tmp_path)})
    with pytest.raises(StudyError, match="did you mean root"):
        data.describe({"name": "cifar10", "roots": str(tmp_path)})


# ----------------------------------------------------------------------------- ImageFolder

COLOURS = {"cat": (255, 0, 0), "dog": (0, 255, 0), "fox": (0, 0, 255)}


def write_folder(root: Path, per_class: int = 5) -> Path:
    """Class folders of solid-colour PNGs in mixed shapes (landscape, portrait, square)."""
    for cls, rgb in COLOURS.items():
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            size = [(20, 12), (12, 20), (16, 16)][i % 3]
            Image.new("RGB", size, tuple(max(0, c - 10 * i) for c in rgb)).save(root / cls / f"{i:03d}.png")
    (root / "cat" / "notes.txt").write_text("not an image")
    return root


def folder_cfg(root: Path, **extra: object) -> dict:
    return {"name": "imagefolder", "root": str(root), "image_size": 8, **extra}


def test_imagefolder_flat_layout_decodes_and_splits_by_class(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "pets")
    info = data.describe(folder_cfg(root))
    assert (info.num_classes, info.in_chans, info.native_size) == (3, 3, 8)
    assert (info.train_size, info.test_size) == (12, 3)  # 0.2 x 5 = 1 test image per class
    assert info.config["test_fraction"] == 0.2 and len(info.config["fingerprint"]) == 12
    assert data.describe(info.config).config == info.config
    ds = data.load(folder_cfg(root))
    assert isinstance(ds.train.images, torch.Tensor)  # fits the default budget: decoded once
    assert ds.train.images.shape == (12, 3, 8, 8) and ds.test.images.shape == (3, 3, 8, 8)
    assert torch.bincount(ds.test.labels).tolist() == [1, 1, 1]
    first_cat = ds.train.images[ds.train.labels == 0][0]
    assert first_cat[0].min() > 200 and first_cat[1:].max() < 10  # red, centre-cropped to 8 x 8
    grey = data.load(folder_cfg(root, channels=1))
    assert grey.train.images.shape == (12, 1, 8, 8) and grey.info.in_chans == 1


def test_imagefolder_train_val_layout(tmp_path: Path) -> None:
    write_folder(tmp_path / "train", per_class=4)
    write_folder(tmp_path / "val", per_class=2)
    info = data.describe(folder_cfg(tmp_path))
    assert (info.train_size, info.test_size, info.source["layout"]) == (12, 6, "train/val")
    assert "test_fraction" not in info.config
    with pytest.raises(StudyError, match="own train/val split") as err:
        data.describe(folder_cfg(tmp_path, test_fraction=0.1))
    assert err.value.key == "dataset.test_fraction"
    (tmp_path / "val" / "owl").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "val" / "owl" / "a.png")
    data.scan_imagefolder.cache_clear()
    with pytest.raises(StudyError, match="classes that train/ lacks: owl"):
        data.describe(folder_cfg(tmp_path))


@pytest.mark.parametrize(
    "make,cfg,key,match",
    [
        (lambda p: None, {"root": "MISSING"}, "dataset.root", "not a directory"),
        (lambda p: write_folder(p), {"image_size": None}, "dataset.image_size", "needs image_size"),
        (lambda p: (p / "only").mkdir(parents=True), {}, "dataset.root", "1 class folder"),
        (lambda p: (write_folder(p), (p / "empty").mkdir()), {}, "dataset.root", "has no images"),
        (lambda p: write_folder(p), {"channels": 2}, "dataset.channels", "1 \\(grey\\) or 3"),
        (lambda p: write_folder(p), {"test_fraction": 1.5}, "dataset.test_fraction", "between 0 and 1"),
        (lambda p: write_folder(p), {"max_memory_mb": -1}, "dataset.max_memory_mb", "non-negative"),
    ],
)
def test_imagefolder_errors_name_the_key(tmp_path: Path, make: object, cfg: dict, key: str, match: str) -> None:
    root = tmp_path / "ds"
    make(root)
    full = folder_cfg(root)
    full.update({k: str(tmp_path / v) if k == "root" else v for k, v in cfg.items()})
    full = {k: v for k, v in full.items() if v is not None}
    with pytest.raises(StudyError, match=match) as err:
        data.describe(full)
    assert err.value.key == key and err.value.fix


def test_imagefolder_fingerprint_catches_changed_files(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "pets")
    planned = data.describe(folder_cfg(root)).config
    Image.new("RGB", (9, 9)).save(root / "dog" / "new.png")
    data.scan_imagefolder.cache_clear()
    with pytest.raises(StudyError, match="changed since this study was planned"):
        data.describe(planned)


def test_streamed_and_in_memory_paths_give_the_same_batches(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "pets", per_class=6)
    memory = data.load(folder_cfg(root))
    streamed = data.load(folder_cfg(root, max_memory_mb=0, workers=1))  # 0 MB: always stream
    assert isinstance(streamed.train.images, data.ImageFiles) and streamed.train.images.workers == 1
    assert streamed.mean == memory.mean and streamed.std == memory.std
    # training batches: the same indices, images and labels, across an epoch boundary (12 + 3 > 15)
    fetchers = []
    for ds in (memory, streamed):
        sampler = data.EpochSampler(len(ds.train), 4, seed=3)
        fetchers.append((sampler, data.BatchFetcher(ds.train, sampler)))
    for _ in range(5):
        (a_images, a_labels), (b_images, b_labels) = (f(s.next()) for s, f in fetchers)
        assert a_images.shape == (4, 3, 8, 8) and a_images.dtype == torch.uint8
        assert torch.equal(a_images, b_images) and torch.equal(a_labels, b_labels)
    evaluated = [list(data.eval_batches(ds.test, 2)) for ds in (memory, streamed)]
    assert [len(x) for x, _ in evaluated[1]] == [2, 1] and len(evaluated[0]) == 2
    for (a, la), (b, lb) in zip(*evaluated, strict=True):
        assert torch.equal(a, b) and torch.equal(la, lb)
    small = [data.subset(ds.train, 6, seed=1) for ds in (memory, streamed)]
    assert isinstance(small[1].images, data.ImageFiles) and len(small[1]) == 6
    assert torch.equal(small[0].images, torch.stack([small[1].images[i] for i in range(6)]))


def test_streamed_imagefolder_trains_like_the_in_memory_one(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "pets", per_class=6)
    cfg = dict(spec.TRAIN_DEFAULTS, steps=4, batch_size=4, warmup_steps=1, eval_every=2, curve_eval_size=3)
    results = []
    for extra in ({}, {"max_memory_mb": 0, "workers": 0}):
        ds = data.load(folder_cfg(root, **extra))
        torch.manual_seed(0)
        model = zoo.build(zoo.resolve("linear@xs"), image_size=8, in_chans=3, num_classes=3)
        results.append(train(model, ds, image_size=8, data_size=15, seed=0, cfg=cfg, device=torch.device("cpu")))
    memory, streamed = results
    assert streamed.steps == 4 and streamed.samples_seen == 16
    assert [p["train_loss"] for p in streamed.curve] == [p["train_loss"] for p in memory.curve]
    assert streamed.test_acc == memory.test_acc


def test_a_study_on_a_streamed_imagefolder_runs_a_trial(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "pets", per_class=6)
    study = spec.parse_study(
        {
            "name": "folder",
            "dataset": folder_cfg(root, max_memory_mb=0, workers=1),
            "grid": {"model": ["mlp@xs"], "data_size": [15], "image_size": [8]},
            "train": {"steps": 2, "batch_size": 4, "warmup_steps": 1},
            "profile": {"enabled": False},
        }
    )
    (trial,) = spec.expand(study)
    assert trial.dataset["root"] == str(root) and "fingerprint" in trial.dataset
    out = run_trial(trial)
    assert out.row["status"] == "ok", out.row["error"]
    assert out.row["dataset"] == "imagefolder" and 0 <= out.row["test_acc"] <= 1
