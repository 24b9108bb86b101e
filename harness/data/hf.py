"""Hugging Face `datasets` on local disk, read row by row (`HFRows`, harness/data/readers.py); see
harness/data/streams.py."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from harness.data.checks import only_keys
from harness.data.info import DataInfo
from harness.data.streams import (
    COMMON_DEFAULTS,
    check_common,
    check_fingerprint,
    class_ids,
    files_digest,
    require,
    split_sizes,
)
from harness.errors import StudyError, did_you_mean

HF_DEFAULTS = {"split": "train", "image_key": "image", "label_key": "label", "builder": "auto", **COMMON_DEFAULTS}
HF_KEYS = {"name", "path", "test_split", "image_size", "num_classes", "cache_dir", "fingerprint", *HF_DEFAULTS}
HF_BUILDERS = ("auto", "disk", "parquet", "imagefolder")


# ----------------------------------------------------------------------------- Hugging Face datasets


def describe_hf(cfg: dict) -> DataInfo:
    only_keys(cfg, HF_KEYS)
    full = check_common(cfg, HF_DEFAULTS, "dataset: {name: hf, path: ~/data/imagenet-1k, image_size: 64}")
    path, builder, cache = _hf_location(cfg, full)
    splits = _hf_splits(builder, str(path), cache)
    test_split = cfg.get("test_split") or next((s for s in ("test", "validation") if s in splits), None)
    if test_split is not None and test_split == full["split"]:  # test accuracy on training images (issue 27)
        raise StudyError(
            f"test_split '{test_split}' is the split the trials train on",
            key="dataset.test_split",
            fix="name a held-out split (e.g. test or validation), or leave test_split out to hold out test_fraction",
        )
    features = _hf_check(path, splits, full["split"], test_split, full["image_key"], full["label_key"])
    where = f"dataset.path {path}"
    read = functools.partial(_hf_labels, builder, str(path), cache, label_key=full["label_key"])
    labels = class_ids(read(full["split"]), read(test_split) if test_split else [], full.get("num_classes"), where)
    names = tuple(getattr(features[full["label_key"]], "names", None) or labels.names)  # a ClassLabel's names
    num_classes = labels.num_classes if "num_classes" in cfg else max(labels.num_classes, len(names))
    fingerprint = _hf_fingerprint(path, {full["split"]: labels.train, test_split: labels.test})
    check_fingerprint(cfg, fingerprint, where, "dataset.path")
    sizes = split_sizes(labels, test_split is not None, float(full["test_fraction"]))
    config = {
        "name": "hf",
        "image_size": full["image_size"],
        "channels": full["channels"],
        "split": full["split"],
        **({"test_split": test_split} if test_split else {"test_fraction": float(full["test_fraction"])}),
        "image_key": full["image_key"],
        "label_key": full["label_key"],
        "num_classes": num_classes,
        "fingerprint": fingerprint,
    }
    table = (builder, str(path), cache)
    source = {  # the rows of each split are picked when read (readers.load_hf: split_rows)
        "train_table": (*table, full["split"]),
        "test_table": (*table, test_split or full["split"]),
        "labels": labels,
        "has_test": test_split is not None,
        "test_fraction": float(full["test_fraction"]),
        "image_key": full["image_key"],
        "classes": list(names),
        "max_memory_mb": full["max_memory_mb"],
        "workers": full["workers"],
    }
    return DataInfo("hf", num_classes, full["channels"], full["image_size"], *sizes, config, source)


def _hf_location(cfg: dict, full: dict) -> tuple[Path, str, str | None]:
    """(directory, builder, cache_dir): where the data lives and how to read it; none of it is hashed."""
    if not cfg.get("path"):
        raise StudyError(
            "an hf dataset needs path, a local directory (save_to_disk output, parquet files or an image folder)",
            key="dataset.path",
            fix="e.g. dataset: {name: hf, path: ~/data/imagenet-1k, test_split: validation, image_size: 64}",
        )
    path = Path(cfg["path"]).expanduser().resolve()
    if not path.is_dir():
        raise StudyError(
            f"Hugging Face dataset directory {path} does not exist",
            key="dataset.path",
            fix="point path at the folder save_to_disk wrote, or at parquet files / an image folder",
        )
    if full["builder"] not in HF_BUILDERS:
        raise StudyError(
            f"unknown dataset.builder '{full['builder']}'",
            key="dataset.builder",
            fix=did_you_mean(str(full["builder"]), HF_BUILDERS),
        )
    builder = _hf_builder(path) if full["builder"] == "auto" else full["builder"]
    cache = str(Path(cfg["cache_dir"]).expanduser().resolve()) if cfg.get("cache_dir") else None
    return path, builder, cache


def _hf_check(path: Path, splits: dict, split: str, test_split: str | None, image_key: str, label_key: str) -> Any:
    """The training split's features, once the splits and columns the config names exist."""
    for key, name in (("split", split), ("test_split", test_split)):
        if name is not None and name not in splits:
            raise StudyError(
                f"{path} has no split '{name}' (it has: {', '.join(splits)})",
                key=f"dataset.{key}",
                fix=did_you_mean(str(name), list(splits)),
            )
    columns = splits[split].column_names
    for key, column in (("image_key", image_key), ("label_key", label_key)):
        if column not in columns:
            raise StudyError(
                f"split '{split}' of {path} has no column '{column}' (columns: {', '.join(columns)})",
                key=f"dataset.{key}",
                fix=did_you_mean(column, columns),
            )
    features = splits[split].features
    if not isinstance(features[image_key], require("datasets", "hf").Image):
        raise StudyError(
            f"column '{image_key}' of {path} is {type(features[image_key]).__name__}, not an Image",
            key="dataset.image_key",
            fix="name the image column (a datasets.Image feature)",
        )
    return features


