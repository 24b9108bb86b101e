"""Sharded and Hugging Face datasets read sample by sample: WebDataset tar shards and `datasets` on disk.

    dataset: {name: webdataset, urls: "shards/train-{000..009}.tar", test_urls: "shards/val-{00..01}.tar",
              image_key: jpg|png, label_key: cls, image_size: 64}
    dataset: {name: hf, path: ~/data/imagenet-1k, split: train, test_split: validation, image_size: 64}

One indexing pass lists every sample of a split, in a fixed order, with its label: for WebDataset
the shard, byte offset and size of the image member (tar headers only, grouped into samples by
webdataset's own `group_by_keys`, the rule its loaders use); for Hugging Face the row number. The
splits are then ordinary `data.Split`s whose images are a torch Dataset that reads one sample on
demand (`TarMembers`: one `os.pread` at the recorded offset; `HFRows`: one Arrow row), so the
index-based `data.subset` and `data.split_validation` apply unchanged (deterministic, nested,
the validation split disjoint from every subset) and DataLoader workers decode batches ahead of
the training step exactly as for a streamed ImageFolder (`data.BatchFetcher`). A split that fits
`max_memory_mb` is decoded once into memory instead; both paths give the same batches.

Identity vs location: a trial's id hashes what the data is (a fingerprint over the index: member
names, sizes and labels; decode size, channels, keys), never where it lives (`urls`, `path`,
`cache_dir`) or how it is read (`max_memory_mb`, `workers`), so moving the shards re-runs nothing.

Shards must be local, uncompressed tar files (random access by offset); the WebDataset index is
cached on disk per (shard paths, sizes, mtimes, keys) under $HARNESS_CACHE (default
~/.cache/harness), so a re-run does not rescan the shards.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import io
import json
import multiprocessing
import os
import re
import tarfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness import data
from harness.errors import StudyError, did_you_mean

COMMON_DEFAULTS = {"channels": 3, "test_fraction": 0.2, "max_memory_mb": 4096, "workers": 2}
WDS_DEFAULTS = {"image_key": "png|jpg|jpeg", "label_key": "cls", **COMMON_DEFAULTS}
HF_DEFAULTS = {"split": "train", "image_key": "image", "label_key": "label", "builder": "auto", **COMMON_DEFAULTS}
WDS_KEYS = {"name", "urls", "test_urls", "image_size", "num_classes", "fingerprint", *WDS_DEFAULTS}
HF_KEYS = {"name", "path", "test_split", "image_size", "num_classes", "cache_dir", "fingerprint", *HF_DEFAULTS}
HF_BUILDERS = ("auto", "disk", "parquet", "imagefolder")
SKIP_META = r"__[^/]*__($|/)"  # webdataset's tar_file_iterator skips these members (metadata, not samples)
INDEX_VERSION = 1  # bump when the cached index format changes


def require(module: str, extra: str) -> Any:
    """Import an optional package or say which extra installs it (harness.extras.require, keyed to dataset.name)."""
    from harness.extras import require as _require

    return _require(module, extra, key="dataset.name")


# ----------------------------------------------------------------------------- shared checks


def _check_common(cfg: dict, defaults: dict, example: str) -> dict:
    full = data.check_decoded(cfg, defaults, example=example)
    nc = full.get("num_classes")
    if nc is not None and (not isinstance(nc, int) or isinstance(nc, bool) or nc < 2):
        raise StudyError(
            f"dataset.num_classes must be an integer >= 2, got {nc!r}",
            key="dataset.num_classes",
            fix="give the number of classes, or leave it out to count them",
        )
    for key in ("image_key", "label_key"):
        if not isinstance(full[key], str) or not full[key]:
            raise StudyError(f"dataset.{key} must be a name, got {full[key]!r}", key=f"dataset.{key}", fix="e.g. cls")
    return full


@dataclass(frozen=True)
class Labels:
    train: np.ndarray  # int64 class ids
    test: np.ndarray
    num_classes: int
    names: tuple[str, ...]  # class names where the labels are names (else empty)


def _as_ints(values: np.ndarray | list) -> np.ndarray | None:
    """The labels as int64 if every one is an integer or integer text, else None (vectorised:
    ImageNet's 1.28M labels are parsed at every describe)."""
    arr = np.asarray(values) if len(values) else np.zeros(0, dtype=np.int64)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    if arr.dtype.kind != "U":
        return None
    try:
        return np.char.strip(arr).astype(np.int64)
    except ValueError:
        return None


def _class_ids(train: np.ndarray | list, test: np.ndarray | list, num_classes: int | None, where: str) -> Labels:
    """Integer labels stay as they are (ImageNet's `cls` 0..999); text labels become the index
    of their name among the sorted training names. num_classes: given, or max id + 1."""

    parts = [np.asarray(x) for x in (train, test) if len(x)]
    ids = _as_ints(np.concatenate(parts) if len(parts) > 1 else parts[0] if parts else [])
    if ids is not None:
        if len(ids) and ids.min() < 0:
            raise StudyError(
                f"{where} has negative labels ({int(ids.min())}: unlabelled samples, as in ImageNet's test split)",
                key="dataset.label_key",
                fix="use a labelled split for testing (e.g. test_split: validation, or test_urls: the validation shards)",
            )
        found = int(ids.max()) + 1 if len(ids) else 0
        if num_classes is not None and num_classes < found:
            raise StudyError(
                f"{where} has label {found - 1}, beyond num_classes {num_classes}",
                key="dataset.num_classes",
                fix=f"set num_classes: {found} or more, or leave it out",
            )
        n, names = num_classes or found, ()
    else:
        names = tuple(sorted({str(v).strip() for v in train}))
        lookup = {c: i for i, c in enumerate(names)}
        unknown = sorted({str(v).strip() for v in test} - set(names))
        if unknown:
            raise StudyError(
                f"{where}: test labels {', '.join(unknown[:5])} never occur in the training split",
                key="dataset.label_key",
                fix="use matching splits, or integer labels",
            )
        if num_classes is not None and num_classes != len(names):
            raise StudyError(
                f"{where} has {len(names)} class names, num_classes says {num_classes}",
                key="dataset.num_classes",
                fix=f"set num_classes: {len(names)} or leave it out",
            )
        ids = np.asarray([lookup[str(v).strip()] for v in [*train, *test]], dtype=np.int64)
        n = len(names)
    if n < 2:
        raise StudyError(
            f"{where} has {n} class; a classification dataset needs at least 2",
            key="dataset.label_key",
            fix="check label_key names the label field",
        )
    return Labels(ids[: len(train)], ids[len(train) :], n, names)


def _held_out(labels: np.ndarray, test_fraction: float) -> np.ndarray:
    """Boolean mask of the test samples when a dataset has no test split of its own: per class a
    fixed-seed shuffle (data.SPLIT_SEED, as for a flat ImageFolder) and its first
    round(test_fraction * n) samples (>= 1, < n)."""
    mask = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if len(members) < 2:
            raise StudyError(
                f"class {c} has {len(members)} sample; test_fraction needs at least 2 per class",
                key="dataset.test_fraction",
                fix="give a test split (test_urls / test_split) or more samples",
            )
        g = torch.Generator().manual_seed(data.SPLIT_SEED * 1_000_003 + int(c))
        order = torch.randperm(len(members), generator=g).numpy()
        k = min(max(1, round(test_fraction * len(members))), len(members) - 1)
        mask[members[order[:k]]] = True
    return mask


def _split_rows(labels: Labels, has_test: bool, test_fraction: float) -> tuple[np.ndarray, ...]:
    """(train rows, their labels, test rows, their labels): rows index the training source unless
    the dataset has its own test split, whose rows are then all its samples."""
    if has_test:
        return np.arange(len(labels.train)), labels.train, np.arange(len(labels.test)), labels.test
    held = _held_out(labels.train, test_fraction)
    train_rows, test_rows = np.flatnonzero(~held), np.flatnonzero(held)
    return train_rows, labels.train[train_rows], test_rows, labels.train[test_rows]


def _load_splits(info: data.DataInfo, train: data.Split, test: data.Split) -> data.Dataset:
    """In memory if both splits fit max_memory_mb, else streamed; mean/std from a fixed subset."""
    need_mb = (len(train) + len(test)) * info.in_chans * info.native_size**2 / 2**20
    if need_mb <= info.source["max_memory_mb"]:
        train, test = data._decode_all(train), data._decode_all(test)
    mean, std = data._channel_stats(data.subset(train, data.STATS_SAMPLE, seed=0))
    return data.Dataset(info, train, test, mean, std)


def _files_digest(paths: list[str], root: str) -> hashlib._Hash:
    """sha256 over (path relative to root, size) of each file: what the data is, not where it lives."""
    digest = hashlib.sha256()
    for p in sorted(paths):
        digest.update(f"{os.path.relpath(p, root)}\t{os.path.getsize(p)}\n".encode())
    return digest


def _check_fingerprint(cfg: dict, found: str, where: str, key: str) -> None:
    if "fingerprint" in cfg and cfg["fingerprint"] != found:
        raise StudyError(
            f"the data at {where} changed since this study was planned (fingerprint {found}, expected {cfg['fingerprint']})",
            key=key,
            fix="restore the data, or run the study again under a new name (its trial ids change)",
        )


def cache_dir() -> Path:
    return Path(os.environ.get("HARNESS_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache") / "harness").expanduser()


# ----------------------------------------------------------------------------- WebDataset


@dataclass(frozen=True)
class ShardIndex:
    shards: tuple[str, ...]  # absolute paths, in url order
    shard: np.ndarray  # int32 [N]: which shard holds sample i's image
    offset: np.ndarray  # int64 [N]: byte offset of the image member's data in that shard
    size: np.ndarray  # int64 [N]: its length in bytes
    labels: np.ndarray  # str [N]: the label member's text
    digest: str  # sha256 over (shard relative to the shards' common folder, key, image size, label)


def expand_urls(urls: Any, key: str) -> list[str]:
    """Brace patterns (webdataset's own expansion) and globs to existing local shard paths."""
    wds = require("webdataset", "webdataset")
    if isinstance(urls, str):
        urls = [urls]
    if not isinstance(urls, list) or not urls or not all(isinstance(u, str) and u for u in urls):
        raise StudyError(
            f"dataset.{key} must be a shard path pattern or a list of them, got {urls!r}",
            key=f"dataset.{key}",
            fix='e.g. urls: "shards/train-{000..009}.tar"',
        )
    paths: list[str] = []
    for url in (u for pattern in urls for u in wds.shardlists.expand_urls(pattern)):
        if "://" in url or url.startswith("pipe:"):
            raise StudyError(
                f"shard {url} is not a local file; samples are read by offset, which needs local tar files",
                key=f"dataset.{key}",
                fix="copy the shards to a local or network file system and give their paths",
            )
        url = os.path.expanduser(url)
        matched = sorted(glob.glob(url)) if glob.has_magic(url) else [url]
        missing = [p for p in matched if not os.path.isfile(p)]
        if missing or not matched:
            raise StudyError(
                f"no shard file {missing[0] if missing else url} (from dataset.{key} {urls if len(urls) > 1 else urls[0]!r})",
                key=f"dataset.{key}",
                fix="check the path and the {000..009} range; relative paths start in the current directory",
            )
        paths.extend(os.path.abspath(p) for p in matched)
    return paths


def _describe_webdataset(cfg: dict) -> data.DataInfo:
    data._only_keys(cfg, WDS_KEYS)
    if not cfg.get("urls"):
        raise StudyError(
            "a webdataset dataset needs urls, the pattern of its training shards",
            key="dataset.urls",
            fix='e.g. dataset: {name: webdataset, urls: "shards/train-{000..009}.tar", image_size: 64}',
        )
    full = _check_common(cfg, WDS_DEFAULTS, 'dataset: {name: webdataset, urls: "shards/train-{000..009}.tar", image_size: 64}')
    image_keys = _image_keys(full["image_key"])
    label_key = full["label_key"].lower()
    train_idx = _index_shards(tuple(expand_urls(cfg["urls"], "urls")), image_keys, label_key)
    test_idx = (
        _index_shards(tuple(expand_urls(cfg["test_urls"], "test_urls")), image_keys, label_key) if "test_urls" in cfg else None
    )
    where = f"dataset.urls {cfg['urls']!r}"
    labels = _class_ids(train_idx.labels, test_idx.labels if test_idx else [], full.get("num_classes"), where)
    digest = hashlib.sha256(f"{train_idx.digest}\t{test_idx.digest if test_idx else ''}".encode()).hexdigest()[:12]
    _check_fingerprint(cfg, digest, where, "dataset.urls")
    train_rows, train_y, test_rows, test_y = _split_rows(labels, test_idx is not None, float(full["test_fraction"]))
    config = {
        "name": "webdataset",
        "image_size": full["image_size"],
        "channels": full["channels"],
        "image_key": "|".join(image_keys),
        "label_key": label_key,
        "num_classes": labels.num_classes,
        **({"test_fraction": float(full["test_fraction"])} if test_idx is None else {}),
        "fingerprint": digest,
    }
    source = {
        "train_index": (train_idx, train_rows, train_y),
        "test_index": (test_idx or train_idx, test_rows, test_y),
        "classes": list(labels.names),
        "max_memory_mb": full["max_memory_mb"],
        "workers": full["workers"],
    }
    return data.DataInfo(
        "webdataset", labels.num_classes, full["channels"], full["image_size"], len(train_rows), len(test_rows), config, source
    )


def _image_keys(spec: str) -> tuple[str, ...]:
    """'png|jpg;jpeg' -> ('png', 'jpg', 'jpeg'): the first present in a sample is its image (webdataset
    writes alternatives with ';', the brief's '|' is accepted too)."""
    return tuple(k.strip().lower() for k in spec.replace(";", "|").split("|") if k.strip())


def _index_shards(paths: tuple[str, ...], image_keys: tuple[str, ...], label_key: str) -> ShardIndex:
    """The index of these shards: from memory, from the on-disk cache, or by one pass over the tar headers."""
    stats = [(p, os.path.getsize(p), os.stat(p).st_mtime_ns) for p in paths]
    key = hashlib.sha256(json.dumps([INDEX_VERSION, stats, image_keys, label_key]).encode()).hexdigest()[:20]
    return _index_cached(key, paths, image_keys, label_key)


@functools.lru_cache(maxsize=8)
def _index_cached(key: str, paths: tuple[str, ...], image_keys: tuple[str, ...], label_key: str) -> ShardIndex:
    cached = cache_dir() / "webdataset" / f"{key}.npz"
    if cached.is_file():
        with np.load(cached, allow_pickle=False) as z:
            return ShardIndex(paths, z["shard"], z["offset"], z["size"], z["labels"], str(z["digest"]))
    index = _scan_shards(paths, image_keys, label_key)
    try:  # a cache that cannot be written costs a rescan next time, nothing else
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, shard=index.shard, offset=index.offset, size=index.size, labels=index.labels, digest=index.digest)
        os.replace(tmp, cached)
    except OSError as e:
        warnings.warn(
            f"webdataset index not cached in {cached.parent} ({e}); set HARNESS_CACHE to a writable folder", stacklevel=2
        )
    return index


