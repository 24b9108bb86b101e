"""Parameters and forward MACs per image of zoo models (training compute: harness/flops_train.py).

Convention (fvcore's, and what papers print as "GFLOPs"): one multiply-accumulate = one FLOP.
Only matmuls and convolutions count, as in the papers' tables; fvcore also counts norms and
pooling, which add 0.4-3.2% on the small ladder at 28 px (ConvNeXt-xs most), 0.1-0.6% at 224 px.

Video models (3D convolutions, space-time attention) count the same way: FlopCounterMode's
convolution formula is N * prod(w.shape) * prod(output spatial dims) for any number of spatial
dims, so a Conv3d counts its T x H x W output, and ViViT's attention (timm's `Attention`,
unfused) is two bmm per block like ViT's. Checked against torchvision's table for r3d_18 and
r2plus1d_18 at 16x112x112 in tests/test_video_models.py (torchvision's "GFLOPS" there are MACs).

Counting path: torch's FlopCounterMode on the meta device, so no memory is allocated and no
arithmetic runs; ViT-L/16 at 1024 px counts in under a second. Two measured pitfalls it avoids:
- fvcore's FlopCountAnalysis cannot trace on the meta device (timm asserts on data), and on CPU it
  skips `aten::scaled_dot_product_attention`, timm's default fused attention: ViT-B/16 then reads
  16.87 instead of 17.58 GMACs, and at 1024 px it would miss ~47% of the blocks' work.
- With fused attention on CPU, sdpa runs as `_scaled_dot_product_flash_attention_for_cpu`, which
  FlopCounterMode has no formula for. We set every module's `fused_attn` to False, so attention is
  two explicit matmuls, and register a formula for the fused ops in case a module keeps them.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import torch
import torch.nn as nn
from torch.overrides import TorchFunctionMode
from torch.utils.flop_counter import FlopCounterMode

from harness.zoo import ModelSpec, build, check

aten = torch.ops.aten


def sdpa_flops(
    query_shape: torch.Size,
    key_shape: torch.Size,
    value_shape: torch.Size,
    *args: object,
    out_shape: object = None,
    **kwargs: object,
) -> int:
    """Softmax(q k^T) v: B*H*Nq*Nk*(Dqk + Dv) MACs, as 2 FLOPs per MAC like FlopCounterMode's own."""
    *batch, n_q, d_qk = query_shape
    n_k, d_v = key_shape[-2], value_shape[-1]
    return 2 * int(torch.Size(batch).numel()) * n_q * n_k * (d_qk + d_v)


# The safety net for modules that keep fused attention (the CompositeImplicit sdpa op normally
# decomposes before the counter sees it; its CPU kernel does not, and is counted as zero by torch).
FUSED_ATTENTION = {aten.scaled_dot_product_attention: sdpa_flops, aten._scaled_dot_product_flash_attention_for_cpu: sdpa_flops}


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, x: torch.Tensor) -> int:
    """MACs of one forward pass of `model` on `x` (the whole batch), on any device incl. meta."""
    with FlopCounterMode(display=False, custom_mapping=FUSED_ATTENTION) as counter, torch.no_grad():
        model(x)
    return counter.get_total_flops() // 2  # FlopCounterMode counts a MAC as 2 FLOPs


def unfuse_attention(model: nn.Module) -> nn.Module:
    """Attention as explicit q@k^T and attn@v matmuls (timm modules with a `fused_attn` switch)."""
    for module in model.modules():
        if hasattr(module, "fused_attn"):
            module.fused_attn = False
    return model


def forward_gmacs(ms: ModelSpec, *, image_size: int, in_chans: int, num_classes: int, frames: int = 0) -> float:
    """Forward MACs per image (per clip of `frames` frames for a video model) in units of 1e9
    (fvcore convention), attention included."""
    check(ms, image_size, in_chans, frames)
    return _gmacs(ms, image_size, in_chans, num_classes, frames)


def param_count(ms: ModelSpec, *, image_size: int, in_chans: int, num_classes: int, frames: int = 0) -> int:
    check(ms, image_size, in_chans, frames)
    return _params(ms, image_size, in_chans, num_classes, frames)


def input_shape(batch: int, in_chans: int, image_size: int, frames: int = 0) -> tuple[int, ...]:
    """[B, C, H, W] for an image model, [B, C, T, H, W] for a video model (frames > 0)."""
    return (batch, in_chans, *((frames,) if frames else ()), image_size, image_size)


# In-place writes of values: what weight initialisers (torch.nn.init, timm's trunc_normal_) do to a
# parameter. A meta tensor holds no values, so on meta they change nothing.
VALUE_WRITES = frozenset(
    {"uniform_", "normal_", "erfinv_", "clamp_", "clamp_min_", "clamp_max_", "mul_", "add_", "sub_", "div_"}
    | {"fill_", "zero_", "copy_", "exp_", "log_", "sqrt_", "neg_", "abs_", "random_", "bernoulli_"}
    | {name for name in dir(torch.nn.init) if name.endswith("_") and not name.startswith("_")}
)


class _SkipValueWrites(TorchFunctionMode):
    """Skips VALUE_WRITES whose target is a meta tensor (they return the tensor, as an in-place op does);
    everything else, shapes, dtypes and requires_grad included, runs as usual."""

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204 - torch's protocol
        if getattr(func, "__name__", "") in VALUE_WRITES and args and isinstance(args[0], torch.Tensor) and args[0].is_meta:
            return args[0]
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def meta_build() -> Iterator[None]:
    """Build modules on the meta device to count them, skipping weight initialisation: on meta the
    initialisers run as Python reference kernels (timm's trunc_normal_: erfinv_, clamp_, ...) for no
    effect, 0.65 s of a 0.75 s vit@h14 build; with them skipped, counting every registered model
    (`harness models`) takes 12 s instead of 20. Same modules, parameters and buffers (shapes, dtypes),
    so the same counts."""
    with torch.device("meta"), _SkipValueWrites():
        yield


def _meta_model(ms: ModelSpec, image_size: int, in_chans: int, num_classes: int, frames: int = 0) -> nn.Module:
    with meta_build():
        return build(ms, image_size=image_size, in_chans=in_chans, num_classes=num_classes, frames=frames)


@functools.lru_cache(maxsize=1024)
def _gmacs(ms: ModelSpec, image_size: int, in_chans: int, num_classes: int, frames: int = 0) -> float:
    model = unfuse_attention(_meta_model(ms, image_size, in_chans, num_classes, frames)).eval()
    x = torch.empty(input_shape(1, in_chans, image_size, frames), device="meta")
    return count_macs(model, x) / 1e9


@functools.lru_cache(maxsize=1024)
def _params(ms: ModelSpec, image_size: int, in_chans: int, num_classes: int, frames: int = 0) -> int:
    return count_params(_meta_model(ms, image_size, in_chans, num_classes, frames))
