"""Analysis of study results: tables, scaling-law fits, plots and the report.

Reads only the Parquet the store writes (see DESIGN.md, "Data flows one way").
"""

from harness.analysis.fits import FitReport, fit_arrays, fit_results
from harness.analysis.io import load_results
from harness.analysis.plots import FAMILY_COLOURS, make_plot
from harness.analysis.report import write_report
from harness.analysis.tables import build_table, render

__all__ = [
    "FAMILY_COLOURS", "FitReport", "build_table", "fit_arrays", "fit_results", "load_results",
    "make_plot", "render", "write_report",
]
