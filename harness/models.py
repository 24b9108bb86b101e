"""The registered models' shapes and counts (`harness models`): one row per model that takes the
given input, with its exact parameters and forward GMACs. Imports zoo and flops, never data."""

from __future__ import annotations

from harness import flops, zoo
from harness.errors import StudyError, did_you_mean

# One input for counting across `models`, `profile` and `plan` (issue 26): Fashion-MNIST's 1 channel and
# 10 classes, the quickstart's and most shipped studies' data, so a count equals the `params` column a
# default study writes and `plan` matches the models such a study trains. ImageNet counts (timm's and
# the papers': vit@b16 86.6M) are one flag pair away: --in-chans 3 --num-classes 1000.
COUNT_CHANNELS, COUNT_CLASSES = 1, 10


def dims_help(what: str) -> str:
    """The help text of --in-chans / --num-classes (the same in every counting verb)."""
    value = COUNT_CHANNELS if what == "channels" else COUNT_CLASSES
    return f"input {what} to count with (default {value}: Fashion-MNIST's, as a default study counts; ImageNet / timm: --in-chans 3 --num-classes 1000)"


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
    in_chans: int = COUNT_CHANNELS,
    num_classes: int = COUNT_CLASSES,
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
        dims = {"image_size": size, "in_chans": in_chans, "num_classes": num_classes, "frames": clip}
        try:
            zoo.check(ms, size, in_chans, clip)
        except StudyError as e:
            misfits.append(e)
            continue  # this model cannot take that resolution (or clip length): not listed
        rows.append(
            {
                "name": ms.name,
                "family": ms.family,
                "size": ms.size,
                "image_size": size,
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
