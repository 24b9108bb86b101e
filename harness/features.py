"""What the trainer and the users of a trained model share: the precision training and
evaluation run at (`autocast`), and the pooled backbone features the probes (harness/evals.py)
and SimCLR's projection head (harness/ssl.py) read.

A leaf under harness/train.py: train, evals and ssl import it, it imports none of them.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.nn as nn


def autocast(device: torch.device):
    """bf16 autocast on CUDA (tensor cores, no loss scaling needed); full fp32 on CPU."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


def head_of(model: nn.Module) -> nn.Module:
    """The classifier head the probes leave out: timm's `get_classifier()`, the last layer of a pixel baseline."""
    if hasattr(model, "get_classifier"):
        return model.get_classifier()
    if isinstance(model, nn.Sequential):
        return model[-1]
    raise TypeError(f"{type(model).__name__} has no known classifier head")


def pooled_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """[N, D] pooled backbone features (D = the head's in_features), the head excluded."""
    if hasattr(model, "forward_features") and hasattr(model, "forward_head"):
        return model.forward_head(model.forward_features(x), pre_logits=True)
    if isinstance(model, nn.Sequential):  # zoo's mlp and linear: Flatten, [Linear, ReLU]*, Linear head
        for layer in list(model)[:-1]:  # not model[:-1]: slicing calls the subclass's constructor
            x = layer(x)
        return x
    raise TypeError(f"{type(model).__name__} has neither timm's forward_features/forward_head nor a Sequential head")
