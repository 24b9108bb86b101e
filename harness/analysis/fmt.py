"""Formatting shared by the fit, optimal and plot modules: scale values for prose, JSON-safe values."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def fmt_x(v: float) -> str:
    """Scale values for prose: 6.1k, 1.2M, 0.35, 224, 3.2e15."""
    if v is None or not math.isfinite(v):
        return "n/a"
    if abs(v) >= 1e12:  # FLOPs: T/P/E suffixes read worse than an exponent
        mant, exp = f"{v:.2e}".split("e")
        return f"{float(mant):.3g}e{int(exp)}"
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= scale:
            return f"{v / scale:.3g}{suffix}"
    return f"{v:.3g}"


def clean(obj: Any) -> Any:
    """JSON-safe: numpy scalars to Python, NaN/inf to None, tuples to lists."""
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj
