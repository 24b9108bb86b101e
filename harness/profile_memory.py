"""Peak memory for the profiler (harness/profile.py): CUDA `max_memory_allocated`, or on CPU the
growth of the process's peak resident set (VmHWM, reset through /proc/self/clear_refs) over the
resident set before the model was built; and telling an out-of-memory error from other failures.
"""

from __future__ import annotations

import ctypes
import math
from pathlib import Path

import torch

# ----------------------------------------------------------------------------- memory


def _proc_status_mb(field_name: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) / 1024
    return math.nan


def _reset_hwm() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # "5" resets the peak RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def _trim_heap() -> None:
    """Return freed heap memory to the OS (glibc malloc_trim), so a resident-set baseline taken
    now is not inflated by what earlier work in this process freed but kept: without it, a second
    profile in the same process reads a peak growth near zero."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the baseline may be high, the growth a lower bound
        pass


def mem_available_mb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return math.nan


class PeakMemory:
    """Peak memory of what runs between reset() and read(): (MB, kind)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        if device.type == "cpu":
            _trim_heap()
        self.rss0 = _proc_status_mb("VmRSS") if device.type == "cpu" else 0.0  # before the model exists
        self.hwm_ok = False

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            _trim_heap()
            self.hwm_ok = _reset_hwm()

    def read(self) -> tuple[float, str]:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20, "cuda_max_allocated"
        if self.hwm_ok:
            return _proc_status_mb("VmHWM") - self.rss0, "cpu_peak_rss_growth"
        return math.nan, "unavailable"


def is_oom(e: BaseException) -> bool:
    # CUDA raises torch.OutOfMemoryError; the CPU allocator a RuntimeError with this text
    return isinstance(e, torch.OutOfMemoryError) or (isinstance(e, RuntimeError) and "can't allocate memory" in str(e))


def free_cache(device: torch.device) -> None:
    """Give the CUDA caching allocator's unused blocks back (after an out-of-memory or a finished probe)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
