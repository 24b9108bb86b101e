"""Zoo: every family x small size trains a step on CPU; ImageNet sizes match timm to the unit."""

from __future__ import annotations

import json
import math

import pytest
import timm
import torch

from harness import zoo
from harness.errors import StudyError
from harness.flops import count_params

SMALL = ["xs", "s", "m", "l"]
IMAGE_FAMILIES = [f for f in zoo.families() if not zoo.is_video(f)]  # video families: tests/test_video_models.py
LADDER = [(f, s) for f in IMAGE_FAMILIES for s in SMALL if s in zoo.sizes(f)]  # linear: xs only

# Parameters at 28 px, 1 channel, 10 classes (Fashion-MNIST): a changed table row shows up here.
LADDER_PARAMS = {
    "resnet@xs": 308_538,
    "resnet@s": 701_178,
    "resnet@m": 1_574_770,
    "resnet@l": 2_797_034,
    "vit@xs": 205_066,
    "vit@s": 678_730,
    "vit@m": 1_596_426,
    "vit@l": 3_574_282,
    "mixer@xs": 221_232,
    "mixer@s": 637_938,
    "mixer@m": 1_667_030,
    "mixer@l": 3_679_894,
    "convnext@xs": 306_074,
    "convnext@s": 827_994,
    "convnext@m": 1_813_378,
    "convnext@l": 3_179_690,
    "swin@xs": 144_856,
    "swin@s": 568_230,
    "swin@m": 1_362_886,
    "swin@l": 3_051_940,
    "mlp@xs": 203_530,
    "mlp@s": 669_706,
    "mlp@m": 1_863_690,
    "mlp@l": 3_581_962,
    "linear@xs": 7_850,  # (784 + 1) x 10
}

# Each ImageNet size and the timm model it must equal (224 px, 3 channels, 1000 classes).
TIMM_NAMES = {
    "resnet@18": "resnet18",
    "resnet@34": "resnet34",
    "resnet@50": "resnet50",
    "resnet@101": "resnet101",
    "vit@ti16": "vit_tiny_patch16_224",
    "vit@s16": "vit_small_patch16_224",
    "vit@b16": "vit_base_patch16_224",
    "vit@l16": "vit_large_patch16_224",
    "vit@h14": "vit_huge_patch14_224",
    "mixer@s16": "mixer_s16_224",
    "mixer@b16": "mixer_b16_224",
    "mixer@l16": "mixer_l16_224",
    "convnext@tiny": "convnext_tiny",
    "convnext@small": "convnext_small",
    "convnext@base": "convnext_base",
    "convnext@large": "convnext_large",
    "swin@tiny": "swin_tiny_patch4_window7_224",
    "swin@small": "swin_small_patch4_window7_224",
    "swin@base": "swin_base_patch4_window7_224",
    "swin@large": "swin_large_patch4_window7_224",
}


def train_step(model: torch.nn.Module, image_size: int, in_chans: int, num_classes: int) -> float:
    x = torch.randn(2, in_chans, image_size, image_size)
    y = torch.randint(0, num_classes, (2,))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    out = model(x)
    assert out.shape == (2, num_classes)
    loss = torch.nn.functional.cross_entropy(out, y)
    loss.backward()
    before = [p.detach().clone() for p in model.parameters()]
    opt.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))
    return loss.item()


@pytest.mark.parametrize("family,size", LADDER)
def test_every_small_size_trains_a_step(family: str, size: str) -> None:
    torch.manual_seed(0)
    ms = zoo.resolve(f"{family}@{size}")
    assert not ms.canonical and zoo.default_image_size(ms) == 28
    # Fashion-MNIST: 1 x 28 x 28, 10 classes
    model = zoo.build(ms, image_size=28, in_chans=1, num_classes=10)
    assert count_params(model) == LADDER_PARAMS[ms.name]
    assert math.isfinite(train_step(model, 28, 1, 10))
    # CIFAR-10: 3 x 32 x 32
    model = zoo.build(ms, image_size=32, in_chans=3, num_classes=10)
    assert math.isfinite(train_step(model, 32, 3, 10))


def test_ladder_is_every_family_times_every_small_size() -> None:
    assert sorted(LADDER_PARAMS) == sorted(f"{f}@{s}" for f, s in LADDER)
    assert zoo.sizes("linear") == ["xs"]  # its shape is fixed by the input: no ladder
    for family in (f for f in IMAGE_FAMILIES if f != "linear"):
        assert zoo.sizes(family)[:4] == SMALL
        # each rung grows the model: xs < s < m < l
        counts = [LADDER_PARAMS[f"{family}@{s}"] for s in SMALL]
        assert counts == sorted(counts) and 1e5 < counts[0] < 5e5 and counts[-1] < 5e6


