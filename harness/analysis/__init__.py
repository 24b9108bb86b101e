"""Analysis of study results: tables, scaling-law fits, plots and the report.

Reads only the Parquet the store writes (see DESIGN.md, "Data flows one way"). The public
names below are imported on first use: the `harness` command (harness/cli/) must answer
--help and status without them, and matplotlib/seaborn/scipy take seconds to load.
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "load_results": "io",
    "build_table": "tables",
    "render": "tables",
    "fit_arrays": "lawfit",
    "fit_results": "fits",
    "FitReport": "fit_records",
    "make_plot": "plots",
    "FAMILY_COLOURS": "plot_style",
    "write_report": "report",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'harness.analysis' has no attribute {name!r}")
    return getattr(importlib.import_module(f"harness.analysis.{_PUBLIC[name]}"), name)
