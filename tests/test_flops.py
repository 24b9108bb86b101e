"""FLOP counts: analytic ViT formula, published numbers, fvcore cross-check, fused-attention net."""

from __future__ import annotations

import logging

import pytest
import torch
from fvcore.nn import FlopCountAnalysis
from torch.utils.flop_counter import FlopCounterMode

from harness import flops, zoo
from harness.errors import StudyError


def vit_macs(ms: zoo.ModelSpec, image_size: int, in_chans: int, num_classes: int, attention: bool = True) -> int:
    """ViT forward MACs: patch embedding + depth x (12 N D^2 + 2 N^2 D) + head.

    Per block: qkv 3ND^2, projection ND^2, MLP 2 N D (mlp_ratio D) = 8ND^2 at ratio 4,
    attention scores N^2 D and weighted sum N^2 D; N = patches + class token.
    """
    p, d, ratio = ms.shape["patch"], ms.shape["width"], ms.shape["mlp_ratio"]
    patches = (image_size // p) ** 2
    n = patches + 1
    block = 4 * n * d * d + 2 * n * d * int(ratio * d) + (2 * n * n * d if attention else 0)
    return patches * p * p * in_chans * d + ms.shape["depth"] * block + d * num_classes


@pytest.mark.parametrize(
    "name,image_size",
    [
        ("vit@b16", 224),
        ("vit@b16", 384),
        ("vit@b16", 512),
        ("vit@b16", 1024),
        ("vit@xs", 28),
        ("vit@xs", 32),
        ("vit@s", 64),
    ],
)
def test_vit_matches_the_analytic_formula(name: str, image_size: int) -> None:
    ms = zoo.resolve(name)
    counted = flops.forward_gmacs(ms, image_size=image_size, in_chans=3, num_classes=1000) * 1e9
    assert counted == pytest.approx(vit_macs(ms, image_size, 3, 1000), rel=0.005)


def test_the_formula_test_would_catch_a_missing_attention_count() -> None:
    # At 1024 px ViT-B/16 has N = 4097 tokens: 2N^2 D is 47% of each block (2N / (12D + 2N)),
    # so a counter that skips attention (fvcore on fused sdpa) is off by far more than 0.5%.
    ms = zoo.resolve("vit@b16")
    full, no_attention = vit_macs(ms, 1024, 3, 1000), vit_macs(ms, 1024, 3, 1000, attention=False)
    assert 1 - no_attention / full > 0.4
    counted = flops.forward_gmacs(ms, image_size=1024, in_chans=3, num_classes=1000) * 1e9
    assert counted != pytest.approx(no_attention, rel=0.005)


def test_fused_attention_on_cpu_is_counted_by_the_safety_net() -> None:
    ms = zoo.resolve("vit@xs")  # fused attention is timm's default; 64 px -> 257 tokens
    model = zoo.build(ms, image_size=64, in_chans=3, num_classes=10).eval()
    assert any(getattr(m, "fused_attn", False) for m in model.modules())
    x = torch.randn(1, 3, 64, 64)
    with FlopCounterMode(display=False) as plain, torch.no_grad():
        model(x)
    meta = flops.forward_gmacs(ms, image_size=64, in_chans=3, num_classes=10) * 1e9
    assert plain.get_total_flops() / 2 < 0.7 * meta  # torch alone misses the CPU sdpa kernel
    assert flops.count_macs(model, x) == meta


def test_vit_l16_at_1024_px_counts_on_meta_and_is_cached() -> None:
    ms = zoo.resolve("vit@l16")
    hits = flops._gmacs.cache_info().hits
    first = flops.forward_gmacs(ms, image_size=1024, in_chans=3, num_classes=1000)
    again = flops.forward_gmacs(zoo.resolve("vit@l16"), image_size=1024, in_chans=3, num_classes=1000)
    assert first == again and flops._gmacs.cache_info().hits == hits + 1
    assert first * 1e9 == pytest.approx(vit_macs(ms, 1024, 3, 1000), rel=0.005)


@pytest.mark.parametrize(
    "name,published",
    [
        ("resnet@50", 4.1),  # timm's benchmark tables (He et al. 2016 print 3.8, a leaner count)
        ("vit@b16", 17.6),  # timm's benchmark tables; Swin (Liu et al. 2021) Table 1: DeiT-B 17.5G
        ("convnext@tiny", 4.5),  # Liu et al. 2022, "A ConvNet for the 2020s", Table 1: 4.5G
        ("mixer@b16", 12.6),  # timm's benchmark tables
    ],
)
def test_published_gmacs_at_224(name: str, published: float) -> None:
    counted = flops.forward_gmacs(zoo.resolve(name), image_size=224, in_chans=3, num_classes=1000)
    assert counted == pytest.approx(published, rel=0.02)


@pytest.mark.parametrize("family", [f for f in zoo.families() if not zoo.is_video(f)])  # video: tests/test_video_models.py
def test_agrees_with_fvcore_on_cpu(family: str) -> None:
    # fvcore also counts norms and pooling (0.4-3.2% here); compare the operators both count.
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    ms = zoo.resolve(f"{family}@xs")
    model = flops.unfuse_attention(zoo.build(ms, image_size=28, in_chans=1, num_classes=10)).eval()
    analysis = FlopCountAnalysis(model, torch.randn(1, 1, 28, 28))
    by_op = analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).by_operator()
    extra = {"batch_norm", "layer_norm", "group_norm", "adaptive_avg_pool2d"}
    assert set(by_op) <= extra | {"conv", "linear", "matmul", "bmm", "addmm", "einsum"}
    theirs = sum(v for op, v in by_op.items() if op not in extra)
    ours = flops.forward_gmacs(ms, image_size=28, in_chans=1, num_classes=10) * 1e9
    assert ours == pytest.approx(theirs, rel=0.01)


def test_param_count_on_meta_equals_a_real_build() -> None:
    ms = zoo.resolve("mixer@xs")  # token MLP size depends on the image: 49 vs 64 tokens
    for image_size in (28, 32):
        real = zoo.build(ms, image_size=image_size, in_chans=1, num_classes=10)
        meta = flops.param_count(ms, image_size=image_size, in_chans=1, num_classes=10)
        assert meta == flops.count_params(real)


def test_counting_rejects_impossible_inputs() -> None:
    with pytest.raises(StudyError, match="patch size 4"):
        flops.forward_gmacs(zoo.resolve("vit@xs"), image_size=30, in_chans=1, num_classes=10)


def test_one_training_flops_function() -> None:
    """Training compute is counted in flops_train (forward + backward per model), never assumed as 3x
    forward here: --dry-run and the rows use the same function (tests/test_backends.py checks the sums)."""
    assert not hasattr(flops, "train_flops")