@pytest.mark.parametrize("name", sorted(TIMM_NAMES))
def test_imagenet_sizes_match_timm_to_the_unit(name: str) -> None:
    ms = zoo.resolve(name)
    assert ms.canonical and zoo.default_image_size(ms) == 224
    with torch.device("meta"):
        ours = zoo.build(ms, image_size=224, in_chans=3, num_classes=1000)
        theirs = timm.create_model(TIMM_NAMES[name], num_classes=1000)
    assert type(ours) is type(theirs)
    assert count_params(ours) == count_params(theirs)


def test_every_imagenet_size_has_a_timm_reference() -> None:
    assert sorted(ms.name for ms in zoo.list_models() if ms.canonical and not zoo.is_video(ms)) == sorted(TIMM_NAMES)


def test_list_models_covers_the_registry_and_names_round_trip() -> None:
    models = zoo.list_models()
    assert len(models) == sum(len(zoo.sizes(f)) for f in zoo.families())
    assert len({ms.name for ms in models}) == len(models)
    for ms in models:
        assert zoo.resolve(ms.name) == ms
    assert [ms.size for ms in zoo.list_models("mixer")] == zoo.sizes("mixer")


def test_resolve_strings_and_dicts() -> None:
    ms = zoo.resolve("vit@xs")
    assert (ms.family, ms.size, ms.name, ms.canonical) == ("vit", "xs", "vit@xs", False)
    assert list(ms.shape) == ["patch", "width", "depth", "heads", "mlp_ratio"]
    assert zoo.resolve("resnet@50").shape == {"block": "bottleneck", "layers": [3, 4, 6, 3], "width": 64, "stem": "imagenet"}
    assert zoo.resolve({"family": "resnet", "size": 50}) == zoo.resolve("resnet@50")  # YAML int


def test_resolve_explicit_shape_fills_defaults_and_has_a_stable_name() -> None:
    ms = zoo.resolve({"family": "vit", "patch": 4, "width": 96, "depth": 5, "heads": 3})
    assert ms.size == "" and not ms.canonical
    assert ms.shape == {"patch": 4, "width": 96, "depth": 5, "heads": 3, "mlp_ratio": 4.0}
    assert ms.name == "vit{depth=5,heads=3,mlp_ratio=4,patch=4,width=96}"
    same = zoo.resolve({"heads": 3, "depth": 5, "mlp_ratio": 4, "family": "vit", "width": 96})
    assert same == ms and hash(same) == hash(ms)
    # a shape that is a table row (vit@s: width 96, depth 6, heads 3) is that row, named by its size
    assert zoo.resolve({"family": "vit", "patch": 4, "width": 96, "depth": 6, "heads": 3}) == zoo.resolve("vit@s")
    assert zoo.resolve({"family": "vit", "patch": 16, "width": 768, "depth": 12, "heads": 12}).canonical  # = vit@b16


def test_table_rows_are_distinct_so_a_shape_names_one_size() -> None:
    for family in zoo.families():
        rows = [json.dumps(zoo.resolve(f"{family}@{s}").shape, sort_keys=True) for s in zoo.sizes(family)]
        assert len(set(rows)) == len(rows), family


def test_identity_follows_the_shape_not_the_spelling() -> None:
    assert zoo.resolve("vit@xs").identity() == {"family": "vit", "size": "xs", "shape": zoo.resolve("vit@xs").shape}
    over = zoo.resolve({"family": "vit", "size": "xs", "depth": 8})
    assert over.name == "vit@xs{depth=8}" and over.identity()["size"] == ""  # display name kept, hashed as a shape
    assert over.identity() == zoo.resolve({"family": "vit", "depth": 8}).identity()
    cnx = zoo.resolve({"family": "convnext", "patch": 4, "depths": [1, 1, 1, 1], "dims": [8, 16, 32, 64]})
    assert cnx.name == "convnext{depths=[1,1,1,1],dims=[8,16,32,64],patch=4}"


