"""Device peak FLOP/s (for MFU) and the hardware fingerprint every profile record carries.

Peaks are dense (no 2:4 structured sparsity) tensor-core or vector rates per GPU at boost clock,
in TFLOP/s with 1 FMA = 2 FLOPs, as NVIDIA's datasheets print them; datasheets quote most tensor
rates "with sparsity", which is exactly twice the dense rate, so those are halved here. MFU
(Chowdhery et al. 2022, PaLM, appendix B) = achieved model FLOP/s / this peak.

A peak that does not exist (bf16 on a V100, any CPU) or that we cannot identify (a GPU variant
not in the table) is NaN with a reason, never a guess: a wrong denominator makes MFU
comparisons across machines meaningless.
"""

from __future__ import annotations

import functools
import math
import os
import platform
import re
import subprocess
from pathlib import Path

import torch

# The precision a measurement runs at -> the column of the peak table that bounds it.
# amp-bf16 runs its matmuls and convolutions in bf16, so bf16 tensor cores bound it.
PEAK_KEY = {"fp32": "fp32", "tf32": "tf32", "bf16": "bf16", "fp16": "fp16", "amp-bf16": "bf16"}

_NO_BF16_TF32 = "no bf16/tf32 tensor cores before Ampere"
NAN = math.nan

# TFLOP/s, dense, per GPU. key -> {precision: peak}; NaN entries carry their reason in MISSING.
PEAKS: dict[str, dict[str, float]] = {
    # NVIDIA H100 Tensor Core GPU Architecture whitepaper (2022), table 3, H100 SXM5 column
    # (datasheet: FP32 67, TF32 989*, BF16/FP16 1979* TFLOPS, * = with sparsity)
    "H100 SXM": {"fp32": 66.9, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4},
    # H100 datasheet (nvidia.com/en-us/data-center/h100), H100 PCIe column: FP32 51,
    # TF32 756*, BF16/FP16 1513* TFLOPS (* halved here)
    "H100 PCIe": {"fp32": 51.0, "tf32": 378.0, "bf16": 756.5, "fp16": 756.5},
    # H100 datasheet, H100 NVL column (per GPU): FP32 60, TF32 835*, BF16/FP16 1671* TFLOPS
    "H100 NVL": {"fp32": 60.0, "tf32": 417.5, "bf16": 835.5, "fp16": 835.5},
    # H200 datasheet (nvidia.com/en-us/data-center/h200), H200 SXM column: FP32 67, TF32 989*,
    # BF16/FP16 1979* TFLOPS; the same GH100 SXM5 compute as H100 SXM, so its whitepaper rates
    "H200 SXM": {"fp32": 66.9, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4},
    # H200 datasheet, H200 NVL column: FP32 60, TF32 835*, BF16/FP16 1671* TFLOPS
    "H200 NVL": {"fp32": 60.0, "tf32": 417.5, "bf16": 835.5, "fp16": 835.5},
    # A100 datasheet (nvidia.com/en-us/data-center/a100), SXM and PCIe, 40 and 80 GB alike:
    # FP32 19.5, TF32 156 (312*), BF16/FP16 312 (624*) TFLOPS
    "A100": {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "fp16": 312.0},
    # L40S datasheet (nvidia.com/en-us/data-center/l40s): FP32 91.6, TF32 183 (366*),
    # BF16/FP16 362.05 (733*) TFLOPS
    "L40S": {"fp32": 91.6, "tf32": 183.0, "bf16": 362.05, "fp16": 362.05},
    # L4 datasheet (nvidia.com/en-us/data-center/l4): FP32 30.3, TF32 120*, BF16/FP16 242* TFLOPS
    "L4": {"fp32": 30.3, "tf32": 60.0, "bf16": 121.0, "fp16": 121.0},
    # A10 datasheet (nvidia.com/en-us/data-center/products/a10-gpu): FP32 31.2, TF32 62.5 (125*),
    # BF16/FP16 125 (250*) TFLOPS. Not the A10G (AWS), which is a different part.
    "A10": {"fp32": 31.2, "tf32": 62.5, "bf16": 125.0, "fp16": 125.0},
    # V100 datasheet (nvidia.com/en-us/data-center/v100), SXM2: FP32 15.7, tensor (FP16) 125
    "V100 SXM": {"fp32": 15.7, "tf32": NAN, "bf16": NAN, "fp16": 125.0},
    # V100 datasheet, PCIe: FP32 14, tensor (FP16) 112
    "V100 PCIe": {"fp32": 14.0, "tf32": NAN, "bf16": NAN, "fp16": 112.0},
    # V100S datasheet (PCIe 32 GB): FP32 16.4, tensor (FP16) 130
    "V100S": {"fp32": 16.4, "tf32": NAN, "bf16": NAN, "fp16": 130.0},
    # T4 datasheet (nvidia.com/en-us/data-center/tesla-t4): FP32 8.1, mixed-precision FP16 65
    "T4": {"fp32": 8.1, "tf32": NAN, "bf16": NAN, "fp16": 65.0},
}
MISSING: dict[str, str] = {"V100 SXM": _NO_BF16_TF32, "V100 PCIe": _NO_BF16_TF32, "V100S": _NO_BF16_TF32, "T4": _NO_BF16_TF32}


