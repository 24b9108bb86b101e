"""The registered models' shapes and counts (`harness models`): one row per model that takes the
given input, with its exact parameters and forward GMACs. Imports zoo and flops, never data."""

from __future__ import annotations

from harness import flops, zoo
from harness.errors import StudyError, did_you_mean

# One rule for the input a count assumes, in `models`, `profile` and `plan` (issue 26), the same rule as
# the default image size: a model counts with the input its size was made for. A published ImageNet
# config (vit@b16, resnet@50, ...: 224 px) counts 3 channels and 1000 classes, so `harness models` shows
# timm's and the papers' numbers to the unit (vit@b16 86,567,656); a small size (28 px) counts
# Fashion-MNIST's 1 channel and 10 classes, the quickstart's and most shipped studies' data, so its count
# equals the `params` column such a study writes (at 0.1M parameters a 1000-class head would be most of
# the model, and `plan` would size its ladders wrong). --in-chans / --num-classes override both.
IMAGENET_DIMS = (3, 1000)
SMALL_DIMS = COUNT_CHANNELS, COUNT_CLASSES = (1, 10)


def count_dims(ms: zoo.ModelSpec, in_chans: int | None = None, num_classes: int | None = None) -> tuple[int, int]:
    """(channels, classes) to count `ms` with: the given ones, else those its size was made for."""
    chans, classes = IMAGENET_DIMS if ms.canonical else SMALL_DIMS
    return (in_chans or chans, num_classes or classes)


def dims_help(what: str) -> str:
    """The help text of --in-chans / --num-classes (the same in every counting verb)."""
    i = 0 if what == "channels" else 1
    return (
        f"input {what} to count with (default: {IMAGENET_DIMS[i]} for published ImageNet configs, as timm and the papers "
        f"count; {SMALL_DIMS[i]} (Fashion-MNIST) for small sizes, as a default study counts)"
    )


EXAMPLE = {"image_size": 28, "in_chans": 3, "num_classes": 10, "frames": 16}  # the fix each flag's error suggests


def check_dims(family: str | None, image_size: int | None, in_chans: int, num_classes: int, frames: int | None) -> None:
    """Refuse a family or input the table cannot be built for (StudyError naming the flag)."""
    if family and family not in zoo.families():
        raise StudyError(f"unknown family '{family}'", key="--family", fix=did_you_mean(family, zoo.families()))
    given = {"image_size": image_size, "in_chans": in_chans, "num_classes": num_classes, "frames": frames}
    for key, value in given.items():  # 0 would silently mean "the default" (image size) or list nothing
        if value is not None and value < 1:
            flag = "--" + key.replace("_", "-")
            raise StudyError(f"must be a positive integer, got {value}", key=flag, fix=f"e.g. {flag} {EXAMPLE[key]}")
    if frames and family and not zoo.is_video(family):
        videos = [f for f in zoo.families() if zoo.is_video(f)]
        raise StudyError(
            f"{family} is an image family; --frames lists video families",
            key="--frames",
            fix=f"drop --frames, or --family {' or '.join(videos)}",
        )


def model_rows(
    family: str | None = None,
    *,
    image_size: int | None = None,
    in_chans: int | None = None,
    num_classes: int | None = None,
    frames: int | None = None,
) -> list[dict]:
    """{name, family, size, image_size, params, fwd_gmacs} (+ frames for video models) per model of
    `family` (all without) that takes the input; `frames`: the video families at that clip length,
    without it every family, video ones at zoo.DEFAULT_FRAMES. Raises StudyError when none does."""
    check_dims(family, image_size, in_chans, num_classes, frames)
    rows, misfits = [], []
    for ms in (m for m in zoo.list_models(family) if zoo.is_video(m) or not frames):
        size = image_size or zoo.default_image_size(ms)
        clip = (frames or zoo.DEFAULT_FRAMES) if zoo.is_video(ms) else 0
        chans, classes = count_dims(ms, in_chans, num_classes)
        dims = {"image_size": size, "in_chans": chans, "num_classes": classes, "frames": clip}
        try:
            zoo.check(ms, size, chans, clip)
        except StudyError as e:
            misfits.append(e)
            continue  # this model cannot take that resolution (or clip length): not listed
        rows.append(
            {
                "name": ms.name,
                "family": ms.family,
                "size": ms.size,
                "image_size": size,
                "in_chans": chans,
                "num_classes": classes,
                **({"frames": clip} if clip else {}),  # video models only: image rows keep their keys
                "params": flops.param_count(ms, **dims),
                "fwd_gmacs": round(flops.forward_gmacs(ms, **dims), 6),
            }
        )
    if not rows:  # an empty table with exit 0 reads as "no models": say why instead
        which = f"family '{family}'" if family else "the registry"
        flag, what = ("--frames", f"{frames} frames") if frames and not image_size else ("--image-size", f"{image_size} px input")
        raise StudyError(
            f"no model of {which} takes {what} ({misfits[0].what})",
            key=flag,
            fix=f"{misfits[0].fix} ('harness models' without {flag} lists each at its default)",
        )
    return rows
