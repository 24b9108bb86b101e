"""Config checks every dataset describer shares: unknown keys, the keys of datasets decoded from files,
and the size of a held-out test split."""

from __future__ import annotations

from harness.errors import StudyError, did_you_mean


def only_keys(cfg: dict, allowed: set[str]) -> None:
    for k in cfg:
        if k not in allowed:
            raise StudyError(
                f"unknown key '{k}' for dataset '{cfg['name']}'", key=f"dataset.{k}", fix=did_you_mean(str(k), allowed)
            )


def check_decoded(cfg: dict, defaults: dict, *, example: str) -> dict:
    """The keys every decoded-on-the-fly dataset shares (imagefolder, webdataset, hf): image_size,
    max_memory_mb, workers, channels, test_fraction; returns `cfg` over `defaults`."""
    if "image_size" not in cfg:
        raise StudyError(
            f"a {cfg['name']} dataset needs image_size, the size its images are decoded to",
            key="dataset.image_size",
            fix=f"e.g. {example} (shorter side resized, centre crop)",
        )
    full = {**defaults, **cfg}
    for key in ("image_size", "max_memory_mb", "workers"):  # max_memory_mb 0: always stream
        if not isinstance(full[key], int) or isinstance(full[key], bool) or full[key] < (key == "image_size"):
            raise StudyError(
                f"dataset.{key} must be a {'positive' if key == 'image_size' else 'non-negative'} integer, got {full[key]!r}",
                key=f"dataset.{key}",
                fix="use a whole number",
            )
    check_channels_and_test_fraction(full)
    return full


def check_channels_and_test_fraction(full: dict) -> None:
    """`channels` 1 or 3 and `test_fraction` in (0, 1): the keys of every dataset decoded from files."""
    if full["channels"] not in (1, 3):
        raise StudyError(
            f"dataset.channels must be 1 (grey) or 3 (RGB), got {full['channels']!r}",
            key="dataset.channels",
            fix="use channels: 3 or channels: 1",
        )
    tf = full["test_fraction"]
    if not isinstance(tf, (int, float)) or isinstance(tf, bool) or not 0 < tf < 1:
        raise StudyError(
            f"dataset.test_fraction must be between 0 and 1, got {tf!r}",
            key="dataset.test_fraction",
            fix="e.g. test_fraction: 0.2",
        )


def held_out(n: int, test_fraction: float) -> int:
    """How many of a class's n >= 2 items are test items when a dataset has no test split of its own:
    round(test_fraction * n), at least 1 and fewer than n. `describe` counts the split sizes with it;
    the readers pick which items (a fixed-seed shuffle per class, harness/data/readers.py)."""
    return min(max(1, round(test_fraction * n)), n - 1)