def _hf_fingerprint(path: Path, labels: dict) -> str:
    """Relative paths and sizes of the files, plus each split's labels. Hidden files are left out:
    huggingface_hub's .cache/ metadata changes on a re-download of the same data."""
    files = [str(p) for p in path.rglob("*") if p.is_file() and not any(q.startswith(".") for q in p.relative_to(path).parts)]
    digest = files_digest(files, str(path))
    for name, y in labels.items():
        digest.update(f"{name}\t{hashlib.sha256(y.tobytes()).hexdigest()}\n".encode())
    return digest.hexdigest()[:12]


def _hf_builder(path: Path) -> str:
    if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
        return "disk"  # save_to_disk output
    return "parquet" if next(path.rglob("*.parquet"), None) is not None else "imagefolder"


@functools.lru_cache(maxsize=8)
def _hf_splits(builder: str, path: str, cache: str | None) -> dict:
    """split name -> datasets.Dataset (memory-mapped Arrow), loaded from local files only."""
    datasets = require("datasets", "hf")
    datasets.disable_progress_bars()  # one line per trial in the logs, not a bar per split
    if builder == "parquet":
        _check_whole(path, "*.parquet")  # before datasets logs its own line for a cut file
    try:
        if builder == "disk":
            loaded = datasets.load_from_disk(path)
        else:  # the packaged builders read local files; no network (the Arrow copy goes to cache_dir)
            loaded = datasets.load_dataset(builder, data_dir=path, cache_dir=cache)
    except (FileNotFoundError, ValueError, OSError) as e:
        if builder == "disk":
            _check_whole(path, "*.arrow")  # a cut Arrow file: name it
        raise StudyError(
            f"Hugging Face datasets could not load {path} as {builder} ({type(e).__name__}: {str(e).splitlines()[0][:200]})",
            key="dataset.path",
            fix="point path at a save_to_disk folder, parquet files (train-*.parquet, test-*.parquet) or an image folder, "
            "or set dataset.builder",
        ) from None
    return dict(loaded) if isinstance(loaded, datasets.DatasetDict) else {"train": loaded}


def _check_whole(path: str, pattern: str) -> None:
    """A truncated or garbage Parquet / Arrow file under path is named, with the fix (issue 27: an
    interrupted copy or download left a cut .parquet, and the message named neither file nor cause)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for f in sorted(Path(path).rglob(pattern)):
        if any(part.startswith(".") for part in f.relative_to(path).parts):
            continue
        try:
            if pattern == "*.parquet":
                pq.read_metadata(f)  # the footer only
            else:
                with pa.memory_map(str(f)) as source:
                    for _ in pa.ipc.open_stream(source):  # batch bounds against the file's length, no copy
                        pass
        except (pa.ArrowException, OSError) as e:
            raise StudyError(
                f"{f} is truncated or not {'a Parquet' if pattern == '*.parquet' else 'an Arrow'} file "
                f"({str(e).splitlines()[0][:160]})",
                key="dataset.path",
                fix="copy or download that file again whole (an interrupted copy leaves a cut file), or remove it",
            ) from None


@functools.lru_cache(maxsize=16)
def _hf_labels(builder: str, path: str, cache: str | None, split: str, label_key: str) -> np.ndarray | list:
    column = _hf_splits(builder, path, cache)[split].select_columns([label_key]).with_format("numpy")[label_key]
    values = np.asarray(column)
    return values.astype(np.int64) if values.dtype.kind in "iu" else values.tolist()


@functools.lru_cache(maxsize=8)
def image_column(builder: str, path: str, cache: str | None, split: str, image_key: str) -> Any:
    """The image column alone, undecoded ({'bytes', 'path'}), so decoding and resizing are ours."""
    datasets = require("datasets", "hf")
    ds = _hf_splits(builder, path, cache)[split].select_columns([image_key])
    return ds.cast_column(image_key, datasets.Image(decode=False))