def test_resolve_size_with_overrides() -> None:
    ms = zoo.resolve({"family": "vit", "size": "xs", "depth": 8})
    assert (ms.size, ms.name, ms.shape["depth"], ms.shape["width"]) == ("xs", "vit@xs{depth=8}", 8, 64)
    assert zoo.resolve({"family": "vit", "size": "xs", "depth": 4}) == zoo.resolve("vit@xs")  # no-op
    big = zoo.resolve({"family": "vit", "size": "b16", "depth": 6})
    assert not big.canonical and zoo.default_image_size(big) == 224


@pytest.mark.parametrize(
    "spec,hint",
    [
        ("vit@xss", "vit@xs"),
        ("vitt@xs", "vit"),
        ("convnext@t", "convnext@tiny"),
        ({"family": "mixr", "size": "xs"}, "mixer"),
        ({"family": "vit", "size": "xs", "dpeth": 8}, "depth"),
        ({"family": "resnet", "block": "bottlenek"}, "bottleneck"),
        ("resnet", "resnet@"),
        ("resnet@", "resnet@18"),
    ],
)
def test_resolve_unknown_names_suggest_the_nearest(spec: str | dict, hint: str) -> None:
    with pytest.raises(StudyError) as err:
        zoo.resolve(spec)
    assert hint in str(err.value) and not err.value.where and not err.value.key


def test_resolve_error_wording() -> None:
    with pytest.raises(StudyError, match=r"unknown size 'xss' for family 'vit' — did you mean vit@xs "):
        zoo.resolve("vit@xss")
    with pytest.raises(StudyError, match=r"did you mean convnext@tiny\? \(known"):
        zoo.resolve("convnext@t")  # not convnext@s, the small-ladder rung
    with pytest.raises(StudyError, match="names no size — add one: vit@xs, vit@s"):
        zoo.resolve("vit")


@pytest.mark.parametrize(
    "spec",
    [
        {"family": "vit", "depth": 0},
        {"family": "vit", "depth": 2.5},
        {"family": "vit", "depth": True},
        {"family": "vit", "mlp_ratio": -1},
        {"family": "convnext", "dims": [16, 32]},
        {"family": "resnet", "layers": "2,2,2,2"},
        {"family": "resnet", "width": 15},
        {"family": "vit", "width": 100, "heads": 3},
        {"size": "xs"},
        42,
    ],
)
def test_resolve_rejects_bad_values(spec: object) -> None:
    with pytest.raises(StudyError):
        zoo.resolve(spec)


def test_check_rejects_images_the_model_cannot_take() -> None:
    with pytest.raises(StudyError, match="not a multiple of the patch size 4") as err:
        zoo.check(zoo.resolve("vit@xs"), 30)
    assert "28 or 32" in err.value.fix
    with pytest.raises(StudyError, match="patch size 16"):
        zoo.check(zoo.resolve("mixer@b16"), 200, 3)
    with pytest.raises(StudyError, match="too small") as err:
        zoo.check(zoo.resolve("convnext@tiny"), 28)
    assert ">= 32" in err.value.fix and "convnext@xs" in err.value.fix
    with pytest.raises(StudyError, match="too small") as err:
        zoo.check(zoo.resolve("resnet@50"), 24)
    assert ">= 32" in err.value.fix and "resnet@xs" in err.value.fix
    with pytest.raises(StudyError, match=">= 16"):
        zoo.check(zoo.resolve("resnet@xs"), 8)
    with pytest.raises(StudyError, match="in_chans"):
        zoo.check(zoo.resolve("vit@xs"), 28, 0)


def test_check_rejects_heads_not_dividing_width() -> None:
    # a ModelSpec can be made without resolve(); check() still validates the shape
    bad = zoo.ModelSpec("vit", "", dict(zoo.resolve("vit@xs").shape, heads=3), "vit-bad", False)
    with pytest.raises(StudyError, match="heads 3 do not divide width 64") as err:
        zoo.check(bad, 28)
    assert "heads: 2" in err.value.fix or "heads: 4" in err.value.fix
    with pytest.raises(StudyError):
        zoo.build(bad, image_size=28, in_chans=1, num_classes=10)


def test_smallest_images_and_defaults() -> None:
    # small ConvNeXt: stride-2 stem + three 2x downsamples = 16 px; ImageNet stem needs 32 px
    for name, smallest in [("convnext@xs", 16), ("convnext@tiny", 32), ("resnet@xs", 16), ("resnet@18", 32)]:
        ms = zoo.resolve(name)
        zoo.check(ms, smallest)
        with pytest.raises(StudyError):
            zoo.check(ms, smallest - 1)
    with torch.device("meta"):
        zoo.build(zoo.resolve("convnext@xs"), image_size=16, in_chans=1, num_classes=10)(torch.empty(1, 1, 16, 16))
    assert zoo.default_image_size(zoo.resolve({"family": "vit", "patch": 16})) == 32
    assert zoo.default_image_size(zoo.resolve({"family": "convnext", "patch": 4})) == 32


