"""`harness run`: load + validate -> expand -> skip finished -> backend -> store -> report.

The runner asks its backend through the protocol in harness/backends (validate, preflight,
execute, who writes rows, what is in flight) and never names one. It imports spec only where a
study file is read, and torch only for trials that will run (their memory cap counts models, and
the backend trains them): `harness status results/NAME` and a re-run of a finished study stay light.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console, Group, RenderableType
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from harness import backends, branches, claims, halving, store
from harness.console import out_console  # noqa: F401  (harness.runner.out_console: older imports)
from harness.errors import StudyError

if TYPE_CHECKING:
    from harness.spec import Study, Trial

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 130, 143  # 128 + SIGINT / SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so a run ends as it does on Ctrl-C (rows kept, backend stopped)."""


def prepare(path: str | Path, *, smoke: bool = False, overrides: Sequence[str] = ()) -> tuple[Study, list[Trial]]:
    """`overrides`: command-line `key=value` applied to the file before validation (harness/spec/overrides.py)."""
    from harness import spec

    study, trials = spec.load_expanded(path, overrides)  # loading expanded it to check every cell: once, not twice
    if smoke:
        study = spec.smoke(study)
        trials = spec.expand(study)
    return study, trials


def trial_compute(study: Study, trials: list[Trial]) -> list[dict]:
    """Per trial: steps, params, forward GMACs and the training compute its row will carry. The same
    function as the rows (flops_train: counted forward + backward), so a dry run's total is the sum of
    the stored `train_flops`; counts are cached per (model shape, image size, channels, classes)."""
    from harness import data, flops, flops_train
    from harness.spec import total_steps, views_per_sample

    info = data.describe({**study.data_source, **study.dataset})
    out = []
    for tr in trials:
        dims = {"image_size": tr.image_size, "in_chans": info.in_chans, "num_classes": info.num_classes, "frames": tr.frames or 0}
        steps = total_steps(tr.train, tr.data_size)
        samples = (
            steps * min(tr.train["batch_size"], tr.data_size) * views_per_sample(tr.train)
        )  # full batches only (data.EpochSampler)
        out.append(
            {
                "steps": steps,
                "params": flops.param_count(tr.model, **dims),
                "fwd_gmacs": flops.forward_gmacs(tr.model, **dims),
                "train_flops": flops_train.train_flops(tr.model, samples, **dims),
            }
        )
    return out


def trial_table(study: Study, trials: list[Trial], done: set[str]) -> Table:
    """The --dry-run table: what would run, its size and its compute."""
    t = Table(title=f"{study.name}: {len(trials)} trials ({len(trials) - len([x for x in trials if x.trial_id in done])} to run)")
    from harness import spec

    varying = spec.varying_train_keys(trials)  # training keys the grid or overrides vary get a column each
    for col in ("trial_id", "model", "data", "px", "seed", *varying, "steps", "params", "GMACs/img", "train FLOPs", "state"):
        t.add_column(col, justify="right" if col not in ("trial_id", "model", "state") else "left")
    compute = trial_compute(study, trials)
    for tr, c in zip(trials, compute):
        t.add_row(
            tr.trial_id,
            tr.model.name,
            str(tr.data_size),
            str(tr.image_size)
            + (f" x{tr.frames}f/{tr.frame_stride}" if tr.frames is not None else ""),  # video: clip length/stride
            str(tr.seed),
            *[
                _cell(tr.train.get(k, spec.UNHASHED_DEFAULTS.get(k))) for k in varying
            ],  # a default left out of the id shows as itself
            str(c["steps"]),
            f"{c['params'] / 1e6:.3f}M",
            f"{c['fwd_gmacs']:.4f}",
            f"{c['train_flops']:.3g}",
            "done" if tr.trial_id in done else "pending",
        )
    total = sum(c["train_flops"] for c in compute)
    t.caption = (
        f"total training compute {total:.3g} MACs = {2 * total:.3g} FLOPs (1 MAC = 2 FLOPs; forward + backward counted "
        "per model; the 'train FLOPs' column and the rows' train_flops count MACs)"
    )
    return t


