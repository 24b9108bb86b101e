"""`harness run`: load + validate -> expand -> skip finished -> backend -> store -> report."""

from __future__ import annotations

import math
import numbers
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from harness import backends, claims, data, flops, spec, store
from harness.backends import slurm as slurm_backend
from harness.errors import StudyError
from harness.spec import Study, Trial

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


def out_console() -> Console:
    """stdout; wide when piped (rich would otherwise squeeze tables into 80 columns)."""
    return Console() if sys.stdout.isatty() else Console(width=200)


def prepare(path: str | Path, *, smoke: bool = False) -> tuple[Study, list[Trial]]:
    study = spec.load_study(path)
    if smoke:
        study = spec.smoke(study)
    return study, spec.expand(study)


def trial_table(study: Study, trials: list[Trial], done: set[str]) -> Table:
    """The --dry-run table: what would run, its size and its compute."""
    info = data.describe({**study.data_source, **study.dataset})
    t = Table(title=f"{study.name}: {len(trials)} trials ({len(trials) - len([x for x in trials if x.trial_id in done])} to run)")
    varying = spec.varying_train_keys(trials)  # training keys the grid or overrides vary get a column each
    for col in ("trial_id", "model", "data", "px", "seed", *varying, "steps", "params", "GMACs/img", "train FLOPs", "state"):
        t.add_column(col, justify="right" if col not in ("trial_id", "model", "state") else "left")
    total = 0.0
    for tr in trials:
        dims = {"image_size": tr.image_size, "in_chans": info.in_chans, "num_classes": info.num_classes}
        gmacs = flops.forward_gmacs(tr.model, **dims)
        from harness.train import total_steps

        steps = total_steps(tr.train, tr.data_size)
        compute = flops.train_flops(gmacs, steps * min(tr.train["batch_size"], tr.data_size))
        total += compute
        t.add_row(tr.trial_id, tr.model.name, str(tr.data_size), str(tr.image_size), str(tr.seed),
                  *[_cell(tr.train.get(k)) for k in varying], str(steps),
                  f"{flops.param_count(tr.model, **dims) / 1e6:.3f}M", f"{gmacs:.4f}", f"{compute:.3g}",
                  "done" if tr.trial_id in done else "pending")
    t.caption = f"total training compute {total:.3g} FLOPs (1 MAC = 1 FLOP; forward + backward = 3x forward)"
    return t


def _cell(v: object) -> str:
    return ",".join(f"{k}={x}" for k, x in v.items()) if isinstance(v, dict) else f"{v:g}" if isinstance(v, float) else str(v)


def run_study(path: str | Path, *, backend: str = "ray", results: str | Path = "results", address: str | None = None,
              smoke: bool = False, dry_run: bool = False, report: bool = True, console: Console | None = None,
              wait: bool = True, slurm: dict | None = None) -> int:
    """`slurm`: CLI overrides of the study's `slurm:` section; `wait=False` (SLURM only): submit and return."""
    console = console or Console(stderr=True)
    study, trials = prepare(path, smoke=smoke)
    be = backends.get(backend)  # validate the name before anything is written
    slurm_backend.options(study, slurm)  # the `slurm:` section is checked whatever the backend, so typos surface early
    _check_slurm_only(backend, wait, slurm)
    if hasattr(be, "preflight") and not dry_run:
        be.preflight(study, slurm=slurm)
    out_dir = store.study_dir(results, study.name)
    done = store.done_ids(out_dir)
    if dry_run:
        out_console().print(trial_table(study, trials, done))
        return EXIT_OK
    pending = [t for t in trials if t.trial_id not in done]
    console.print(f"[bold]{study.name}[/]: {len(trials)} trials, {len(trials) - len(pending)} already done, "
                  f"{len(pending)} to run on {backend} -> {out_dir}")
    store.save_study_file(path, out_dir)
    failed = 0
    opts = {"address": address, "out_dir": out_dir, "study": study, "slurm": slurm, "wait": wait}
    stored_by_backend = getattr(be, "WRITES_RESULTS", False)  # SLURM jobs write their own rows
    try:
        with _progress(console) as bar:
            task = bar.add_task(study.name, total=len(pending))
            # claims: a second driver of this study skips (and waits for) the trials this one runs
            for ev in claims.run_exclusive(pending, lambda ts, held: be.execute(ts, claims=held, **opts), out_dir,
                                           wait=wait, on_others=lambda held: _report_others(held, bar.console, wait)):
                if ev.output is None:
                    bar.console.print(f"  [cyan]stored[/] {ev.trial_id} by {escape(ev.by)}")
                else:
                    if not stored_by_backend:
                        store.write(ev.output, out_dir)
                    failed += not ev.output.ok
                    bar.console.print(_one_line(ev.output))
                bar.advance(task)
    except KeyboardInterrupt:
        more = f"; SLURM jobs keep running ('harness status {out_dir}')" if backend == "slurm" else ""
        console.print(f"[yellow]interrupted[/]: finished trials are stored in {out_dir}{more}; run the same command again to continue")
        return EXIT_INTERRUPTED
    if not wait:
        if pending:
            console.print(f"submitted: 'harness status {out_dir}' shows queued / running / done / failed; "
                          "run the same command again to wait for the rest")
        return EXIT_OK
    if report and len(trials) > failed:
        _write_report(out_dir, console)
    ok = len(store.done_ids(out_dir) & {t.trial_id for t in trials})
    console.print(f"{study.name}: {ok}/{len(trials)} ok, {len(trials) - ok} failed -> {out_dir}")
    return EXIT_OK if ok == len(trials) else EXIT_FAILED


