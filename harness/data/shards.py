"""WebDataset tar shards, indexed once (tar headers only) and read by offset (`TarMembers`,
harness/data/readers.py); see harness/data/streams.py."""

from __future__ import annotations

import functools
import glob
import hashlib
import json
import multiprocessing
import os
import re
import tarfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.data.checks import only_keys
from harness.data.info import DataInfo
from harness.data.streams import (
    COMMON_DEFAULTS,
    cache_dir,
    check_common,
    check_fingerprint,
    class_ids,
    require,
    split_sizes,
)
from harness.errors import StudyError

WDS_DEFAULTS = {"image_key": "png|jpg|jpeg", "label_key": "cls", **COMMON_DEFAULTS}
WDS_KEYS = {"name", "urls", "test_urls", "image_size", "num_classes", "fingerprint", *WDS_DEFAULTS}
SKIP_META = r"__[^/]*__($|/)"  # webdataset's tar_file_iterator skips these members (metadata, not samples)
INDEX_VERSION = 1  # bump when the cached index format changes


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


def _refuse_shared_shards(train: list[str], test: list[str]) -> None:
    """Test shards that are training shards measure test accuracy on training images (issue 27)."""
    seen = {os.path.realpath(u): u for u in train}
    shared = [u for u in test if os.path.realpath(u) in seen]
    if shared:
        raise StudyError(
            f"{len(shared)} of the {len(test)} test shards are training shards too (first: {shared[0]})",
            key="dataset.test_urls",
            fix="give test_urls shards the trials never train on, or leave test_urls out to hold out test_fraction",
        )


def describe_webdataset(cfg: dict) -> DataInfo:
    only_keys(cfg, WDS_KEYS)
    if not cfg.get("urls"):
        raise StudyError(
            "a webdataset dataset needs urls, the pattern of its training shards",
            key="dataset.urls",
            fix='e.g. dataset: {name: webdataset, urls: "shards/train-{000..009}.tar", image_size: 64}',
        )
    full = check_common(cfg, WDS_DEFAULTS, 'dataset: {name: webdataset, urls: "shards/train-{000..009}.tar", image_size: 64}')
    image_keys = _image_keys(full["image_key"])
    label_key = full["label_key"].lower()
    train_urls = expand_urls(cfg["urls"], "urls")
    if "test_urls" in cfg:
        _refuse_shared_shards(train_urls, expand_urls(cfg["test_urls"], "test_urls"))
    train_idx = _index_shards(tuple(train_urls), image_keys, label_key)
    test_idx = (
        _index_shards(tuple(expand_urls(cfg["test_urls"], "test_urls")), image_keys, label_key) if "test_urls" in cfg else None
    )
    where = f"dataset.urls {cfg['urls']!r}"
    labels = class_ids(train_idx.labels, test_idx.labels if test_idx else [], full.get("num_classes"), where)
    digest = hashlib.sha256(f"{train_idx.digest}\t{test_idx.digest if test_idx else ''}".encode()).hexdigest()[:12]
    check_fingerprint(cfg, digest, where, "dataset.urls")
    sizes = split_sizes(labels, test_idx is not None, float(full["test_fraction"]))
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
    source = {  # the rows of each split are picked when read (readers.load_webdataset: split_rows)
        "train_index": train_idx,
        "test_index": test_idx,  # None: test_fraction of the training shards is held out
        "labels": labels,
        "test_fraction": float(full["test_fraction"]),
        "classes": list(labels.names),
        "max_memory_mb": full["max_memory_mb"],
        "workers": full["workers"],
    }
    return DataInfo("webdataset", labels.num_classes, full["channels"], full["image_size"], *sizes, config, source)


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
        try:
            with np.load(cached, allow_pickle=False) as z:
                index = ShardIndex(paths, z["shard"], z["offset"], z["size"], z["labels"], str(z["digest"]))
            n = len(index.shard)
            if (
                n
                and {len(index.offset), len(index.size), len(index.labels)} == {n}
                and 0 <= index.shard.min() <= index.shard.max() < len(paths)
            ):
                return index  # else a well-formed file of another index (copied in, cut arrays): rescan
        except Exception:  # noqa: BLE001 - truncated or garbage (BadZipFile, KeyError, ...): a cache, so rescan and rewrite it
            pass
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
    last = None
    with tar:
        try:
            for m in tar:
                name = m.name
                if not m.isreg() or re.match(SKIP_META, name):
                    continue
                suffix = wds.tariterators.base_plus_ext(name)[1]
                is_label = suffix is not None and suffix.lower() == label_key
                value = tar.extractfile(m).read() if is_label else (m.offset_data, m.size)
                last = m
                yield {"fname": name, "data": value, "__url__": path}
        except (tarfile.TarError, EOFError, OSError) as e:
            raise _truncated(path, last, str(e) or type(e).__name__) from None
    size = os.path.getsize(path)
    if size % tarfile.BLOCKSIZE or (last is not None and last.offset_data + last.size > size):
        # a cut inside a header block ends tarfile's iteration quietly; one inside a member's data is past the end
        raise _truncated(path, last, f"{size:,} bytes, not whole {tarfile.BLOCKSIZE}-byte tar blocks")
    yield {}  # end of shard: samples never span shards (webdataset's eof marker)


def _truncated(path: str, last: tarfile.TarInfo | None, why: str) -> StudyError:
    after = f"in or after member {last.name}" if last is not None else "at its first member"
    return StudyError(
        f"shard {path} is truncated or corrupt {after} ({why})",
        key="dataset.urls",
        fix="copy or write the shard again whole (an interrupted copy or download leaves a cut tar file)",
    )
