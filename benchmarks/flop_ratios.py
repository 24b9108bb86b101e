"""Training-step FLOPs / forward FLOPs per family, counted, and what torch's default formulas say.

One training step (forward, cross-entropy, backward) is counted on the meta device, 3 channels,
1000 classes, each model at its default resolution; MACs per image (fvcore convention). "torch
default" repeats the count with torch's own FlopCounterMode formulas, whose convolution_backward
ignores `groups` in the weight gradient (ConvNeXt's depthwise 7x7 convolutions). Prints the
table in benchmarks/README.md. Runs in a few seconds: nothing is allocated, nothing computed.

    python benchmarks/flop_ratios.py
"""

from __future__ import annotations

import torch

from harness import flops, flops_train, zoo

MODELS = [
    ("resnet@xs", 28),
    ("vit@xs", 28),
    ("mixer@xs", 28),
    ("convnext@xs", 28),
    ("swin@xs", 28),
    ("resnet@50", 224),
    ("vit@b16", 224),
    ("mixer@b16", 224),
    ("convnext@tiny", 224),
    ("swin@tiny", 224),
]


def ratios(name: str, size: int) -> tuple[float, float, float, float]:
    ms = zoo.resolve(name)
    dims = {"image_size": size, "in_chans": 3, "num_classes": 1000}
    fwd, train = flops_train.built_train_gmacs(lambda: zoo.build(ms, **dims), **dims)
    with torch.device("meta"):
        model = zoo.build(ms, **dims)
    flops.unfuse_attention(model).train()
    n = flops_train.COUNT_BATCH
    x = torch.empty(n, 3, size, size, device="meta")
    y = torch.zeros(n, dtype=torch.long, device="meta")
    f0, b0 = flops_train.count_train_macs(model, x, y, mapping={})  # {}: torch's own formulas only
    return fwd, train, train / fwd, (f0 + b0) / f0


def main() -> None:
    print("| model | px | forward GMACs | train-step GMACs | train / forward | torch default |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, size in MODELS:
        fwd, train, r, r0 = ratios(name, size)
        print(f"| {name} | {size} | {fwd:.4g} | {train:.4g} | {r:.3f} | {r0:.2f} |")


if __name__ == "__main__":
    main()
