"""WebDataset shards and Hugging Face datasets (save_to_disk, parquet) built from real Fashion-MNIST
images with the real libraries: indexing, exact pixels, nested subsets, disjoint validation, ids
independent of location, errors, and a trial trained on each."""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from harness import data, spec
from harness.data import hf as hf_data
from harness.data import readers, streams
from harness.data import shards as wds_data
from harness.errors import StudyError
from harness.trial import run_trial

wds = pytest.importorskip("webdataset")
datasets = pytest.importorskip("datasets")
pytestmark = pytest.mark.skipif(not data.DEBIAN_FASHION.is_dir(), reason="dataset-fashion-mnist not installed")

TRAIN, TEST = 240, 60  # Fashion-MNIST test-set images: the first 240 train here, the next 60 test


@pytest.fixture(autouse=True)
def fresh_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    for f in (wds_data._index_cached, hf_data._hf_splits, hf_data._hf_labels, hf_data.image_column, data.load_cached):
        f.cache_clear()
    yield


@pytest.fixture(scope="module")
def fashion() -> tuple[np.ndarray, np.ndarray]:
    root = data.DEBIAN_FASHION
    images = data.read_idx(root / data.FASHION_FILES["test_images"])[: TRAIN + TEST, 0].numpy()
    labels = data.read_idx(root / data.FASHION_FILES["test_labels"])[: TRAIN + TEST].numpy()
    return images, labels


def png(image: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory, fashion: tuple[np.ndarray, np.ndarray]) -> Path:
    """shards/train-000..002.tar (80 samples each) and shards/test-000.tar: png + cls + txt (class name)."""
    images, labels = fashion
    d = tmp_path_factory.mktemp("wds") / "shards"
    d.mkdir()
    for split, lo, hi in (("train", 0, TRAIN), ("test", TRAIN, TRAIN + TEST)):
        with wds.ShardWriter(str(d / f"{split}-%03d.tar"), maxcount=80, verbose=0) as sink:
            for i in range(lo, hi):
                name = data.FASHION_CLASSES[labels[i]]
                sink.write(
                    {"__key__": f"{split}{i:05d}", "png": png(images[i]), "cls": str(labels[i]).encode(), "txt": name.encode()}
                )
    return d


def wds_cfg(d: Path, **extra: object) -> dict:
    return {
        "name": "webdataset",
        "urls": str(d / "train-{000..002}.tar"),
        "test_urls": str(d / "test-000.tar"),
        "image_size": 28,
        "channels": 1,
        **extra,
    }


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory: pytest.TempPathFactory, fashion: tuple[np.ndarray, np.ndarray]) -> dict[str, Path]:
    """The same images as a DatasetDict saved to disk, and as parquet files (data/train-*.parquet)."""
    images, labels = fashion
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=data.FASHION_CLASSES)})

    def part(lo: int, hi: int) -> datasets.Dataset:
        rows = {"image": [Image.fromarray(images[i]) for i in range(lo, hi)], "label": labels[lo:hi].tolist()}
        return datasets.Dataset.from_dict(rows, features=features)

    base = tmp_path_factory.mktemp("hf")
    dd = datasets.DatasetDict({"train": part(0, TRAIN), "test": part(TRAIN, TRAIN + TEST)})
    datasets.disable_progress_bars()
    dd.save_to_disk(str(base / "disk"))
    (base / "parquet" / "data").mkdir(parents=True)
    for split, ds in dd.items():
        ds.to_parquet(str(base / "parquet" / "data" / f"{split}-00000-of-00001.parquet"))
    dd["train"].save_to_disk(str(base / "single"))  # one split: test_fraction holds out the test images
    for split, lo, hi in (("train", 0, TRAIN), ("test", TRAIN, TRAIN + TEST)):  # train/c0/00000.png ...
        for i in range(lo, hi):
            (base / "folder" / split / f"c{labels[i]}").mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[i]).save(base / "folder" / split / f"c{labels[i]}" / f"{i:05d}.png")
    return {"disk": base / "disk", "parquet": base / "parquet", "single": base / "single", "imagefolder": base / "folder"}


def hf_cfg(path: Path, tmp_path: Path, **extra: object) -> dict:
    return {"name": "hf", "path": str(path), "image_size": 28, "channels": 1, "cache_dir": str(tmp_path / "hf-cache"), **extra}


def members(split: data.Split) -> np.ndarray:
    return np.asarray(split.images.rows)


# ----------------------------------------------------------------------------- WebDataset


def test_webdataset_index_reads_exact_pixels_and_labels(shards: Path, fashion: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = fashion
    info = data.describe(wds_cfg(shards))
    assert (info.num_classes, info.in_chans, info.native_size, info.train_size, info.test_size) == (10, 1, 28, TRAIN, TEST)
    assert "urls" not in info.config and info.config["fingerprint"] and info.config["label_key"] == "cls"
    streamed = data.load(wds_cfg(shards, max_memory_mb=0, workers=0))
    assert isinstance(streamed.train.images, readers.TarMembers)
    for i in (0, 79, 80, 239):  # first/last sample of a shard, across shard boundaries
        assert torch.equal(streamed.train.images[i][0], torch.from_numpy(images[i]))
    assert streamed.train.labels.tolist() == labels[:TRAIN].tolist()
    assert streamed.test.labels.tolist() == labels[TRAIN:].tolist()
    memory = data.load(wds_cfg(shards))  # fits max_memory_mb: decoded once, same pixels and stats
    assert isinstance(memory.train.images, torch.Tensor) and memory.mean == streamed.mean
    assert torch.equal(memory.test.images[:, 0], torch.from_numpy(images[TRAIN:]))


def test_webdataset_subsets_nested_repeatable_and_val_disjoint(shards: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def draw() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ds = data.load(wds_cfg(shards, max_memory_mb=0, workers=0))
        pool, val = data.split_validation(ds.train, 40)
        return members(data.subset(pool, 50, seed=1)), members(data.subset(pool, 150, seed=1)), members(val)

    small, large, val = draw()
    assert len(small) == 50 and len(large) == 150 and len(val) == 40
    assert set(small) <= set(large) and not set(large) & set(val)
    # a re-run reads the cached index (no rescan) and picks the same samples
    for f in (wds_data._index_cached, data.load_cached):
        f.cache_clear()
    monkeypatch.setattr(wds_data, "_scan_shards", lambda *a: pytest.fail("shards rescanned despite the cached index"))
    again = draw()
    assert all(np.array_equal(a, b) for a, b in zip((small, large, val), again, strict=True))


def test_parallel_header_pass_gives_the_serial_index(shards: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = tuple(wds_data.expand_urls(str(shards / "train-{000..002}.tar"), "urls"))
    serial = wds_data._scan_shards(paths, ("png",), "cls")
    monkeypatch.setattr(wds_data, "PARALLEL_SHARDS", 2)  # 3 shards: forked processes, one per core
    parallel = wds_data._scan_shards(paths, ("png",), "cls")
    for field in ("shard", "offset", "size", "labels"):
        assert np.array_equal(getattr(serial, field), getattr(parallel, field))
    assert serial.digest == parallel.digest and len(serial.shard) == TRAIN


def test_webdataset_text_labels_and_test_fraction(shards: Path) -> None:
    cfg = wds_cfg(shards, label_key="txt", test_fraction=0.25)
    del cfg["test_urls"]
    info = data.describe(cfg)
    assert info.num_classes == 10 and info.source["classes"] == sorted(data.FASHION_CLASSES)
    assert info.train_size + info.test_size == TRAIN and info.config["test_fraction"] == 0.25
    ds = data.load(dict(cfg, max_memory_mb=0))
    assert not set(members(ds.train)) & set(members(ds.test))


def test_moving_the_shards_keeps_trial_ids(shards: Path, tmp_path: Path) -> None:
    moved = tmp_path / "elsewhere"
    shutil.copytree(shards, moved)

    def trial_id(d: Path) -> str:
        study = spec.parse_study({"name": "w", "dataset": wds_cfg(d), "grid": {"model": ["mlp@xs"], "data_size": [50]}})
        return spec.expand(study)[0].trial_id

    assert trial_id(shards) == trial_id(moved)
    assert (
        trial_id(shards)
        != spec.expand(
            spec.parse_study(
                {"name": "w", "dataset": wds_cfg(shards, image_size=16), "grid": {"model": ["mlp@xs"], "data_size": [50]}}
            )
        )[0].trial_id
    )


@pytest.mark.parametrize(
    ("extra", "key", "match"),
    [
        ({"urls": "nowhere/train-{000..002}.tar"}, "dataset.urls", "no shard file"),
        ({"urls": "{d}/train-{000..009}.tar"}, "dataset.urls", "train-003.tar"),
        ({"urls": "{d}/*.tgz"}, "dataset.urls", "no shard file"),
        ({"image_key": "jpg"}, "dataset.image_key", "has no image key jpg"),
        ({"label_key": "label"}, "dataset.label_key", "has no label key"),
        ({"image_keys": "png"}, "dataset.image_keys", "unknown key"),
        ({"urls": None}, "dataset.urls", "needs urls"),
        ({"num_classes": 5}, "dataset.num_classes", "beyond num_classes"),
    ],
)
def test_webdataset_errors_name_key_and_fix(shards: Path, extra: dict, key: str, match: str) -> None:
    cfg = wds_cfg(shards, **{k: v.replace("{d}", str(shards)) if isinstance(v, str) else v for k, v in extra.items()})
    if cfg.get("urls") is None:
        del cfg["urls"]
    with pytest.raises(StudyError, match=match) as e:
        data.describe(cfg)
    assert e.value.key == key and e.value.fix


def test_compressed_shards_and_missing_packages_are_explained(shards: Path, tmp_path: Path) -> None:
    import gzip

    (tmp_path / "train-000.tar").write_bytes(gzip.compress((shards / "train-000.tar").read_bytes()))
    with pytest.raises(StudyError, match="not an uncompressed tar") as e:
        data.describe(wds_cfg(shards, urls=str(tmp_path / "train-000.tar")))
    assert "gunzip" in e.value.fix
    with pytest.raises(StudyError, match="package is not installed") as e:
        streams.require("no_such_package_for_harness", "webdataset")
    assert "harness[webdataset]" in e.value.fix


# ----------------------------------------------------------------------------- Hugging Face


@pytest.mark.parametrize("kind", ["disk", "parquet"])
def test_hf_reads_exact_pixels_and_labels(kind: str, hf_dirs: dict, tmp_path: Path, fashion: tuple) -> None:
    images, labels = fashion
    info = data.describe(hf_cfg(hf_dirs[kind], tmp_path))
    assert (info.num_classes, info.train_size, info.test_size) == (10, TRAIN, TEST)
    assert info.config["test_split"] == "test" and "path" not in info.config and info.source["classes"] == data.FASHION_CLASSES
    ds = data.load(hf_cfg(hf_dirs[kind], tmp_path, max_memory_mb=0, workers=0))
    assert isinstance(ds.train.images, readers.HFRows)
    for i in (0, 123, 239):
        assert torch.equal(ds.train.images[i][0], torch.from_numpy(images[i]))
    assert ds.train.labels.tolist() == labels[:TRAIN].tolist() and ds.test.labels.tolist() == labels[TRAIN:].tolist()


def test_hf_imagefolder_builder_and_single_split(hf_dirs: dict, tmp_path: Path, fashion: tuple) -> None:
    images, labels = fashion
    ds = data.load(hf_cfg(hf_dirs["imagefolder"], tmp_path, max_memory_mb=0, workers=0))  # builder: auto -> imagefolder
    assert ds.info.num_classes == 10 and ds.info.source["classes"] == [f"c{i}" for i in range(10)]
    assert sorted(ds.train.labels.tolist()) == sorted(labels[:TRAIN].tolist()) and len(ds.test) == TEST
    first = ds.train.images[0][0].numpy()  # a file read back by path: some source image of its class
    assert any(np.array_equal(first, images[i]) for i in np.flatnonzero(labels[:TRAIN] == int(ds.train.labels[0])))
    single = data.describe(hf_cfg(hf_dirs["single"], tmp_path))
    assert single.train_size + single.test_size == TRAIN and single.config["test_fraction"] == 0.2


def test_unlabelled_test_split_is_refused() -> None:
    with pytest.raises(StudyError, match="negative labels") as e:
        streams.class_ids([0, 1, 2], [-1, -1], None, "dataset.path /data/imagenet-1k")
    assert e.value.key == "dataset.label_key" and "test_split: validation" in e.value.fix


def test_hf_subsets_nested_repeatable_and_val_disjoint(hf_dirs: dict, tmp_path: Path) -> None:
    def draw() -> list[np.ndarray]:
        ds = data.load(hf_cfg(hf_dirs["disk"], tmp_path, max_memory_mb=0, workers=0))
        pool, val = data.split_validation(ds.train, 30)
        return [members(data.subset(pool, n, seed=2)) for n in (20, 100)] + [members(val)]

    small, large, val = draw()
    assert set(small) <= set(large) and not set(large) & set(val) and len(val) == 30
    for f in (hf_data._hf_splits, hf_data._hf_labels, data.load_cached):
        f.cache_clear()
    assert all(np.array_equal(a, b) for a, b in zip((small, large, val), draw(), strict=True))


@pytest.mark.parametrize(
    ("extra", "key", "match"),
    [
        ({"split": "training"}, "dataset.split", "has no split 'training'"),
        ({"label_key": "labels"}, "dataset.label_key", "no column 'labels'"),
        ({"image_key": "label"}, "dataset.image_key", "not an Image"),
        ({"path": "/nonexistent/imagenet"}, "dataset.path", "does not exist"),
        ({"builder": "arrow"}, "dataset.builder", "unknown dataset.builder"),
    ],
)
def test_hf_errors_name_key_and_fix(hf_dirs: dict, tmp_path: Path, extra: dict, key: str, match: str) -> None:
    with pytest.raises(StudyError, match=match) as e:
        data.describe({**hf_cfg(hf_dirs["disk"], tmp_path), **extra})
    assert e.value.key == key and e.value.fix


# ----------------------------------------------------------------------------- a trial on each


@pytest.mark.parametrize("kind", ["webdataset", "disk", "parquet"])
def test_a_trial_trains_on_each_format(kind: str, shards: Path, hf_dirs: dict, tmp_path: Path) -> None:
    stream = {"max_memory_mb": 0, "workers": 1}  # decoded by a DataLoader worker, as at scale
    cfg = wds_cfg(shards, **stream) if kind == "webdataset" else hf_cfg(hf_dirs[kind], tmp_path, **stream)
    study = spec.parse_study(
        {
            "name": f"streams-{kind}",
            "dataset": cfg,
            "grid": {"model": ["mlp@xs"], "data_size": [100], "image_size": [16]},
            "train": {"steps": 3, "batch_size": 16, "warmup_steps": 1, "val_size": 20, "eval_every": 3, "curve_eval_size": 20},
            "profile": {"enabled": False},
        }
    )
    (trial,) = spec.expand(study)
    out = run_trial(trial)
    assert out.row["status"] == "ok", out.row["error"]
    assert out.row["dataset"] == ("webdataset" if kind == "webdataset" else "hf")
    assert out.row["steps"] == 3 and 0 <= out.row["test_acc"] <= 1