def gpu_key(device_name: str) -> str | None:
    """The PEAKS row of a `torch.cuda.get_device_name()` string, or None when not identified.

    Whole tokens only: "A10" must not match "A100" or "A10G", nor "L4" match "L40S".
    """
    tokens = set(re.split(r"[\s\-_/]+", device_name.upper()))
    if "H200" in tokens:
        return "H200 NVL" if "NVL" in tokens else "H200 SXM"
    if "H100" in tokens:
        if "NVL" in tokens:
            return "H100 NVL"
        if "PCIE" in tokens or "HBM2E" in tokens:  # "NVIDIA H100 PCIe", "NVIDIA H100 80GB HBM2e"
            return "H100 PCIe"
        if "HBM3" in tokens or "SXM" in tokens or "SXM5" in tokens:  # "NVIDIA H100 80GB HBM3"
            return "H100 SXM"
        return None
    if "V100S" in tokens:
        return "V100S"
    if "V100" in tokens:
        if tokens & {"SXM2", "SXM3"}:
            return "V100 SXM"
        return "V100 PCIe" if "PCIE" in tokens else None
    for key in ("A100", "L40S", "L4", "A10", "T4"):
        if key in tokens:
            return key
    return None


def peak_flops(device: str, precision: str) -> tuple[float, str]:
    """(peak FLOP/s, reason). `device` is "cpu" or a CUDA device name; NaN comes with a reason."""
    if precision not in PEAK_KEY:
        raise ValueError(f"unknown precision {precision!r}; one of {', '.join(PEAK_KEY)}")
    if device == "cpu" or device.startswith("cpu"):
        return NAN, (
            "no CPU peak table: a CPU's peak depends on its SIMD width, FMA units, "
            "all-core clock and core count, none of which torch reports"
        )
    key = gpu_key(device)
    if key is None:
        return NAN, f"'{device}' is not in the peak table (harness/hardware.py PEAKS)"
    peak = PEAKS[key][PEAK_KEY[precision]]
    if math.isnan(peak):
        return NAN, f"{key}: {MISSING.get(key, 'no published peak')} ({precision})"
    return peak * 1e12, ""


# ----------------------------------------------------------------------------- fingerprint


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_bf16_note() -> str:
    """Whether this CPU has bf16 arithmetic, for the note a bf16 measurement on CPU carries."""
    native = sorted(cpu_flags() & {"avx512_bf16", "amx_bf16"})
    have = f"native bf16 ({', '.join(native)})" if native else "no native bf16 (converted to fp32 in kernels)"
    return f"bf16 on CPU via oneDNN: {have}; CPU kernels differ from GPU ones, so compare with fp32 on the same CPU"


@functools.lru_cache(maxsize=1)
def nvidia_driver() -> str:
    """The NVIDIA driver version (nvidia-smi), '' when there is none."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else ""


def tf32_setting() -> str:
    """TF32 switches as they are now: matmuls (default off) and cuDNN convolutions (default on)."""
    return (
        f"matmul={'on' if torch.backends.cuda.matmul.allow_tf32 else 'off'},"
        f"cudnn={'on' if torch.backends.cudnn.allow_tf32 else 'off'}"
    )


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def fingerprint(device: torch.device) -> dict:
    """What a throughput number depends on besides the model: one flat dict of row columns."""
    cuda = device.type == "cuda"
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "device": device_name(device),
        "device_count": torch.cuda.device_count() if torch.cuda.is_available() else 0,
        "driver": nvidia_driver() if cuda else "",
        "cpu_model": cpu_model(),
        "cpu_count": affinity,  # CPUs this process may run on (a container or taskset may give fewer)
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),  # SIMD level torch dispatches to
        "threads": torch.get_num_threads(),
        "niceness": os.nice(0),  # CPU priority: a niced process measures low whenever anything else runs
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda or "",
        "cudnn_version": str(torch.backends.cudnn.version() or "") if cuda else "",
        "tf32": tf32_setting() if cuda else "n/a (cpu)",
    }
