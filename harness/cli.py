"""The `harness` command. Thin: every verb delegates to one function elsewhere.

Exit codes: 0 all ok, 1 some trials failed (their rows are written), 2 bad input (nothing
written), 130 interrupted (finished trials kept), 143 terminated by SIGTERM (the same).

Start-up is part of the interface: this module imports neither torch nor ray nor pandas, and
each verb imports what it needs when it runs, so `harness --help`, `status` and the analysis
verbs answer at once (tests/test_imports.py blocks torch and ray to prove it).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys

from harness.console import out_console
from harness.errors import StudyError
from harness.version import __version__

# modules that add their own verbs: each has register(subparsers)
PLUGINS = ["harness.analysis.cli", "harness.profile_cli", "harness.plan", "harness.compact"]
# plugins whose module imports torch at the top: imported only when one of their verbs runs; until
# then each verb is listed by name and help (keep these lines in step with the modules' register())
LAZY = {
    "harness.profile_cli": {"profile": "throughput, latency, memory, FLOPs and MFU of one model (the profiler trials use)"},
    "harness.plan": {"plan": "shapes of each family that hit parameter or GMAC targets (compute-matched ladders)"},
}


def _run(args: argparse.Namespace) -> int:
    from harness.runner import run_study

    flags = {
        k: getattr(args, k)
        for k in (
            "partition",
            "time",
            "cpus_per_task",
            "gpus_per_task",
            "mem_gb",
            "account",
            "qos",
            "array_parallelism",
            "setup",
            "checkpoint_every",
        )
    }
    return run_study(
        args.study,
        backend=args.backend,
        results=args.results,
        address=args.address,
        smoke=args.smoke,
        dry_run=args.dry_run,
        report=not args.no_report,
        wait=not args.no_wait,
        flags=flags,
        overrides=args.overrides,
    )


def _status(args: argparse.Namespace) -> int:
    from harness.runner import status

    table, code = status(args.target, results=args.results, include_all=args.include_all, overrides=args.overrides)
    out_console().print(table)
    return code


def _models(args: argparse.Namespace) -> int:
    from harness import flops, zoo
    from harness.errors import did_you_mean

    if args.family and args.family not in zoo.families():
        raise StudyError(f"unknown family '{args.family}'", key="--family", fix=did_you_mean(args.family, zoo.families()))
    for key in (
        "image_size",
        "in_chans",
        "num_classes",
        "frames",
    ):  # 0 would silently mean "the default" (image size) or list nothing
        value = getattr(args, key)
        if value is not None and value < 1:
            flag = "--" + key.replace("_", "-")
            raise StudyError(
                f"must be a positive integer, got {value}",
                key=flag,
                fix=f"e.g. {flag} {dict(image_size=28, in_chans=3, num_classes=10, frames=16)[key]}",
            )
    if args.frames and args.family and not zoo.is_video(args.family):
        videos = [f for f in zoo.families() if zoo.is_video(f)]
        raise StudyError(
            f"{args.family} is an image family; --frames lists video families",
            key="--frames",
            fix=f"drop --frames, or --family {' or '.join(videos)}",
        )
    rows, misfits = [], []
    # --frames T: the video families at T frames; without it every family, video ones at zoo.DEFAULT_FRAMES
    for ms in (m for m in zoo.list_models(args.family) if zoo.is_video(m) or not args.frames):
        size = args.image_size or zoo.default_image_size(ms)
        frames = (args.frames or zoo.DEFAULT_FRAMES) if zoo.is_video(ms) else 0
        dims = {"image_size": size, "in_chans": args.in_chans, "num_classes": args.num_classes, "frames": frames}
        try:
            zoo.check(ms, size, args.in_chans, frames)
        except StudyError as e:
            misfits.append(e)
            continue  # this model cannot take that resolution (or clip length): not listed
        rows.append(
            {
                "name": ms.name,
                "family": ms.family,
                "size": ms.size,
                "image_size": size,
                **({"frames": frames} if frames else {}),  # video models only: image rows keep their keys
                "params": flops.param_count(ms, **dims),
                "fwd_gmacs": round(flops.forward_gmacs(ms, **dims), 6),
            }
        )
    if not rows:  # an empty table with exit 0 reads as "no models": say why instead
        which = f"family '{args.family}'" if args.family else "the registry"
        flag, what = (
            ("--frames", f"{args.frames} frames")
            if args.frames and not args.image_size
            else ("--image-size", f"{args.image_size} px input")
        )
        raise StudyError(
            f"no model of {which} takes {what} ({misfits[0].what})",
            key=flag,
            fix=f"{misfits[0].fix} ('harness models' without {flag} lists each at its default)",
        )
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    from rich.table import Table

    t = Table(title=f"models ({args.in_chans} channels, {args.num_classes} classes)")
    for c in ("name", "family", "size", "px", "frames", "params", "GMACs"):
        t.add_column(c, justify="right" if c in ("px", "frames", "params", "GMACs") else "left")
    for r in rows:  # GMACs per image, per clip for video models
        frames = str(r.get("frames", ""))
        t.add_row(r["name"], r["family"], r["size"], str(r["image_size"]), frames, f"{r['params']:,}", f"{r['fwd_gmacs']:.4g}")
    out_console().print(t)
    return 0


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """`argv`: the command line about to be parsed; a LAZY plugin is imported only when it names its verb."""
    p = argparse.ArgumentParser(prog="harness", description="Architecture scaling studies: ResNet vs ViT vs Mixer vs ConvNeXt.")
    p.add_argument("--version", action="version", version=f"harness {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run a study (skips finished trials)")
    r.add_argument("study", help="studies/NAME.yaml")
    r.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="change the study: train.lr=1e-3 grid.seed=[0,1,2] (YAML values); KEY+=VALUE appends to a list",
    )
    r.add_argument(
        "--backend",
        default="ray",
        help="ray (default; embedded local Ray without --address) | slurm (submitit job arrays) | local (in process, sequential)",
    )
    r.add_argument("--results", default="results", help="results root; the study writes to RESULTS/NAME (default: results)")
    r.add_argument("--address", default=None, help="Ray cluster address host:port (default: $RAY_ADDRESS, else a local Ray)")
    r.add_argument(
        "--smoke", action="store_true", help="same grid shape, tiny budget: any study in seconds (results go to NAME-smoke)"
    )
    r.add_argument("--dry-run", action="store_true", help="print the trials with params, GMACs and training compute; run nothing")
    r.add_argument("--no-report", action="store_true", help="do not write RESULTS/NAME/report when the study finishes")
    g = r.add_argument_group("SLURM (--backend slurm; each overrides the study's slurm: section)")
    g.add_argument("--no-wait", action="store_true", help="submit the job array and return; 'harness status' follows it")
    g.add_argument("--partition", default=None)
    g.add_argument("--time", default=None, help="time limit per trial: minutes or HH:MM:SS")
    g.add_argument("--cpus-per-task", type=int, default=None, help="default: the study's resources.cpus")
    g.add_argument("--gpus-per-task", type=int, default=None, help="default: the study's resources.gpus, rounded up")
    g.add_argument("--mem-gb", type=float, default=None)
    g.add_argument("--account", default=None)
    g.add_argument("--qos", default=None)
    g.add_argument("--array-parallelism", type=int, default=None, help="at most this many trials at once")
    g.add_argument("--setup", action="append", default=None, help="a shell line run before each trial (repeatable)")
    g.add_argument("--checkpoint-every", type=int, default=None, help="steps between checkpoints; requeued jobs resume (0 = off)")
    r.set_defaults(func=_run)

    s = sub.add_parser("status", help="ok / failed / pending trials of a study file or results directory")
    s.add_argument("target", help="studies/NAME.yaml or results/NAME")
    s.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="with a study file: the overrides it was run with")
    s.add_argument("--results", default="results")
    s.add_argument("--all", action="store_true", dest="include_all", help="count rows from earlier versions of the study too")
    s.set_defaults(func=_status)

    m = sub.add_parser("models", help="list registered models with params and GMACs")
    m.add_argument(
        "--json",
        action="store_true",
        help="a JSON list of {name, family, size, image_size, params, fwd_gmacs} (+ frames for video models)",
    )
    m.add_argument("--family", default=None)
    m.add_argument("--image-size", type=int, default=None, help="default: 224 for ImageNet configs, 28 for small sizes")
    m.add_argument("--in-chans", type=int, default=3)
    m.add_argument("--num-classes", type=int, default=1000)
    m.add_argument(
        "--frames",
        type=int,
        default=None,
        help="list the video families at this clip length (default: all families, video at 16 frames)",
    )
    m.set_defaults(func=_models)

    argv = sys.argv[1:] if argv is None else argv
    verb = next((a for a in argv if not a.startswith("-")), None)  # top-level options take no values
    for name in PLUGINS:
        if name in LAZY and verb not in LAZY[name]:
            for v, text in LAZY[name].items():
                sub.add_parser(v, help=text, add_help=False)  # listed in --help; the real parser comes with its verb
            continue
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise
            continue
        mod.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(argv)
    args, extra = parser.parse_known_args(argv)
    # argparse takes the positionals before the first option in one go: `run s.yaml --dry-run a=1` leaves
    # a=1 over. Overrides after options are still overrides (in the order typed); anything else is an error.
    if extra and hasattr(args, "overrides") and not any(a.startswith("-") for a in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args.func(args) or 0)
    except StudyError as e:
        print(f"error: {e.line()}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