def _cell(v: object) -> str:
    return ",".join(f"{k}={x}" for k, x in v.items()) if isinstance(v, dict) else f"{v:g}" if isinstance(v, float) else str(v)


def run_study(
    path: str | Path,
    *,
    backend: str = "ray",
    results: str | Path = "results",
    address: str | None = None,
    smoke: bool = False,
    dry_run: bool = False,
    report: bool = True,
    console: Console | None = None,
    wait: bool = True,
    flags: dict | None = None,
    overrides: Sequence[str] = (),
    branch: bool = True,
) -> int:
    """`flags`: the backend's `harness run` options (SLURM: overrides of the study's `slurm:` section);
    `wait=False` (a backend that detaches, SLURM): submit and return; `overrides`: command-line
    `key=value` changes to the study file (recorded with the study copy in the results directory);
    `branch=False` (`--no-branch`): wsd budgets run independently (harness/branches.py)."""
    from harness.spec import check_run_memory

    console = console or Console(stderr=True)
    study, trials = prepare(path, smoke=smoke, overrides=overrides)
    note = warmup_note(trials)
    if note:
        console.print(f"[yellow]note[/]: {escape(note)}")
    be = backends.get(backend)  # validate the name before anything is written
    with _blamed(overrides):  # `slurm.partiton=gpu` on the command line: the error names that override
        be.validate_options(study, flags, wait)  # every backend's study section (typos surface early), this one's flags
    rd = store.ResultsDir.of(results, study.name)
    out_dir = rd.path
    refuse_changed_data(study, rd)
    done = rd.done_ids()
    with _blamed(overrides):  # the memory cap, models counted (torch): the trials that will run, or all listed
        check_run_memory(study, trials if dry_run else [t for t in trials if t.trial_id not in done])
    if dry_run:
        if rd.unreadable.paths:
            console.print(f"[yellow]{escape(rd.unreadable.note())}[/]")
        _print_table(trial_table(study, trials, done))
        return EXIT_OK
    with _blamed(overrides):
        be.preflight(study, flags, address=address)  # package installed, cluster reachable, GPU visible: before any write
        tracker = _tracker(study, rd, console)  # tracking: its package missing is exit 2 here, before any write
    rd.preflight()  # a full disk, read-only root, a file in the way, a name too long: one line, exit 2
    term = _SigtermSeen()
    try:
        with _sigterm_interrupts(term), _live(tracker, study):
            return _run(
                be,
                path,
                study,
                trials,
                rd,
                address=address,
                report=report,
                console=console,
                wait=wait,
                flags=flags,
                overrides=overrides,
                tracker=tracker,
                branch=branch and wait,  # a detached submit cannot wait for trunks: cells run independently
            )
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (Terminated; Ray re-raises it as a plain KeyboardInterrupt)
        by_term = isinstance(e, Terminated) or term.seen
        note = be.interrupted_note(rd)
        more = f"; {note}" if note else ""
        what = "interrupted by SIGTERM" if by_term else "interrupted"
        console.print(f"[yellow]{what}[/]: finished trials are stored in {out_dir}{more}; run the same command again to continue")
        return EXIT_TERMINATED if by_term else EXIT_INTERRUPTED
    finally:
        if tracker is not None:
            tracker.close()


def refuse_changed_data(study: Study, rd: store.ResultsDir) -> None:
    """Rows of this study read the same data under another fingerprint: the shards, files or clips
    changed since, and a re-run would silently train new trial ids beside the old rows (issue 27)."""
    import json

    found = study.dataset.get("fingerprint")
    if not found or not rd.path.is_dir():
        return
    same = {k: v for k, v in study.dataset.items() if k != "fingerprint"}
    for text in set(rd.config_jsons()):
        stored = json.loads(text or "{}").get("dataset") or {}
        was = stored.get("fingerprint")
        if was and was != found and {k: v for k, v in stored.items() if k != "fingerprint"} == same:
            key = {"hf": "dataset.path", "webdataset": "dataset.urls"}.get(study.dataset["name"], "dataset.root")
            raise StudyError(
                f"the {study.dataset['name']} data changed since the rows in {rd.path} were trained "
                f"(fingerprint {found}, the rows have {was}); a re-run would train new trial ids beside them",
                key=key,
                fix="restore the data, or run the changed data under a new study name (name=...) or --results DIR",
            )


def warmup_note(trials: list[Trial]) -> str:
    """One line when a trial's warm-up covers its whole run (the schedule clips it at steps - 1: the
    lr rises to its peak at the last step and never decays); "" when none does."""
    from harness.spec import total_steps

    short = [
        (tr.train["warmup_steps"], n)
        for tr in trials
        if 0 < (n := total_steps(tr.train, tr.data_size)) <= tr.train["warmup_steps"]
    ]
    if not short:
        return ""
    warm, steps = max(short)
    return (
        f"{len(short)} of {len(trials)} trials are all warm-up (train.warmup_steps {warm} >= their {steps} steps: "
        "the lr rises to its peak at the last step and never decays); set train.warmup_steps below train.steps"
    )


def _tracker(study: Study, rd: store.ResultsDir, console: Console) -> object:
    """The study's `tracking:` sinks (harness/analysis/export.py), or None without that section."""
    if not study.tracking:
        return None
    from harness.analysis.export import Tracker

    return Tracker(study.tracking, lambda msg: console.print(f"[yellow]{escape(msg)}[/]"), rd)


def _live(tracker: object, study: Study) -> contextlib.AbstractContextManager:
    """Curve points of trials as they train (harness.live) to the tracker: in this process directly,
    in worker processes through the inherited tracking section."""
    if tracker is None:
        return contextlib.nullcontext()
    from harness import live

    return live.listening(tracker.live, study.tracking)  # type: ignore[attr-defined]


@contextlib.contextmanager
def _blamed(overrides: Sequence[str]) -> Iterator[None]:
    """A StudyError about a key the command line set names that override (harness/spec/overrides.py)."""
    try:
        yield
    except StudyError as e:
        from harness.spec import overrides as cli_overrides

        raise cli_overrides.blame(e, cli_overrides.parse_all(overrides)) from None


class _SigtermSeen:
    seen = False


@contextlib.contextmanager
def _sigterm_interrupts(term: _SigtermSeen) -> Iterator[None]:
    """SIGTERM (a scheduler, `kill`, a container stop) ends the run like Ctrl-C: Terminated is a
    KeyboardInterrupt, so the backend stops its work and finished rows stay."""

    def handler(signum: int, frame: object) -> None:
        term.seen = True
        raise Terminated()

    try:
        before = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (an embedding application): leave signals to it
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def _run(
    be: backends.Backend,
    path: str | Path,
    study: Study,
    trials: list[Trial],
    rd: store.ResultsDir,
    *,
    address: str | None,
    report: bool,
    console: Console,
    wait: bool,
    flags: dict | None,
    overrides: Sequence[str] = (),
    tracker: object = None,
    branch: bool = True,
) -> int:
    out_dir = rd.path
    kinds = backends.holder_kinds()  # external claim holders (a scheduler's jobs) and how to ask if they live
    _reap(rd, trials, kinds, console)
    done = rd.done_ids()
    for moved in rd.quarantine_unreadable():  # its trial is not done: it runs again
        console.print(f"[yellow]moved unreadable file aside[/]: {escape(str(moved))} (its trial runs again)")
    pending = [t for t in trials if t.trial_id not in done]
    console.print(
        f"[bold]{study.name}[/]: {len(trials)} trials, {len(trials) - len(pending)} already done, "
        f"{len(pending)} to run on {be.name} -> {out_dir}"
    )
    # the rows that belong; with overrides the copy is the resolved study, and study.json lists them
    rd.record_study(path, study.name, study.study_hash, [t.trial_id for t in trials], **_resolved(path, overrides))
    failed = 0
    opts = {"address": address, "rd": rd, "study": study, "flags": flags, "wait": wait}
    with _progress(console, visible=bool(pending)) as bar:  # nothing to run: no "0/0 eta -:--:--" bar
        task = bar.add_task(study.name, total=len(pending), visible=bool(pending))

        def wave(ts: list[Trial]) -> Iterator[claims.Event]:
            # claims: a second driver of this study skips (and waits for) the trials this one runs
            return claims.run_exclusive(
                ts,
                lambda ts, held: be.execute(ts, claims=held, **opts),
                rd,
                wait=wait,
                on_others=lambda held: _report_others(held, bar.console, wait, kinds),
                kinds=kinds,
            )

        for ev in _events(study, trials, pending, rd, wave, branch=branch and not be.writes_rows):
            if ev.output is None:
                bar.console.print(f"  [cyan]stored[/] {ev.trial_id} by {escape(ev.by)}")
            else:
                if not be.writes_rows:  # else the workers stored it themselves
                    rd.write(ev.output)
                if tracker is not None:  # after the row is safe; a tracker failure only warns
                    tracker.log(ev.output.row, ev.output.curve)
                failed += ev.output.row.get("status") == "failed"
                bar.console.print(_one_line(ev.output))
            bar.advance(task)
    if not wait:
        if pending:
            console.print(
                f"submitted: 'harness status {out_dir}' shows queued / running / done / failed; "
                "run the same command again to wait for the rest"
            )
        return EXIT_OK
    _compact(rd, console)
    if report and len(trials) > failed:
        _write_report(out_dir, console)
    ids = {t.trial_id for t in trials}
    states = [s for tid, s in rd.statuses().items() if tid in ids]
    ok, pruned = states.count("ok"), states.count("pruned")
    cut = f", {pruned} pruned" if pruned else ""
    console.print(f"{study.name}: {ok}/{len(trials)} ok{cut}, {len(trials) - ok - pruned} failed -> {out_dir}")
    note = branches.compute_note(_members(rd.read(), {t.trial_id for t in trials}))
    if note:
        console.print(note)
    if ok + pruned < len(trials):
        return EXIT_FAILED
    rd.drop_schedule_checkpoints()  # every trial decided: no branch or survivor will start from them
    return EXIT_OK


def _reap(rd: store.ResultsDir, trials: Sequence[Trial], kinds: claims.Kinds, console: Console | None) -> None:
    """Trials whose driver died hard (OOM kill, abort) while it held them: a failed row each, claims released."""
    ident = {
        t.trial_id: {"family": t.model.family, "size": t.model.size, "model": t.model.name, "image_size": t.image_size}
        | {"data_size": t.data_size, "seed": t.seed, "study": t.study}
        for t in trials
    }
    for tid in claims.reap(rd, ident, kinds=kinds):
        if console is not None:
            console.print(f"[yellow]died without a row[/]: {tid} (its process is gone): stored as failed")


def _events(
    study: Study, trials: list[Trial], pending: list[Trial], rd: store.ResultsDir, wave: halving.RunWave, *, branch: bool
) -> Iterator[claims.Event]:
    """The pending trials' events: halving rungs (search.halving), else wsd trunks then their
    branches, else one wave. `branch` False (--no-branch, a detached or row-writing backend): one wave."""
    if not branch:
        yield from wave(pending)
    elif study.search.get("halving"):
        yield from halving.run(pending, study, trials, rd, wave)
    else:
        for w in branches.plan(pending, rd):
            yield from wave(w)


def _members(df: object, ids: set[str]) -> object:
    return df[df["trial_id"].isin(ids)] if len(df) else df


def _resolved(path: str | Path, overrides: Sequence[str]) -> dict:
    """The overrides as typed and the resolved study YAML, for the results directory's copy ({} without any)."""
    if not overrides:
        return {}
    from harness import spec
    from harness.spec import overrides as cli_overrides

    raw = spec.read_study_mapping(path)
    return {
        "overrides": list(overrides),
        "resolved": cli_overrides.resolved_yaml(raw, cli_overrides.parse_all(overrides), str(path)),
    }


def resolved_config(path: str | Path, overrides: Sequence[str] = ()) -> str:
    """`harness run --print-config`: the study as it would run (validated first: bad input is exit 2), as YAML."""
    from harness import spec
    from harness.spec import overrides as cli_overrides

    with _blamed(overrides):
        spec.check_run_memory(*prepare(path, overrides=overrides))
    raw = spec.read_study_mapping(path)
    ovs = cli_overrides.parse_all(overrides)
    if ovs:
        return cli_overrides.resolved_yaml(raw, ovs, str(path))
    return Path(path).read_text(encoding="utf-8")


