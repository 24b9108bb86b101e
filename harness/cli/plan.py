"""`harness plan`: compute-matched shapes (harness/plan.py) and, with --isoflop, IsoFLOP grids
(harness/isoflop.py). Parsing and printing only; the searches live in those modules."""

from __future__ import annotations

import argparse
import json

from harness.cli.verbs import verb
from harness.errors import StudyError

ORDER = 4  # after profile


def _options(p: argparse.ArgumentParser) -> None:
    """harness/plan.py imports torch (its docstring is the description, zoo gives the default size):
    added only when `plan` is named."""
    from harness import models, plan, zoo

    p.description = plan.__doc__.split("\n\n")[0]
    p.add_argument("--family", required=True, help="a family, a comma-separated list, or 'all'")
    p.add_argument("--match", choices=("params", "gmacs"), default="params")
    p.add_argument(
        "--targets",
        default=None,
        help="comma-separated; params: 0.1M,500k,2e6; gmacs: GMACs per image (0.01,0.05) or MACs with a suffix (20M)",
    )
    p.add_argument("--image-size", type=int, default=zoo.SMALL_IMAGE, help="default 28 (Fashion-MNIST)")
    p.add_argument("--in-chans", type=int, default=models.COUNT_CHANNELS, help=models.dims_help("channels"))
    p.add_argument("--num-classes", type=int, default=models.COUNT_CLASSES, help=models.dims_help("classes"))
    p.add_argument("--patch", type=int, default=None, help="patch size for families that have one (default: the reference row's)")
    p.add_argument(
        "--json", action="store_true", help="a JSON list of {family, target, shape, name, params, fwd_gmacs, error_pct}"
    )
    _isoflop_options(p)


def _isoflop_options(p: argparse.ArgumentParser) -> None:
    """The --isoflop options of `harness plan`."""
    from harness.isoflop import DEFAULT_BATCH, DEFAULT_MIN_STEPS, DEFAULT_SIZES

    g = p.add_argument_group("IsoFLOP grids (--isoflop; see harness/isoflop.py)")
    g.add_argument(
        "--isoflop",
        default=None,
        metavar="C,C2,C3",
        help="training-compute budgets (MACs, as the rows' train_flops): shapes and steps on each budget",
    )
    g.add_argument("--sizes", type=int, default=DEFAULT_SIZES, help=f"shapes per budget (default {DEFAULT_SIZES})")
    g.add_argument(
        "--ratio",
        type=float,
        default=None,
        help="compute-per-sample ratio between neighbouring shapes (default: the budgets' ratio, else 2)",
    )
    g.add_argument(
        "--min-steps",
        type=int,
        default=DEFAULT_MIN_STEPS,
        help=f"steps of each budget's largest shape (default {DEFAULT_MIN_STEPS})",
    )
    g.add_argument("--batch-size", type=int, default=DEFAULT_BATCH, help=f"default {DEFAULT_BATCH}")
    g.add_argument(
        "--study",
        default=None,
        metavar="NAME",
        help="print one runnable study: grid.zip pairs each shape with its on-budget data size (epochs 1)",
    )


@verb("plan", "shapes of each family that hit parameter or GMAC targets (compute-matched ladders)", _options)
def _dispatch(args: argparse.Namespace) -> int:
    """--isoflop plans IsoFLOP grids (harness/isoflop.py); otherwise --targets is required."""
    if args.isoflop is not None:
        return _isoflop(args)
    if args.targets is None:
        raise StudyError("--targets is required (or --isoflop BUDGETS)", key="--targets", fix="e.g. --targets 0.1M,0.5M,2M")
    return _plan(args)


def _plan(args: argparse.Namespace) -> int:
    import torch

    from harness.plan import human, parse_families, parse_targets, plan

    torch.set_num_threads(1)  # tiny counts: threads only contend (2 threads on 2 busy cores: 10x slower, measured)
    targets = parse_targets(args.targets, args.match)
    for key in ("image_size", "in_chans", "num_classes"):
        if getattr(args, key) < 1:
            raise StudyError(f"--{key.replace('_', '-')} must be positive", key=f"--{key.replace('_', '-')}")
    rows = [
        p
        for f in parse_families(args.family)
        for p in plan(
            f,
            match=args.match,
            targets=targets,
            image_size=args.image_size,
            in_chans=args.in_chans,
            num_classes=args.num_classes,
            patch=args.patch,
        )
    ]
    if args.json:
        print(json.dumps([dict(r.as_dict(), **_dims(args)) for r in rows], indent=1))
        return 0
    print(
        f"# harness plan: {args.match} matched at {args.image_size} px, {args.in_chans} channel(s), "
        f"{args.num_classes} classes; paste the lines into grid.model"
    )
    width = max(len(r.yaml()) for r in rows)
    for r in rows:
        unit = "params" if args.match == "params" else "GMACs"
        target = human(r.target) if args.match == "params" else f"{r.target:g}"
        print(f"- {r.yaml():<{width}}  # target {target} {unit}: {r.params:,} params, {r.gmacs:.4g} GMACs ({r.error_pct:+.1f}%)")
    return 0


def _dims(args: argparse.Namespace) -> dict[str, int]:
    """The input every JSON row repeats."""
    return {"image_size": args.image_size, "in_chans": args.in_chans, "num_classes": args.num_classes}


def _isoflop(args: argparse.Namespace) -> int:
    """`harness plan --isoflop`."""
    import torch

    from harness import isoflop
    from harness.analysis.optimal import parse_budgets
    from harness.plan import parse_families

    torch.set_num_threads(1)  # tiny counts: threads only contend (as harness plan)
    budgets = sorted(parse_budgets(args.isoflop))
    ratio = args.ratio if args.ratio is not None else (isoflop.geometric_ratio(budgets) or isoflop.DEFAULT_RATIO)
    design = {"sizes": args.sizes, "ratio": ratio, "min_steps": args.min_steps, "batch_size": args.batch_size}
    if args.study:  # before planning: a data size the training split cannot hold fails fast
        from harness.spec.checks import Where
        from harness.spec.sections import check_name

        check_name(args.study, Where("--study"))  # '../x' or 'a b: c' printed a study that cannot run (issue 27)
        isoflop.check_design(budgets, args.sizes, ratio, args.min_steps, args.batch_size)
        isoflop.study_data_sizes(**design)
    points = [
        p
        for f in parse_families(args.family)
        for p in isoflop.plan_isoflop(
            f,
            budgets,
            image_size=args.image_size,
            **design,
            in_chans=args.in_chans,
            num_classes=args.num_classes,
            patch=args.patch,
        )
    ]
    if args.json:
        print(json.dumps([dict(p.as_dict(), **_dims(args)) for p in points], indent=1))
        return 0
    header = (
        f"# harness plan --isoflop {','.join(isoflop.budget_text(c) for c in budgets)} --family {args.family} "
        f"--image-size {args.image_size} --sizes {args.sizes} --ratio {ratio:g} --min-steps {args.min_steps} "
        f"--batch-size {args.batch_size}\n# budgets in training MACs (the rows' train_flops unit: fvcore "
        f"convention, counted forward + backward); {args.in_chans} channel(s), {args.num_classes} classes"
    )
    if args.study:
        text = isoflop.study_text(args.study, points, budgets, **design, image_size=args.image_size, header=header)
        print(text, end="")
    else:
        print("\n".join(isoflop.snippet_lines(points, header)))
    return 0
