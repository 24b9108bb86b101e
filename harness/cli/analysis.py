"""`harness table | fit | plot | report | optimal | sql | export`: argument parsing only, each verb calls one function.

harness/cli/__init__.py finds these verbs (harness/cli/verbs.py) and turns a `StudyError` into its
one line on stderr and exit code 2. The analysis modules are imported inside the verbs:
matplotlib, seaborn and scipy cost seconds to import and every `harness` command imports
this module. For the same reason option values (formats, plot kinds) are checked by the
functions, which raise `StudyError` naming the valid ones, and defaults (bootstrap
resamples) live with the functions (None here means "the function's default").
"""

from __future__ import annotations

import argparse
import json
import sys

from harness.cli import verbs
from harness.cli.verbs import verb

ORDER = 2  # after run, status and models

_RESULTS_HELP = "results directory (one `harness run` wrote) or a .parquet/.csv file of trial rows"
_ALL_HELP = (
    "include rows from earlier versions of the study (default: only the study as last run); "
    "configurations are still kept apart, never averaged as seeds"
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the analysis verbs, with their options, to a parser (tests build one this way)."""
    verbs.register(subparsers, __name__)


def _table_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("results", help=_RESULTS_HELP)
    p.add_argument(
        "--rows",
        type=_csv_list,
        default=None,
        metavar="COLS",
        help="comma-separated row columns (default: family,model[,image_size,dataset])",
    )
    p.add_argument("--cols", default="data_size", metavar="COL", help="pivot column (default data_size)")
    p.add_argument(
        "--value", "--y", default="test_acc", metavar="COL", help="cell value (default test_acc; --y as in fit and plot)"
    )
    p.add_argument("--agg", default="mean", help="over seeds: mean (shown as mean ± std (n)) or max")
    p.add_argument("--format", default="md", dest="fmt", help="md (default), latex or csv")
    p.add_argument("--csv", action="store_const", const="csv", dest="fmt", help="the same as --format csv (as in sql)")
    p.add_argument("--json", action="store_true", help="the table as JSON: title, columns, display rows, notes, numbers")
    p.add_argument("--all", action="store_true", dest="include_all", help=_ALL_HELP)
    _add_tune(p)


@verb(
    "table",
    "comparison table: models x data sizes",
    _table_options,
    description="One row per model, one column per data size (by default); cells are mean ± std (n seeds); failed cells say why.",
)
def _table(args: argparse.Namespace) -> int:
    from harness.analysis.tables import table_path

    if args.json:
        from harness.analysis.io import load_results
        from harness.analysis.tables import tuned_table

        df, _ = load_results(args.results, include_all=args.include_all)
        table = tuned_table(df, rows=args.rows, cols=args.cols, value=args.value, agg=args.agg, tune=args.tune)
        print(json.dumps(table.to_dict(), indent=2))
        return 0
    print(
        table_path(
            args.results,
            rows=args.rows,
            cols=args.cols,
            value=args.value,
            agg=args.agg,
            fmt=args.fmt,
            include_all=args.include_all,
            **_given(tune=args.tune),
        ),
        end="",
    )
    return 0


def _fit_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("results", help=_RESULTS_HELP)
    p.add_argument(
        "--y", default="test_acc", metavar="COL", help="default test_acc (fitted as the error 1 - test_acc); e.g. test_loss"
    )
    p.add_argument(
        "--x",
        action="append",
        default=None,
        metavar="COL",
        help="default data_size; give twice (or COL,COL2) for E + A·x1^-alpha + B·x2^-beta",
    )
    p.add_argument("--by", default=None, metavar="COL", help="fit per group, e.g. family; reports crossovers")
    p.add_argument(
        "--holdout",
        type=int,
        default=0,
        metavar="N",
        help="refit without the N largest x values and report the extrapolation error",
    )
    p.add_argument(
        "--bootstrap", type=int, default=None, metavar="B", help="bootstrap resamples over trials (default 200; 0 = none)"
    )
    p.add_argument("--seed", type=int, default=0, help="bootstrap random seed")
    p.add_argument(
        "--form",
        default="auto",
        metavar="FORM",
        help="law shape (one --x): auto (default: each group's best extrapolation to its largest x), power "
        "E + A·x^-alpha, saturating E + A·(x + d)^-alpha, m4, broken; two --x: power",
    )
    p.add_argument("--json", action="store_true", help="print the fits as JSON")
    p.add_argument(
        "--isoflop",
        action="store_true",
        help="IsoFLOP profiles (Chinchilla approach 2): rows grouped by training-compute budget, a "
        "parabola in log(first --x) per budget, the power law through the minima, compared "
        "with the joint fit (approach 3)",
    )
    p.add_argument(
        "--budgets",
        default=None,
        metavar="C,C2",
        help="with --isoflop: the planned budgets (rows go to the nearest within 1.25x); default: clusters of the compute column",
    )
    p.add_argument("--compute", default=None, metavar="COL", help="with --isoflop: compute column (default train_flops)")
    p.add_argument("--all", action="store_true", dest="include_all", help=_ALL_HELP)
    _add_tune(p)


@verb(
    "fit",
    "fit a scaling law y = E + A·x^-alpha [+ B·x2^-beta]",
    _fit_options,
    description="Chinchilla approach 3: Huber loss on log residuals, L-BFGS-B "
    "from a grid of starts, bootstrap 95% intervals. Accuracy-type "
    "y are fitted as error 1 - y.",
)
def _fit(args: argparse.Namespace) -> int:
    args.x = [c for x in args.x or ["data_size"] for c in _csv_list(x)]
    if args.isoflop:
        return _isoflop(args)
    from harness.analysis.fits import fit_path

    report = fit_path(
        args.results,
        args.y,
        args.x,
        by=args.by,
        holdout=args.holdout,
        seed=args.seed,
        include_all=args.include_all,
        form=args.form,
        form_params=args.json,  # each form's full-data params: --json prints them, the summary does not
        **_given(bootstrap=args.bootstrap, tune=args.tune),
    )
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(report.summary(), end="")
    return 0 if report.fitted() else _nothing_fitted("fit")


def _isoflop(args: argparse.Namespace) -> int:
    from harness.analysis.isoflops import isoflop_path
    from harness.analysis.optimal import parse_budgets

    budgets = parse_budgets(args.budgets) if args.budgets else None
    report = isoflop_path(
        args.results,
        y=args.y,
        x=args.x,
        by=args.by,
        budgets=budgets,
        seed=args.seed,
        **_given(compute=args.compute, bootstrap=args.bootstrap),
    )
    print(json.dumps(report.to_json(), indent=2) if args.json else report.summary(), end="\n" if args.json else "")
    return 0


def _plot_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("results", help=_RESULTS_HELP)
    p.add_argument("--kind", default="scaling", help="scaling (default), pareto, cost or curves")
    p.add_argument(
        "--x",
        default=None,
        metavar="COL",
        help="x column (scaling: data_size; pareto: one of fwd_gmacs, train_flops, infer_img_s; cost: image_size or frames)",
    )
    p.add_argument("--y", default=None, metavar="COL", help="y column (default test_acc)")
    p.add_argument("--out", default=None, metavar="DIR", help="output directory (default RESULTS/plots)")
    p.add_argument("--bootstrap", type=int, default=None, metavar="B", help="resamples for the scaling fit's band (default 200)")
    p.add_argument("--json", action="store_true", help="print {kind, paths, skipped} as JSON")
    p.add_argument("--all", action="store_true", dest="include_all", help=_ALL_HELP)
    _add_tune(p)


@verb("plot", "scaling / Pareto / cost / learning-curve figures (PNG+SVG)", _plot_options)
def _plot(args: argparse.Namespace) -> int:
    from harness.analysis.plots import plot_path

    outcome = plot_path(
        args.results,
        args.kind,
        x=args.x,
        y=args.y,
        out=args.out,
        include_all=args.include_all,
        **_given(bootstrap=args.bootstrap, tune=args.tune),
    )
    if args.json:
        print(json.dumps(outcome.to_dict(), indent=2))
        return 0
    for p in outcome.paths:
        print(p)
    for why in outcome.skipped:
        print(f"skipped {why}")
    return 0


def _report_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("results", help="results directory")
    p.add_argument(
        "--bootstrap", type=int, default=None, metavar="B", help="resamples per fitted curve (default 200, as fit and plot)"
    )
    p.add_argument("--out", default=None, metavar="DIR", help="output directory (default RESULTS/report)")
    p.add_argument("--json", action="store_true", help='print {"index_md": PATH, "index_html": PATH} as JSON')
    p.add_argument("--all", action="store_true", dest="include_all", help=_ALL_HELP)


@verb("report", "write RESULTS/report/index.md and index.html", _report_options)
def _report(args: argparse.Namespace) -> int:
    from harness.analysis.report import write_report

    md = write_report(args.results, include_all=args.include_all, **_given(bootstrap=args.bootstrap, out=args.out))
    print(json.dumps({"index_md": str(md), "index_html": str(md.with_name("index.html"))}) if args.json else md)
    return 0


def _optimal_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("results", help=_RESULTS_HELP)
    p.add_argument(
        "--budget",
        required=True,
        action="append",
        metavar="C[,C2]",
        help="compute budgets, in the compute column's unit (train_flops: MACs) or 6ND FLOPs with 6N",
    )
    p.add_argument("--by", default=None, metavar="COL", help="one allocation per group, e.g. family")
    p.add_argument("--x", action="append", default=None, metavar="COL", help="N then D (default: --x params --x samples_seen)")
    p.add_argument("--y", default=None, metavar="COL", help="default test_acc (fitted as the error 1 - test_acc)")
    p.add_argument(
        "--flops-per-sample",
        default=None,
        dest="flops",
        metavar="counted|6N",
        help="counted (default: compute / samples from the rows, a power law in N) or 6N",
    )
    p.add_argument("--compute", default=None, metavar="COL", help="compute column (default train_flops)")
    p.add_argument("--bootstrap", type=int, default=None, metavar="B", help="resamples (default 200; 0 = none)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap random seed")
    p.add_argument(
        "--json",
        action="store_true",
        help="JSON rows {group, budget, n_opt, d_opt, n_opt_ci95, d_opt_ci95, metric_opt, a, b, flops_model}",
    )


@verb(
    "optimal",
    "compute-optimal model size and samples for FLOP budgets (Chinchilla approach 3)",
    _optimal_options,
    description="Joint fit L(N, D) = E + A/N^alpha + B/D^beta minimised under C = f(N)·D, "
    "f = counted training compute per sample (a power law in N per group) or 6N. "
    "N_opt, D_opt with 95% bootstrap intervals, the metric there, and a, b in "
    "N_opt ∝ C^a, D_opt ∝ C^b.",
)
def _optimal(args: argparse.Namespace) -> int:
    from harness.analysis.optimal import optimal_path, parse_budgets

    report = optimal_path(
        args.results,
        parse_budgets(args.budget),
        by=args.by,
        seed=args.seed,
        **_given(x=args.x, y=args.y, flops=args.flops, compute=args.compute, bootstrap=args.bootstrap),
    )
    if args.json:
        print(json.dumps(report.rows(), indent=2))
    else:
        print(report.summary(), end="")
    return 0 if report.rows() else _nothing_fitted("optimal")


def _sql_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("results", help="results directory (results/NAME, or results/ for every study) or a .parquet/.csv of rows")
    p.add_argument("query", help='e.g. "SELECT family, avg(test_acc) FROM trials GROUP BY 1"')
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--csv", action="store_const", const="csv", dest="fmt", help="CSV on stdout")
    fmt.add_argument("--json", action="store_const", const="json", dest="fmt", help="a JSON list of records on stdout")
    fmt.add_argument("--parquet", default=None, metavar="OUT", help="write the result to OUT as Parquet")
    p.add_argument("--all", action="store_true", dest="include_all", help=_ALL_HELP)
    p.add_argument(
        "--allow-files",
        action="store_true",
        help="let the query read other files (read_csv, read_parquet, ...); it still writes nothing",
    )
    p.set_defaults(fmt="table")


@verb(
    "sql",
    "SQL over results with DuckDB: views trials and curves",
    _sql_options,
    description="Views `trials` (one row per trial) and `curves` (study, trial_id, step, ...) over a study's results "
    "directory or a root of several (`study` tells them apart). Needs duckdb: pip install 'harness[sql]'.",
)
def _sql(args: argparse.Namespace) -> int:
    from harness.analysis.sql import run

    fmt = "parquet" if args.parquet else args.fmt
    return run(args.results, args.query, fmt=fmt, out=args.parquet, include_all=args.include_all, allow_files=args.allow_files)


def _export_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("results", help="results directory (results/NAME, or results/ for every study) or a .parquet/.csv of rows")
    p.add_argument("--mlflow", default=None, metavar="URI", help="tracking URI, e.g. http://127.0.0.1:5000")
    p.add_argument("--tensorboard", default=None, metavar="DIR", help="log directory: DIR/<study>/<trial>/")
    p.add_argument("--all", action="store_true", dest="include_all", help=_ALL_HELP)


@verb(
    "export",
    "log trials to MLflow and/or TensorBoard (idempotent)",
    _export_options,
    description="One MLflow run per trial (experiment = study; params = resolved config, metrics = the row and its "
    "learning curve, tags = provenance) and/or one TensorBoard run directory per trial with hparams. Exporting "
    "again adds nothing for unchanged trials and replaces re-run ones. Needs pip install 'harness[mlflow]' / "
    "'harness[tensorboard]'.",
)
def _export(args: argparse.Namespace) -> int:
    from harness.analysis.export import export_path

    try:
        lines = export_path(args.results, mlflow=args.mlflow, tensorboard=args.tensorboard, include_all=args.include_all)
    except KeyboardInterrupt:  # the run being written was deleted (export_mlflow): the tracker holds whole runs only
        print("interrupted: trials exported so far are kept whole; run the same command again to finish", file=sys.stderr)
        return 130
    for line in lines:
        print(line)
    return 0


def _add_tune(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tune",
        type=_csv_list,
        default=None,
        metavar="KEYS",
        help="training keys swept per point (e.g. lr,weight_decay): keep the best-validation trial "
        "of each point first (harness/analysis/tune.py)",
    )


def _nothing_fitted(verb_name: str) -> int:
    """Exit 1 when no group could be fitted: the output says why, a script must not read it as a result."""
    import sys

    print(f"harness {verb_name}: nothing could be fitted (see the notes above)", file=sys.stderr)
    return 1


def _csv_list(text: str) -> list[str]:
    return [c.strip() for c in text.split(",") if c.strip()]


def _given(**kwargs: object) -> dict[str, object]:
    """Keyword arguments the user set; the rest fall back to the function's defaults."""
    return {k: v for k, v in kwargs.items() if v is not None}