def _check_slurm_only(backend: str, wait: bool, slurm: dict | None) -> None:
    given = [k for k, v in (slurm or {}).items() if v not in (None, [], {})]
    if backend != "slurm" and (given or not wait):
        flag = "--no-wait" if not wait else f"--{given[0].replace('_', '-')}"
        raise StudyError(f"{flag} applies to --backend slurm only", key=flag,
                         fix="add --backend slurm, or drop the flag (Ray and local drivers stay to collect results)")


def _report_others(held: dict[str, dict], console: Console, wait: bool = True) -> None:
    by: dict[str, int] = {}
    for info in held.values():
        by[claims.describe(info)] = by.get(claims.describe(info), 0) + 1
    who = ", ".join(f"{n} by {h}" for h, n in sorted(by.items()))
    then = ("waiting for their rows (a trial whose holder stops without one is run here)" if wait
            else "left to them")
    console.print(f"[cyan]{len(held)} trials are being run elsewhere[/] ({escape(who)}): {then}")


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("eta"), TimeRemainingColumn(), console=console, transient=False)


def _one_line(out: store.TrialOutput) -> str:
    r = out.row
    cell = escape(f"{r['model']:>10}") + f" n={r['data_size']:<6} {r['image_size']}px seed={r['seed']}"
    if out.ok:
        parts = [f"acc={r['test_acc']:.4f}"] if _finite(r.get("test_acc")) else []
        if _finite(r.get("train_img_s")):  # profiled training step
            parts.append(f"train {r['train_img_s']:,.0f} img/s")
        elif _finite(r.get("samples_seen")) and _finite(r.get("train_time_s")) and r["train_time_s"] > 0:
            parts.append(f"trained at {r['samples_seen'] / r['train_time_s']:,.0f} img/s")  # profiling off: wall clock
        if _finite(r.get("infer_img_s")) and not _finite(r.get("test_acc")):  # profile-only trial
            parts.append(f"infer {r['infer_img_s']:,.0f} img/s")
        return f"  [green]ok[/]     {cell}  {'  '.join(parts)}  {r['duration_s']:.1f}s"
    return f"  [red]failed[/] {cell}  {escape(r['error'])}"


def _finite(v: object) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _write_report(out_dir: Path, console: Console) -> None:
    try:
        from harness.analysis.report import write_report
    except ImportError:  # analysis is optional for running
        return
    try:
        path = write_report(out_dir)
        console.print(f"report: {path}")
    except Exception as e:  # a report problem must not turn finished trials into a failed run
        console.print(f"[yellow]report not written[/]: {type(e).__name__}: {e} (try 'harness report {out_dir}')")


def status(target: str | Path, *, results: str | Path = "results") -> tuple[Table, int]:
    """Counts of ok / failed / pending for a study file or a results directory."""
    target = Path(target)
    if target.is_file():
        study, trials = prepare(target)
        out_dir = store.study_dir(results, study.name)
        expected = {t.trial_id: t.label for t in trials}
    else:
        out_dir, expected = target, {}
        if not (target / "trials").is_dir() and not (target / "study.yaml").is_file():
            raise StudyError("not a study file or a results directory (no trials/ inside)", where=str(target),
                             fix="give studies/NAME.yaml or results/NAME")
    df = store.read(out_dir)
    on_disk = dict(zip(df["trial_id"], df["status"]))
    t = Table(title=f"{out_dir}")
    for c in ("state", "trials"):
        t.add_column(c)
    ok = sum(1 for s in on_disk.values() if s == "ok")
    # in flight: SLURM jobs squeue lists (queued / running), and trials another live driver holds
    jobs = slurm_backend.job_states(out_dir)
    held = {tid for tid, info in claims.holders(out_dir).items() if not info.get("slurm_job")}
    queued = {tid for tid, st in jobs.items() if st == "queued" and on_disk.get(tid) != "ok"}
    running = ({tid for tid, st in jobs.items() if st == "running"} | held) - queued - {tid for tid, s in on_disk.items() if s == "ok"}
    failed = {tid for tid, s in on_disk.items() if s != "ok"} - queued - running
    t.add_row("ok", str(ok))
    t.add_row("failed", str(len(failed)))
    t.add_row("queued", str(len(queued)))
    t.add_row("running", str(len(running)))
    pending = len(set(expected) - set(on_disk) - queued - running) if expected else 0
    if expected:
        t.add_row("pending", str(pending))
    for _, r in df[df["trial_id"].isin(failed)].iterrows():
        t.add_row(f"[red]failed[/] {r['trial_id']}", f"{r['model']} n={r['data_size']}: {r['error']}")
    return t, EXIT_OK if not failed and not pending and not queued and not running else EXIT_FAILED