PARALLEL_SHARDS = 16  # from this many shards on, the header pass runs in a process per core


def _scan_shards(paths: tuple[str, ...], image_keys: tuple[str, ...], label_key: str) -> ShardIndex:
    """One pass over the tar headers (member data is skipped by seeking; only label members are
    read), grouped into samples by webdataset's `group_by_keys`. Python's tarfile parses about
    15k members/s per core, so many shards are scanned in parallel (ImageNet: 2.6M members)."""
    root = os.path.commonpath([os.path.dirname(p) for p in paths])
    jobs = [(p, os.path.relpath(p, root), image_keys, label_key) for p in paths]
    procs = min(len(paths), os.cpu_count() or 1)
    if len(paths) >= PARALLEL_SHARDS and procs > 1 and "fork" in multiprocessing.get_all_start_methods():
        from concurrent.futures import ProcessPoolExecutor

        # fork, as torch's DataLoader workers do: the children run only tarfile/numpy/hashlib code
        # (no torch op, no lock a parent thread could hold); spawn would re-run an unguarded
        # user script's __main__ and re-import torch in every child
        with ProcessPoolExecutor(procs, mp_context=multiprocessing.get_context("fork")) as pool:
            results = list(pool.map(_scan_one, *zip(*jobs), chunksize=max(1, len(jobs) // (4 * procs))))
    else:
        results = [_scan_one(*job) for job in jobs]
    for r in results:
        if isinstance(r[0], str):  # ("error", what, key, fix)
            raise StudyError(r[1], key=r[2], fix=r[3])
    if not any(len(r[0]) for r in results):
        raise StudyError(
            f"the shards {paths[0]}{' ...' if len(paths) > 1 else ''} hold no samples",
            key="dataset.urls",
            fix="check that they are WebDataset tar files (members named KEY.EXT)",
        )
    return ShardIndex(
        paths,
        np.concatenate([np.full(len(r[0]), s, dtype=np.int32) for s, r in enumerate(results)]),
        np.concatenate([r[0] for r in results]),
        np.concatenate([r[1] for r in results]),
        np.concatenate([r[2] for r in results]),
        hashlib.sha256("\n".join(r[3] for r in results).encode()).hexdigest(),
    )


def _scan_one(path: str, rel: str, image_keys: tuple[str, ...], label_key: str) -> tuple:
    """(offsets, sizes, labels, digest) of one shard's samples, or ('error', what, key, fix) (a
    StudyError does not survive pickling from a worker process with its key and fix)."""
    wds = require("webdataset", "webdataset")
    offset, size, labels = [], [], []
    digest = hashlib.sha256()
    try:
        for sample in wds.tariterators.group_by_keys(_members(path, label_key)):
            image = next((k for k in image_keys if k in sample), None)
            if image is None or label_key not in sample:
                missing = f"image key {'|'.join(image_keys)}" if image is None else f"label key {label_key}"
                fields = [k for k in sample if not k.startswith("__")]
                candidates = [k for k in fields if k != label_key] if image is None else fields
                return (
                    "error",
                    f"sample {sample['__key__']} in {path} has no {missing} (its fields: {', '.join(fields)})",
                    "dataset.image_key" if image is None else "dataset.label_key",
                    f"set {'image_key' if image is None else 'label_key'} to one of: {', '.join(candidates)}",
                )
            label = sample[label_key].decode("utf-8", "replace").strip()
            offset.append(sample[image][0])
            size.append(sample[image][1])
            labels.append(label)
            digest.update(f"{rel}\t{sample['__key__']}\t{sample[image][1]}\t{label}\n".encode())
    except StudyError as e:
        return ("error", e.what, e.key, e.fix)
    return (
        np.asarray(offset, dtype=np.int64),
        np.asarray(size, dtype=np.int64),
        np.asarray(labels, dtype=str),
        digest.hexdigest(),
    )


def _members(path: str, label_key: str) -> Iterator[dict]:
    """Tar members as webdataset's tar_file_iterator yields them (same skipping of __meta__ files),
    except that a member's data is its (offset, size) unless it is the label, which is read."""
    wds = require("webdataset", "webdataset")
    try:
        tar = tarfile.open(path, "r:")  # uncompressed only: members are read by offset later
    except tarfile.ReadError as e:
        raise StudyError(
            f"{path} is not an uncompressed tar file ({e})",
            key="dataset.urls",
            fix="unpack compressed shards (e.g. gunzip *.tar.gz) and point urls at the .tar files",
        ) from None
    with tar:
        for m in tar:
            name = m.name
            if not m.isreg() or re.match(SKIP_META, name):
                continue
            suffix = wds.tariterators.base_plus_ext(name)[1]
            is_label = suffix is not None and suffix.lower() == label_key
            value = tar.extractfile(m).read() if is_label else (m.offset_data, m.size)
            yield {"fname": name, "data": value, "__url__": path}
    yield {}  # end of shard: samples never span shards (webdataset's eof marker)


_FDS: dict[str, int] = {}  # shard path -> file descriptor, per process (os.pread: no shared file offset)


class TarMembers(torch.utils.data.Dataset):
    """Image members of tar shards, read by offset and decoded on demand to uint8 [C, S, S]."""

    def __init__(self, index: ShardIndex, rows: np.ndarray, image_size: int, channels: int, workers: int) -> None:
        self.index, self.rows = index, np.asarray(rows, dtype=np.int64)
        self.image_size, self.channels, self.workers = image_size, channels, workers

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> torch.Tensor:
        r = self.rows[i]
        path = self.index.shards[self.index.shard[r]]
        fd = _FDS.get(path)
        if fd is None:
            fd = _FDS[path] = os.open(path, os.O_RDONLY)
        raw = os.pread(fd, int(self.index.size[r]), int(self.index.offset[r]))
        return data.decode_image(io.BytesIO(raw), self.image_size, self.channels)

    def take(self, idx: torch.Tensor) -> TarMembers:
        return TarMembers(self.index, self.rows[idx.numpy()], self.image_size, self.channels, self.workers)


def _load_webdataset(info: data.DataInfo) -> data.Dataset:
    src = info.source

    def split(key: str) -> data.Split:
        index, rows, labels = src[key]
        members = TarMembers(index, np.asarray(rows, dtype=np.int64), info.native_size, info.in_chans, src["workers"])
        return data.Split(members, torch.as_tensor(labels, dtype=torch.long))

    return _load_splits(info, split("train_index"), split("test_index"))


# ----------------------------------------------------------------------------- Hugging Face datasets


def _describe_hf(cfg: dict) -> data.DataInfo:
    data._only_keys(cfg, HF_KEYS)
    full = _check_common(cfg, HF_DEFAULTS, "dataset: {name: hf, path: ~/data/imagenet-1k, image_size: 64}")
    path, builder, cache = _hf_location(cfg, full)
    splits = _hf_splits(builder, str(path), cache)
    test_split = cfg.get("test_split") or next((s for s in ("test", "validation") if s in splits), None)
    features = _hf_check(path, splits, full["split"], test_split, full["image_key"], full["label_key"])
    where = f"dataset.path {path}"
    read = functools.partial(_hf_labels, builder, str(path), cache, label_key=full["label_key"])
    labels = _class_ids(read(full["split"]), read(test_split) if test_split else [], full.get("num_classes"), where)
    names = tuple(getattr(features[full["label_key"]], "names", None) or labels.names)  # a ClassLabel's names
    num_classes = labels.num_classes if "num_classes" in cfg else max(labels.num_classes, len(names))
    fingerprint = _hf_fingerprint(path, {full["split"]: labels.train, test_split: labels.test})
    _check_fingerprint(cfg, fingerprint, where, "dataset.path")
    train_rows, train_y, test_rows, test_y = _split_rows(labels, test_split is not None, float(full["test_fraction"]))
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
    source = {
        "train_rows": ((*table, full["split"]), train_rows, train_y),
        "test_rows": ((*table, test_split or full["split"]), test_rows, test_y),
        "image_key": full["image_key"],
        "classes": list(names),
        "max_memory_mb": full["max_memory_mb"],
        "workers": full["workers"],
    }
    return data.DataInfo("hf", num_classes, full["channels"], full["image_size"], len(train_rows), len(test_rows), config, source)


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
    digest = _files_digest(files, str(path))
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
    try:
        if builder == "disk":
            loaded = datasets.load_from_disk(path)
        else:  # the packaged builders read local files; no network (the Arrow copy goes to cache_dir)
            loaded = datasets.load_dataset(builder, data_dir=path, cache_dir=cache)
    except (FileNotFoundError, ValueError, OSError) as e:
        raise StudyError(
            f"Hugging Face datasets could not load {path} as {builder} ({type(e).__name__}: {str(e).splitlines()[0][:200]})",
            key="dataset.path",
            fix="point path at a save_to_disk folder, parquet files (train-*.parquet, test-*.parquet) or an image folder, "
            "or set dataset.builder",
        ) from None
    return dict(loaded) if isinstance(loaded, datasets.DatasetDict) else {"train": loaded}


@functools.lru_cache(maxsize=16)
def _hf_labels(builder: str, path: str, cache: str | None, split: str, label_key: str) -> np.ndarray | list:
    column = _hf_splits(builder, path, cache)[split].select_columns([label_key]).with_format("numpy")[label_key]
    values = np.asarray(column)
    return values.astype(np.int64) if values.dtype.kind in "iu" else values.tolist()


@functools.lru_cache(maxsize=8)
def _hf_images(builder: str, path: str, cache: str | None, split: str, image_key: str) -> Any:
    """The image column alone, undecoded ({'bytes', 'path'}), so decoding and resizing are ours."""
    datasets = require("datasets", "hf")
    ds = _hf_splits(builder, path, cache)[split].select_columns([image_key])
    return ds.cast_column(image_key, datasets.Image(decode=False))


class HFRows(torch.utils.data.Dataset):
    """Rows of a Hugging Face split, their image decoded on demand to uint8 [C, S, S]. Pickles as
    (table, rows): each DataLoader worker opens the memory-mapped Arrow files itself."""

    def __init__(self, table: tuple, image_key: str, rows: np.ndarray, image_size: int, channels: int, workers: int) -> None:
        self.table, self.image_key, self.rows = table, image_key, np.asarray(rows, dtype=np.int64)
        self.image_size, self.channels, self.workers = image_size, channels, workers

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> torch.Tensor:
        value = _hf_images(*self.table, self.image_key)[int(self.rows[i])][self.image_key]
        src = io.BytesIO(value["bytes"]) if value.get("bytes") is not None else value["path"]
        return data.decode_image(src, self.image_size, self.channels)

    def take(self, idx: torch.Tensor) -> HFRows:
        return HFRows(self.table, self.image_key, self.rows[idx.numpy()], self.image_size, self.channels, self.workers)


def _load_hf(info: data.DataInfo) -> data.Dataset:
    src = info.source

    def split(key: str) -> data.Split:
        table, rows, labels = src[key]
        images = HFRows(tuple(table), src["image_key"], np.asarray(rows), info.native_size, info.in_chans, src["workers"])
        return data.Split(images, torch.as_tensor(labels, dtype=torch.long))

    return _load_splits(info, split("train_rows"), split("test_rows"))


DESCRIBERS = {"webdataset": _describe_webdataset, "hf": _describe_hf}
LOADERS = {"webdataset": _load_webdataset, "hf": _load_hf}
