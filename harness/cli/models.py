"""`harness models`: the registered models with parameters and GMACs (harness/models.py counts them)."""

from __future__ import annotations

import argparse
import json

from harness.cli.verbs import verb
from harness.console import out_console

ORDER = 1  # after run and status


def _options(m: argparse.ArgumentParser) -> None:
    """Added only when `models` is named (harness/models.py imports torch)."""
    from harness import models

    m.add_argument(
        "--json",
        action="store_true",
        help="a JSON list of {name, family, size, image_size, in_chans, num_classes, params, fwd_gmacs} (+ frames for video models)",
    )
    m.add_argument("--family", default=None, metavar="F[,G]", help="only these families (comma list, as in plan)")
    m.add_argument("--image-size", type=int, default=None, help="default: 224 for ImageNet configs, 28 for small sizes")
    m.add_argument("--in-chans", type=int, default=None, help=models.dims_help("channels"))
    m.add_argument("--num-classes", type=int, default=None, help=models.dims_help("classes"))
    m.add_argument(
        "--frames",
        type=int,
        default=None,
        help="list the video families at this clip length (default: all families, video at 16 frames)",
    )


@verb("models", "list registered models with params and GMACs", _options)
def _models(args: argparse.Namespace) -> int:
    from harness.models import model_rows

    families = [f.strip() for f in args.family.split(",") if f.strip()] if args.family else [None]
    dims = {"image_size": args.image_size, "in_chans": args.in_chans, "num_classes": args.num_classes, "frames": args.frames}
    rows = [r for family in families for r in model_rows(family, **dims)]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    from rich.table import Table

    t = Table(title="models (counted with the input each size was made for: --in-chans/--num-classes to change it)")
    for c in ("name", "family", "size", "px", "in/classes", "frames", "params", "GMACs"):
        t.add_column(c, justify="right" if c in ("px", "frames", "params", "GMACs") else "left")
    for r in rows:  # GMACs per image, per clip for video models
        frames = str(r.get("frames", ""))
        io = f"{r['in_chans']}/{r['num_classes']}"
        t.add_row(
            r["name"], r["family"], r["size"], str(r["image_size"]), io, frames, f"{r['params']:,}", f"{r['fwd_gmacs']:.4g}"
        )
    out_console().print(t)
    return 0
