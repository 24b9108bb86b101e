"""`harness run | status`: run a study, and the state of its trials."""

from __future__ import annotations

import argparse
import json

from harness.cli.verbs import verb
from harness.console import out_console

ORDER = 0  # first in `harness --help`
SLURM_FLAGS = (
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


def _run_options(r: argparse.ArgumentParser) -> None:
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
    r.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved study (the file with the overrides applied), validated; run nothing",
    )
    r.add_argument("--no-report", action="store_true", help="do not write RESULTS/NAME/report when the study finishes")
    r.add_argument(
        "--no-branch", action="store_true", help="wsd budgets run independently, not as branches of one trunk (the check)"
    )
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


@verb("run", "run a study (skips finished trials)", _run_options)
def _run(args: argparse.Namespace) -> int:
    from harness.runner import resolved_config, run_study

    if args.print_config:
        print(resolved_config(args.study, args.overrides), end="")
        return 0
    return run_study(
        args.study,
        backend=args.backend,
        results=args.results,
        address=args.address,
        smoke=args.smoke,
        dry_run=args.dry_run,
        report=not args.no_report,
        wait=not args.no_wait,
        flags={k: getattr(args, k) for k in SLURM_FLAGS},
        overrides=args.overrides,
        branch=not args.no_branch,
    )


def _status_options(s: argparse.ArgumentParser) -> None:
    s.add_argument("target", help="studies/NAME.yaml or results/NAME")
    s.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="with a study file: the overrides it was run with")
    s.add_argument("--results", default="results")
    s.add_argument("--all", action="store_true", dest="include_all", help="count rows from earlier versions of the study too")
    s.add_argument("--json", action="store_true", help="print the counts (and each failure) as JSON; the exit code is the same")


@verb("status", "ok / failed / pending trials of a study file or results directory", _status_options)
def _status(args: argparse.Namespace) -> int:
    from harness.runner import status, status_counts

    kw = {"results": args.results, "include_all": args.include_all, "overrides": args.overrides}
    if args.json:
        counts = status_counts(args.target, **kw)
        print(json.dumps(counts, indent=2))
        return counts["exit_code"]
    table, code = status(args.target, **kw)
    out_console().print(table)
    return code
