"""The device peak table (MFU's denominator) and the hardware fingerprint."""

from __future__ import annotations

import math

import pytest
import torch

from harness import hardware

NAMES = [  # torch.cuda.get_device_name() strings as drivers report them -> table row
    ("NVIDIA H100 80GB HBM3", "H100 SXM"),
    ("NVIDIA H100 PCIe", "H100 PCIe"),
    ("NVIDIA H100 NVL", "H100 NVL"),
    ("NVIDIA H200", "H200 SXM"),
    ("NVIDIA H200 NVL", "H200 NVL"),
    ("NVIDIA A100-SXM4-80GB", "A100"),
    ("NVIDIA A100-PCIE-40GB", "A100"),
    ("NVIDIA A100 80GB PCIe", "A100"),
    ("NVIDIA L40S", "L40S"),
    ("NVIDIA L4", "L4"),
    ("NVIDIA A10", "A10"),
    ("Tesla V100-SXM2-16GB", "V100 SXM"),
    ("Tesla V100-PCIE-32GB", "V100 PCIe"),
    ("Tesla V100S-PCIE-32GB", "V100S"),
    ("Tesla T4", "T4"),
    # look-alikes that are different parts: never matched to a neighbour's peak
    ("NVIDIA A10G", None),
    ("NVIDIA L40", None),
    ("NVIDIA H100", None),  # SXM or PCIe? not identified, so no guess
    ("NVIDIA GeForce RTX 4090", None),
]


@pytest.mark.parametrize("name,key", NAMES)
def test_device_names_map_to_their_row(name: str, key: str | None) -> None:
    assert hardware.gpu_key(name) == key


@pytest.mark.parametrize(
    "name,precision,tflops",
    [
        ("NVIDIA H100 80GB HBM3", "bf16", 989.4),
        ("NVIDIA H100 80GB HBM3", "amp-bf16", 989.4),  # autocast runs its matmuls in bf16
        ("NVIDIA H100 80GB HBM3", "tf32", 494.7),
        ("NVIDIA H100 PCIe", "fp16", 756.5),
        ("NVIDIA A100-SXM4-40GB", "bf16", 312.0),
        ("NVIDIA A100-SXM4-40GB", "tf32", 156.0),
        ("NVIDIA A100-SXM4-40GB", "fp32", 19.5),
        ("NVIDIA L40S", "bf16", 362.05),
        ("NVIDIA L4", "fp16", 121.0),
        ("NVIDIA A10", "tf32", 62.5),
        ("Tesla V100-SXM2-16GB", "fp16", 125.0),
        ("Tesla T4", "fp32", 8.1),
    ],
)
def test_peak_lookup(name: str, precision: str, tflops: float) -> None:
    peak, reason = hardware.peak_flops(name, precision)
    assert peak == pytest.approx(tflops * 1e12) and reason == ""


@pytest.mark.parametrize(
    "name,precision,why",
    [
        ("cpu", "fp32", "CPU"),
        ("cpu", "amp-bf16", "CPU"),
        ("Tesla V100-SXM2-16GB", "bf16", "before Ampere"),
        ("Tesla T4", "tf32", "before Ampere"),
        ("NVIDIA A10G", "bf16", "not in the peak table"),
    ],
)
def test_unknown_peaks_are_nan_with_a_reason(name: str, precision: str, why: str) -> None:
    peak, reason = hardware.peak_flops(name, precision)
    assert math.isnan(peak) and why in reason


def test_unknown_precision_is_an_error() -> None:
    with pytest.raises(ValueError, match="precision"):
        hardware.peak_flops("NVIDIA L4", "int8")


@pytest.mark.parametrize("key", list(hardware.PEAKS))
def test_table_is_consistent(key: str) -> None:
    # dense tensor rates sit above vector fp32; fp16 = bf16 wherever both exist; NaN has a reason
    row = hardware.PEAKS[key]
    assert set(row) == {"fp32", "tf32", "bf16", "fp16"}
    assert row["fp16"] > row["fp32"] > 0
    for p in ("tf32", "bf16"):
        assert math.isnan(row[p]) and key in hardware.MISSING or row[p] > row["fp32"]
    assert math.isnan(row["bf16"]) or row["bf16"] == row["fp16"] == pytest.approx(2 * row["tf32"], rel=0.02)


def test_cpu_fingerprint() -> None:
    fp = hardware.fingerprint(torch.device("cpu"))
    assert fp["device"] == "cpu" and fp["threads"] == torch.get_num_threads()
    assert fp["cpu_model"] and fp["cpu_count"] >= 1 and fp["torch_version"] == torch.__version__
    assert fp["tf32"].startswith("n/a") and fp["driver"] == ""
    assert set(fp) == {
        "device",
        "device_count",
        "driver",
        "cpu_model",
        "cpu_count",
        "cpu_capability",
        "threads",
        "niceness",
        "torch_version",
        "cuda_version",
        "cudnn_version",
        "tf32",
    }


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_fingerprint() -> None:
    fp = hardware.fingerprint(torch.device("cuda"))
    assert fp["device"] == torch.cuda.get_device_name() and fp["device_count"] >= 1
    assert fp["cuda_version"] and fp["tf32"].startswith("matmul=")
