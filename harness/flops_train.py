"""Training compute per image, counted: forward + backward of one step, on the meta device.

Convention: as harness/flops.py, one multiply-accumulate (MAC) = one "FLOP" (fvcore, papers'
"GFLOPs"); only matmuls, convolutions and attention count. Hardware peaks count an FMA as 2
FLOPs, so MFU uses 2x these numbers (harness/profile.py does that, in one place).

Why count instead of assuming backward = 2x forward: the assumption is right per layer, but
the counter we build on is not. torch's FlopCounterMode formula for `convolution_backward`
ignores `groups` in the weight gradient, so a depthwise 7x7 conv's weight gradient is counted
C times too large: ConvNeXt-T's training step reads 8.69x its forward instead of 3.00x,
ConvNeXt-xs 7.29x (measured with torch 2.14). We register our own formula:

  forward MACs   F = N * prod(w.shape) * prod(spatial)   (w = [C_out, C_in/groups, k...]; spatial is
                                                         the output's, or the input's for a transposed conv)
  grad_input     F   (each forward product x_i*w_j has one partner g*w_j in dL/dx_i)
  grad_weight    F   (and one partner g*x_i in dL/dw_j), groups already inside w.shape

grad_input is skipped when the input needs no gradient (the stem: images are not trained), so a
whole network counts slightly under 3x. Linear layers are mm/addmm: torch counts their two
backward matmuls right. Attention is counted unfused (q@k^T and attn@v as bmm, backward four
bmm: dQ, dK, dV, dP); fused sdpa backward kernels get 2x the forward, where torch's own
formula counts 2.5x because flash attention recomputes q@k^T: that is hardware work, not model
FLOPs (PaLM's MFU definition leaves recomputation out).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from harness import flops
from harness.zoo import ModelSpec, build, check

aten = torch.ops.aten
COUNT_BATCH = 2  # BatchNorm in train mode refuses one value per channel; every count is linear in N


def conv_forward_macs(x_shape: torch.Size, w_shape: torch.Size, out_shape: torch.Size, transposed: bool) -> int:
    """N * prod(w.shape) * prod(spatial): grouped and depthwise convs included through w.shape."""
    spatial = (x_shape if transposed else out_shape)[2:]
    return x_shape[0] * math.prod(w_shape) * math.prod(spatial)


def _conv_backward_flops(
    grad_out_shape: torch.Size,
    x_shape: torch.Size,
    w_shape: torch.Size,
    _bias: object,
    _stride: object,
    _padding: object,
    _dilation: object,
    transposed: bool,
    _output_padding: object,
    _groups: int,
    output_mask: list[bool],
    *args: object,
    out_shape: object = None,
    **kwargs: object,
) -> int:
    """grad_input and grad_weight each cost the forward's MACs (module docstring); 2 FLOPs per MAC
    because FlopCounterMode counts that way and flops.count_macs halves its total."""
    macs = conv_forward_macs(x_shape, w_shape, grad_out_shape, transposed)
    return 2 * macs * (int(output_mask[0]) + int(output_mask[1]))


def _sdpa_backward_flops(
    grad_out_shape: torch.Size,
    query_shape: torch.Size,
    key_shape: torch.Size,
    value_shape: torch.Size,
    *args: object,
    out_shape: object = None,
    **kwargs: object,
) -> int:
    """dQ, dK (through dS) and dV, dP: twice the forward's two matmuls; no recomputation."""
    return 2 * flops.sdpa_flops(query_shape, key_shape, value_shape)


TRAIN_MAPPING: dict = {
    **flops.FUSED_ATTENTION,
    aten.convolution_backward: _conv_backward_flops,
    aten._scaled_dot_product_flash_attention_for_cpu_backward: _sdpa_backward_flops,
    aten._scaled_dot_product_flash_attention_backward: _sdpa_backward_flops,
    aten._scaled_dot_product_efficient_attention_backward: _sdpa_backward_flops,
    aten._scaled_dot_product_cudnn_attention_backward: _sdpa_backward_flops,
}


def count_train_macs(model: nn.Module, x: torch.Tensor, y: torch.Tensor, mapping: dict | None = None) -> tuple[int, int]:
    """(forward MACs, backward MACs) of one cross-entropy training step on the batch (x, y).

    Any device, meta included. `mapping` replaces TRAIN_MAPPING (tests pass torch's defaults to
    show the grouped-convolution miscount)."""
    mapping = TRAIN_MAPPING if mapping is None else mapping
    with FlopCounterMode(display=False, custom_mapping=mapping) as fwd:
        loss = F.cross_entropy(model(x).float(), y)
    with FlopCounterMode(display=False, custom_mapping=mapping) as bwd:
        loss.backward()
    return fwd.get_total_flops() // 2, bwd.get_total_flops() // 2


def built_train_gmacs(
    build_fn: Callable[[], nn.Module], *, image_size: int, in_chans: int, num_classes: int, frames: int = 0
) -> tuple[float, float]:
    """(forward, forward + backward) GMACs per image of any model builder, counted on meta.

    The builder must create its modules on the default device (zoo builders do); under
    `torch.device("meta")` nothing is allocated and no arithmetic runs."""
    with flops.meta_build():  # weight initialisation skipped: nothing to initialise on meta
        model = build_fn()
    flops.unfuse_attention(model).train()
    x = torch.empty(flops.input_shape(COUNT_BATCH, in_chans, image_size, frames), device="meta")
    y = torch.zeros(COUNT_BATCH, dtype=torch.long, device="meta")  # class 0 is valid for any head
    fwd, bwd = count_train_macs(model, x, y)
    return fwd / COUNT_BATCH / 1e9, (fwd + bwd) / COUNT_BATCH / 1e9


def train_gmacs(ms: ModelSpec, *, image_size: int, in_chans: int, num_classes: int, frames: int = 0) -> float:
    """Forward + backward MACs per image (per clip for a video model) of one training step, in units of 1e9 (fvcore convention)."""
    check(ms, image_size, in_chans, frames)
    return _train_gmacs(ms, image_size, in_chans, num_classes, frames)


def train_flops(ms: ModelSpec, samples: int, *, image_size: int, in_chans: int, num_classes: int, frames: int = 0) -> float:
    """Total training compute for `samples` images (clips) seen (MACs, fvcore convention): what rows and --dry-run report."""
    return train_gmacs(ms, image_size=image_size, in_chans=in_chans, num_classes=num_classes, frames=frames) * 1e9 * samples


@functools.lru_cache(maxsize=1024)
def _train_gmacs(ms: ModelSpec, image_size: int, in_chans: int, num_classes: int, frames: int = 0) -> float:
    def make() -> nn.Module:
        return build(ms, image_size=image_size, in_chans=in_chans, num_classes=num_classes, frames=frames)

    return built_train_gmacs(make, image_size=image_size, in_chans=in_chans, num_classes=num_classes, frames=frames)[1]