RICH_ROWS = 500  # rich lays out 10,000 rows in ~40 s (measured: 4.2 of 4.7 s of a 1,000-trial dry run)


def _print_table(t: Table) -> None:
    """rich for a screenful; past RICH_ROWS the same cells as aligned plain text (milliseconds)."""
    if t.row_count <= RICH_ROWS:
        out_console().print(t)
        return
    cols = [[c.header, *(str(x) for x in c._cells)] for c in t.columns]
    widths = [max(map(len, c)) for c in cols]
    right = [c.justify == "right" for c in t.columns]
    lines = [str(t.title)]
    for i in range(len(cols[0])):
        lines.append("  ".join(c[i].rjust(w) if r else c[i].ljust(w) for c, w, r in zip(cols, widths, right)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append(str(t.caption or ""))
    sys.stdout.write("\n".join(lines) + "\n")


def _report_others(held: dict[str, dict], console: Console, wait: bool = True, kinds: claims.Kinds = ()) -> None:
    by: dict[str, int] = {}
    for info in held.values():
        by[claims.describe(info, kinds)] = by.get(claims.describe(info, kinds), 0) + 1
    who = ", ".join(f"{n} by {h}" for h, n in sorted(by.items()))
    then = "waiting for their rows (a trial whose holder stops without one is run here)" if wait else "left to them"
    console.print(f"[cyan]{len(held)} trials are being run elsewhere[/] ({escape(who)}): {then}")


def _progress(console: Console, visible: bool = True) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
        disable=not visible,
    )


def _one_line(out: store.TrialOutput) -> str:
    r = out.row
    clip = f" {r['frames']}f/{r['frame_stride']}" if r.get("frames") is not None else ""
    cell = escape(f"{r['model']:>10}") + f" n={r['data_size']:<6} {r['image_size']}px{clip} seed={r['seed']}"
    unit = r.get("sample_unit") or "img"  # video trials count clips
    if out.ok:
        parts = [f"acc={r['test_acc']:.4f}"] if _finite(r.get("test_acc")) else []
        parts += [f"{k.removesuffix('_acc')}={r[k]:.4f}" for k in ("probe_acc", "fewshot_10_acc") if _finite(r.get(k))]
        if _finite(r.get("train_img_s")):  # profiled training step
            parts.append(f"train {r['train_img_s']:,.0f} {unit}/s")
        elif _finite(r.get("samples_seen")) and _finite(r.get("train_time_s")) and r["train_time_s"] > 0:
            parts.append(f"trained at {r['samples_seen'] / r['train_time_s']:,.0f} {unit}/s")  # profiling off: wall clock
        if _finite(r.get("infer_img_s")) and not _finite(r.get("test_acc")):  # profile-only trial
            parts.append(f"infer {r['infer_img_s']:,.0f} {unit}/s")
        return f"  [green]ok[/]     {cell}  {'  '.join(parts)}  {r['duration_s']:.1f}s"
    if r.get("status") == "pruned":
        at = f"rung {r['halving_rung']} (step {r['pruned_step']}): {r['pruned_metric']:.4f}"
        return f"  [yellow]pruned[/] {cell}  {escape(at)}"
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


def _compact(rd: store.ResultsDir, console: Console) -> None:
    """Merge the study's row files so the next reads open one file (best effort: rows are safe either way)."""
    try:
        rd.compact()
    except Exception as e:  # a full disk now must not turn finished trials into a failed run
        console.print(f"[yellow]results not compacted[/]: {type(e).__name__}: {e} (try 'harness compact {rd.path}')")


def status(
    target: str | Path, *, results: str | Path = "results", include_all: bool = False, overrides: Sequence[str] = ()
) -> tuple[RenderableType, int]:
    """Counts of ok / failed / pending for a study file or a results directory: by default of the
    trials of the study (the file given, with `overrides` if any, or the study as last run in that directory)."""
    counts = status_counts(target, results=results, include_all=include_all, overrides=overrides)
    t = Table()  # the path above it, not as the title: rich wraps a title at the table's width, mid-word
    for c in ("state", "trials"):
        t.add_column(c)
    for state in ("ok", "pruned", "failed", "queued", "running", "pending"):
        if counts[state] is not None and (state != "pruned" or counts[state]):  # pruned: halving studies only
            t.add_row(state, str(counts[state]))
    for f in counts["failures"]:
        t.add_row(f"[red]failed[/] {f['trial_id']}", f"{f['model']} n={f['data_size']}: {f['error']}")
    notes = counts["notes"]
    title = Text(counts["results"], style="italic")
    shown = Group(title, t, *(Text(n, style="yellow") for n in notes))  # notes unwrapped, one line each
    return shown, counts["exit_code"]


def status_counts(
    target: str | Path, *, results: str | Path = "results", include_all: bool = False, overrides: Sequence[str] = ()
) -> dict:
    """`harness status --json`: {results, ok, failed, queued, running, pending (None for a results
    directory with no study.json), failures: [{trial_id, model, data_size, error}], notes, exit_code}."""
    target = Path(target)
    if overrides and not target.is_file():
        raise StudyError(
            "command-line overrides need a study file", where=str(target), fix="give studies/NAME.yaml KEY=VALUE ..."
        )
    if target.is_file():
        study, trials = prepare(target, overrides=overrides)
        rd = store.ResultsDir.of(results, study.name)
        expected = {t.trial_id: t.label for t in trials}
        members = set(expected)
    else:
        rd, expected, trials = store.ResultsDir(target), {}, []
        if not rd.is_results_dir():
            raise StudyError(
                "not a study file or a results directory (no trials/ inside)",
                where=str(target),
                fix="give studies/NAME.yaml or results/NAME",
            )
        members = rd.membership()
        expected = dict.fromkeys(members or (), "")  # the study as last run: what is not on disk is pending
    kinds = backends.holder_kinds()  # claims handed to external holders are counted through `jobs`
    _reap(rd, trials, kinds, None)  # a dead holder's trial: a failed row, not running
    df = rd.read()
    notes = [rd.unreadable.note()] if rd.unreadable.paths else []
    if members is not None and not include_all:
        outside = ~df["trial_id"].isin(members)
        if outside.any():
            notes.append(f"{int(outside.sum())} rows from earlier versions of this study not shown; --all to include")
        df = df[~outside]
    on_disk = dict(zip(df["trial_id"], df["status"]))
    ok = sum(1 for s in on_disk.values() if s == "ok")
    # in flight: work a backend tracks (SLURM jobs squeue lists: queued / running), and trials another live driver holds
    jobs = backends.in_flight(rd)
    held = {tid for tid, info in claims.holders(rd, kinds=kinds).items() if claims.external(info, kinds) is None}
    queued = {tid for tid, st in jobs.items() if st == "queued" and on_disk.get(tid) != "ok"}
    running = (
        ({tid for tid, st in jobs.items() if st == "running"} | held)
        - queued
        - {tid for tid, s in on_disk.items() if s in ("ok", "pruned")}
    )
    failed = {tid for tid, s in on_disk.items() if s not in ("ok", "pruned")} - queued - running
    pruned = sum(1 for s in on_disk.values() if s == "pruned")  # successive halving stopped them: decided, not failed
    note = branches.compute_note(df) if len(df) else ""  # compute spent vs the independent total
    pending = len(set(expected) - set(on_disk) - queued - running) if expected else 0
    failures = [
        {"trial_id": str(r["trial_id"]), "model": str(r["model"]), "data_size": _plain(r["data_size"]), "error": str(r["error"])}
        for _, r in df[df["trial_id"].isin(failed)].iterrows()
    ]
    done = not failed and not pending and not queued and not running
    return {
        "results": str(rd.path),
        "ok": ok,
        "failed": len(failed),
        "pruned": pruned,
        "queued": len(queued),
        "running": len(running),
        "pending": pending if expected else None,
        "failures": failures,
        "notes": notes + ([note] if note else []),
        "exit_code": EXIT_OK if done else EXIT_FAILED,
    }


def _plain(v: object) -> object:
    """A numpy scalar as the Python number JSON writes."""
    return v.item() if hasattr(v, "item") else v