# ----------------------------------------------------------------------------- Swin and baselines


@pytest.mark.parametrize(
    "name,published",
    [
        ("swin@tiny", 4.5),
        ("swin@small", 8.7),  # Liu et al. 2021, Table 1(a); Swin-B's 15.4G counts 15.43
    ],
)
def test_swin_gmacs_match_the_paper(name: str, published: float) -> None:
    from harness import flops  # attention is counted: windowed q @ k^T and attn @ v matmuls

    counted = flops.forward_gmacs(zoo.resolve(name), image_size=224, in_chans=3, num_classes=1000)
    assert counted == pytest.approx(published, rel=0.03)


def test_swin_windows_scale_with_the_grid_like_the_published_384_px_model() -> None:
    # windows 8: 224 / 4 / 8 = 7-token windows, 384 / 4 / 8 = 12 (swin_base_patch4_window12_384)
    with torch.device("meta"):
        ours = zoo.build(zoo.resolve("swin@base"), image_size=384, in_chans=3, num_classes=1000)
        theirs = timm.create_model("swin_base_patch4_window12_384", num_classes=1000)
    assert count_params(ours) == count_params(theirs)


def test_small_swin_has_shifted_windows_at_28_and_32_px() -> None:
    for image_size, window in ((28, 7), (32, 8)):  # patch 2: 14x14 / 16x16 tokens, 2x2 windows
        model = zoo.build(zoo.resolve("swin@xs"), image_size=image_size, in_chans=1, num_classes=10)
        first, second = model.layers[0].blocks
        assert first.window_size == second.window_size == (window, window)
        assert first.shift_size == (0, 0) and second.shift_size == (window // 2, window // 2)
        last = model.layers[-1].blocks[0]  # 4x4 tokens: one window, global attention, no shift
        assert last.window_size == (4, 4) and last.shift_size == (0, 0)


def test_swin_image_sizes() -> None:
    xs, tiny = zoo.resolve("swin@xs"), zoo.resolve("swin@tiny")
    for image_size in (8, 28, 32, 36, 64):
        zoo.check(xs, image_size)
    for image_size in (224, 256, 384):
        zoo.check(tiny, image_size)
    with pytest.raises(StudyError, match="15x15 patch grid does not split into 2x2 windows") as err:
        zoo.check(xs, 30)
    assert err.value.fix == "use image_size 28 or 32"
    with pytest.raises(StudyError, match="not a multiple of the patch size 4") as err:
        zoo.check(tiny, 250)
    assert err.value.fix == "use image_size 224 or 256"
    with pytest.raises(StudyError, match=">= 32"):
        zoo.check(tiny, 28)
    assert zoo.default_image_size(zoo.resolve({"family": "swin", "patch": 4, "windows": 4})) == 32


@pytest.mark.parametrize(
    "spec,match",
    [
        ({"family": "swin", "windows": 3}, "windows 3 cannot tile all 3 stages"),
        ({"family": "swin", "heads": [3, 2, 4]}, "heads\\[0\\] = 3 do not divide stage 1's 16 channels"),
        ({"family": "swin", "heads": [1, 2]}, "must list the same number of stages"),
        ({"family": "mlp", "depth": 0}, "positive integer"),
        ({"family": "linear", "width": 8}, "unknown shape key 'width'"),
    ],
)
def test_swin_and_baseline_shapes_are_validated(spec: dict, match: str) -> None:
    with pytest.raises(StudyError, match=match):
        zoo.resolve(spec)


def test_pixel_baselines() -> None:
    linear = zoo.build(zoo.resolve("linear@xs"), image_size=32, in_chans=3, num_classes=10)
    assert count_params(linear) == (3 * 32 * 32 + 1) * 10
    ms = zoo.resolve({"family": "mlp", "width": 100, "depth": 3})
    assert ms.name == "mlp{depth=3,width=100}"
    model = zoo.build(ms, image_size=28, in_chans=1, num_classes=10)
    assert count_params(model) == 785 * 100 + 2 * 101 * 100 + 101 * 10
    assert sum(isinstance(m, torch.nn.ReLU) for m in model) == 3
    with pytest.raises(StudyError, match="did you mean linear@xs"):
        zoo.resolve("linear@s")
