"""Plot style shared by every figure: family colours and shades, axis labels, log axes, a figure
and how it is saved.

Built on matplotlib's object API (`Figure`, no pyplot), so plotting never touches global
backend state and works headless; seaborn supplies the style. Every figure is written as
PNG (150 dpi) and SVG. Each family has one colour everywhere (`FAMILY_COLOURS`); models of
one family are shades of it, small to large.
"""

from __future__ import annotations

import colorsys
import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.colors as mcolors
import numpy as np
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from harness.analysis.fmt import fmt_x
from harness.analysis.io import is_accuracy
from harness.analysis.tables import FAMILY_ORDER

# Okabe–Ito colour-blind-safe palette; baselines (linear, mlp) get the neutral colours.
FAMILY_COLOURS = {
    "resnet": "#0072B2",  # blue
    "vit": "#D55E00",  # vermillion
    "mixer": "#009E73",  # bluish green
    "convnext": "#CC79A7",  # reddish purple
    "swin": "#E69F00",  # orange
    "linear": "#7F7F7F",  # grey
    "mlp": "#8C564B",  # brown
    "r3d": "#56B4E9",  # sky blue (video CNNs: blues, like resnet)
    "r2plus1d": "#332288",  # indigo (told apart from r3d's sky blue in one figure)
    "vivit": "#9E2A2B",  # dark red (video transformers: reds, like vit)
    "vivit_fact": "#F28E2B",  # light orange
}
_EXTRA_COLOURS = ("#56B4E9", "#F0E442", "#000000", "#17BECF", "#BCBD22")  # unknown families
DPI = 150
AXIS_LABELS = {
    "data_size": "training set size (images)",
    "params": "parameters (count)",
    "fwd_gmacs": "forward compute (GMACs per image)",
    "train_flops": "training compute (FLOPs)",
    "image_size": "input resolution (px)",
    "frames": "clip length (frames)",
    "frame_stride": "frame stride",
    "infer_img_s": "inference throughput (img/s)",
    "train_img_s": "training throughput (img/s)",
    "latency_ms_p50": "latency p50 (ms)",
    "peak_mem_mb": "peak memory (MB)",
    "samples_seen": "samples seen (images)",
    "epochs": "epochs",
    "test_loss": "test loss (nats)",
    "train_loss": "training loss (nats)",
}


@dataclass
class PlotOutcome:
    kind: str
    paths: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # one line per figure not drawn, with why

    def to_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "paths": [str(p) for p in self.paths], "skipped": list(self.skipped)}


# ----------------------------------------------------------------------------- colours, labels


def family_colour(family: str) -> str:
    """Fixed colour of a family; unknown names get a stable colour from their name."""
    if family in FAMILY_COLOURS:
        return FAMILY_COLOURS[family]
    return _EXTRA_COLOURS[sum(map(ord, family)) % len(_EXTRA_COLOURS)]


def shade(colour: str, i: int, n: int) -> str:
    """i-th of n shades of a colour, light (small model) to dark (large model)."""
    if n <= 1:
        return colour
    hue, base, sat = colorsys.rgb_to_hls(*mcolors.to_rgb(colour))
    light = np.linspace(min(0.78, base + 0.25), max(0.18, base - 0.2), n)[i]
    return mcolors.to_hex(colorsys.hls_to_rgb(hue, light, sat))


def axis_label(col: str) -> str:
    if col in AXIS_LABELS:
        return AXIS_LABELS[col]
    if is_accuracy(col):
        return f"{col.replace('_', ' ')} (%)"
    return col.replace("_", " ")


def error_label(col: str) -> str:
    return f"error, 1 − {col}" if is_accuracy(col) else axis_label(col)


def family_order(families: list[str]) -> list[str]:
    rank = {f: i for i, f in enumerate(FAMILY_ORDER)}
    return sorted(set(families), key=lambda f: (rank.get(f, len(rank)), f))


def new_figure(
    ncols: int = 1, nrows: int = 1, width: float = 6.4, height: float = 4.6, sharey: bool = False
) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    FigureCanvasAgg(fig)  # an Agg canvas of its own: text extents for label placement, no pyplot
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=sharey)
    return fig, axes


def save_figure(fig: Figure, out_dir: Path, name: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.svg"]
    # a tight bounding box: a subtitle wider than the axes (the scaling plot's) is kept, not clipped at both edges
    fig.savefig(paths[0], dpi=DPI, bbox_inches="tight", pad_inches=0.1)
    fig.set_layout_engine("none")  # keep the layout just computed: the SVG saves ~30% faster
    fig.savefig(paths[1], bbox_inches="tight", pad_inches=0.1)
    return paths


def log_axis(ax: Axes, which: str, values: np.ndarray) -> None:
    """Log scale with plain tick labels (1k, 10k) rather than 10^3 when the span is small."""
    axis = ax.xaxis if which == "x" else ax.yaxis
    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    span = np.nanmax(values) / np.nanmin(values) if len(values) else 1.0
    if span < 1e4:  # few decades: label 1-2-5 ticks, within one decade 1-1.5-2-3-5-7
        subs = (1.0, 1.5, 2.0, 3.0, 5.0, 7.0) if span < 12 else (1.0, 2.0, 5.0)
        axis.set_major_locator(LogLocator(base=10, subs=subs))
        axis.set_minor_formatter(NullFormatter())
    big = len(values) and np.nanmax(values) >= 1e12  # FLOPs: one notation for every tick
    axis.set_major_formatter(FuncFormatter(lambda v, _: _fmt_sci(v) if big else fmt_x(v)))


def _fmt_sci(v: float) -> str:
    mant, exp = f"{v:.1e}".split("e")
    m = float(mant)
    return f"{m:g}e{int(exp)}"


def figure_style() -> contextlib.AbstractContextManager:
    return sns.axes_style("whitegrid")


def lower_is_better(y: str) -> bool:
    """Losses and errors are minimised, accuracies and everything else maximised."""
    return not is_accuracy(y) and any(k in y.lower() for k in ("loss", "err"))
