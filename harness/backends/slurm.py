"""SLURM: the trials become one submitit job array; each job writes its own row.

One `sbatch --array=0-(N-1)%P` per run (submitit `map_array`); each array task runs
`run_trial` on one trial and writes its row and curve straight into the results directory
with `store.write` (atomic), which therefore must be on a filesystem the compute nodes share.
The driver then waits with a progress bar (rows appearing on disk, job states from `squeue`)
or returns at once (`--no-wait`); `harness status` shows queued / running / done / failed from
the jobs manifest `results/<study>/slurm/jobs.json` and `squeue`.

Parameters come from the study's `slurm:` section, overridden by `harness run` flags:

    slurm:
      partition: gpu            # --partition
      time: 60                  # minutes or a SLURM time "HH:MM:SS" / "D-HH:MM:SS" (--time)
      cpus_per_task: 4          # default: resources.cpus (--cpus-per-task)
      gpus_per_task: 1          # default: resources.gpus rounded up: SLURM allocates whole GPUs (--gpus-per-task)
      mem_gb: 16                # default: the cluster's DefMemPerCPU (--mem-gb)
      account: proj42           # --account
      qos: normal               # --qos
      array_parallelism: 16     # at most this many trials at once (--array-parallelism)
      setup: ["module load cuda/12.4"]   # shell lines before the trial starts (--setup, repeatable)
      checkpoint_every: 50      # steps; 0 = off (--checkpoint-every)
      max_timeouts: 3           # requeues after hitting the time limit (with checkpoint_every)
      signal_delay_s: 90        # SIGUSR2 this long before the limit: time to requeue (default: 90, at most half the limit)
      sbatch: {constraint: a100}  # any other sbatch option, passed through

Why `checkpoint_every` lives here and not under `train:`: a trial's id hashes its `train`
section, and checkpointing does not change what a trial computes (a resumed run reproduces the
uninterrupted one step for step), so it must not change ids or split results.

Timeouts and preemption: every job is a `submitit.helpers.Checkpointable`. On SIGUSR2 (sent
`signal_delay_s` before the time limit, or on preemption) submitit requeues the job, and the
requeued job finds `results/<study>/slurm/checkpoints/<trial_id>.pt` and resumes from that step.
Rows of checkpointed trials carry `resumes` and `resumed_from_step`. Without checkpointing a
timeout is not requeued (it would only start again from step 0): the row says the trial hit the
time limit. Preemption is always requeued.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from harness import claims as claimlib
from harness.backends import Backend, slurm_claims, squeue
from harness.errors import StudyError, did_you_mean
from harness.store import ResultsDir, TrialOutput

if TYPE_CHECKING:  # submitit is imported where jobs are submitted or run: `status` and other backends need none
    from harness.spec import Study, Trial

POLL_S = 2.0  # rows on disk are checked this often; squeue at most every squeue.SQUEUE_EVERY_S
GONE_POLLS = 3  # a job squeue no longer lists, still without a row after this many squeue answers: failed

DEFAULTS: dict[str, Any] = {
    "partition": None,
    "time": 60,
    "cpus_per_task": None,
    "gpus_per_task": None,
    "mem_gb": None,
    "account": None,
    "qos": None,
    "array_parallelism": 256,
    "setup": [],
    "checkpoint_every": 0,
    "max_timeouts": 3,
    "signal_delay_s": 90,
    "sbatch": {},
}
FLAGS = frozenset(DEFAULTS) - {"max_timeouts", "signal_delay_s", "sbatch"}  # those `harness run` takes as --flags
QUEUED, RUNNING = squeue.QUEUED, squeue.RUNNING


# ----------------------------------------------------------------------------- parameters


def parse_time(value: Any, key: str = "slurm.time", where: str = "") -> int:
    """Minutes (int) from 90, "90", "1:30:00", "2-00:00:00" or "45:00" (MM:SS); rounded up to whole minutes."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", str(value).strip())
    if not m or isinstance(value, bool):
        raise StudyError(f"invalid time limit {value!r}", where=where, key=key, fix="minutes (e.g. 90) or HH:MM:SS or D-HH:MM:SS")
    days, a, b, c = (int(x) if x else None for x in m.groups())
    if c is not None:  # H:M:S
        seconds = a * 3600 + b * 60 + c
    elif b is not None:  # D-H:M or M:S, as sbatch reads them
        seconds = a * 3600 + b * 60 if days is not None else a * 60 + b
    else:  # D-H or M
        seconds = a * 3600 if days is not None else a * 60
    seconds += (days or 0) * 86400
    if seconds <= 0:
        raise StudyError(f"time limit {value!r} is zero", where=where, key=key, fix="give at least 1 minute")
    return math.ceil(seconds / 60)


def validate(section: dict, where: str = "", prefix: str = "slurm") -> dict:
    """The study's `slurm:` section (or the CLI flags) checked key by key; returns only the keys given."""
    out = {}
    for key, value in section.items():
        path = f"{prefix}.{key}" if prefix else f"--{key.replace('_', '-')}"
        if key not in DEFAULTS:
            raise StudyError(f"unknown key '{key}'", where=where, key=path, fix=did_you_mean(str(key), DEFAULTS))
        if value is None:
            continue
        if key == "time":
            value = parse_time(value, path, where)
        elif key in ("partition", "account", "qos"):
            if not isinstance(value, str) or not value.strip():
                raise StudyError(f"must be a name, got {value!r}", where=where, key=path, fix=f"e.g. {key}: gpu")
        elif key in ("cpus_per_task", "array_parallelism"):
            _int(value, 1, where, path)
        elif key in ("gpus_per_task", "checkpoint_every", "max_timeouts", "signal_delay_s"):
            _int(value, 0, where, path)
        elif key == "mem_gb":
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise StudyError(f"must be a positive number of GB, got {value!r}", where=where, key=path, fix="e.g. mem_gb: 16")
        elif key == "setup":
            value = [value] if isinstance(value, str) else value
            if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
                raise StudyError("must be a list of shell lines", where=where, key=path, fix='e.g. setup: ["module load cuda"]')
        elif key == "sbatch":
            check_sbatch(value, where, path)
        out[key] = value
    return out


MAX_SBATCH_OPTIONS, MAX_SBATCH_CHARS = 64, 1024
# sbatch lines harness writes itself (the job array and its logs) and those with a slurm.* key of their own
SBATCH_OWN = {"array": None, "output": None, "error": None, "job-name": None, "signal": "signal_delay_s", "open-mode": None}
SBATCH_OWN |= {"time": "time", "partition": "partition", "account": "account", "qos": "qos", "mem": "mem_gb"}
SBATCH_OWN |= {"cpus-per-task": "cpus_per_task", "gpus-per-node": "gpus_per_task"}


def check_sbatch(value: Any, where: str, path: str) -> None:
    """`slurm.sbatch` options become `#SBATCH --key=value` lines: names, types and sizes are checked
    (issue 27: an override's values were not; a newline in one starts a shell line of its own)."""
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise StudyError("must be a mapping of sbatch options", where=where, key=path, fix="e.g. sbatch: {constraint: a100}")
    if len(value) > MAX_SBATCH_OPTIONS:
        raise StudyError(
            f"{len(value)} options is above the {MAX_SBATCH_OPTIONS} limit",
            where=where,
            key=path,
            fix="give the options you need",
        )
    for k, v in value.items():
        at = f"{path}.{k}" if re.fullmatch(r"[\w-]{1,64}", k) else path
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]{0,63}", k):
            raise StudyError(
                f"{k[:80]!r} is not an sbatch option name", where=where, key=at, fix="e.g. constraint, mail-type, exclusive"
            )
        own = k.replace("_", "-").lower()
        if own in SBATCH_OWN:
            mine = SBATCH_OWN[own]
            raise StudyError(
                f"--{own} is set by harness" + (f" from slurm.{mine}" if mine else " (the job array and its logs)"),
                where=where,
                key=at,
                fix=f"set slurm.{mine} instead" if mine else "leave it out",
            )
        ok = v is True or (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)) or isinstance(v, str)
        if not ok:
            raise StudyError(
                f"must be a string, a number or true (a flag), got {type(v).__name__} {str(v)[:80]!r}",
                where=where,
                key=at,
                fix=f"e.g. sbatch: {{{k}: VALUE}}; true writes --{own} alone",
            )
        if isinstance(v, str) and (not v.strip() or len(v) > MAX_SBATCH_CHARS or any(ord(c) < 32 or ord(c) == 127 for c in v)):
            raise StudyError(
                f"value {v[:80]!r} is empty, longer than {MAX_SBATCH_CHARS} characters or holds a control character "
                "(a line break would end the #SBATCH line)",
                where=where,
                key=at,
                fix="one line of printable text",
            )


def _int(value: Any, low: int, where: str, key: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise StudyError(f"must be a whole number >= {low}, got {value!r}", where=where, key=key, fix=f"use an integer >= {low}")


def options(study: Study, flags: dict | None = None) -> dict:
    """Defaults < resources < study `slurm:` < CLI flags, validated.

    The requeue signal must come before the limit with time to spare: SLURM sends it as soon as less
    than `signal_delay_s` is left, so a delay as long as the limit signals the job as it starts,
    before submitit has installed its handler, and SIGUSR2's default action kills it (measured on
    scripts/slurm_up.sh's cluster: 90 s before a 1-minute limit arrived 6-28 s after the start). A delay given that
    long is an error; the default, 90 s, is capped at half the limit."""
    opts = dict(DEFAULTS, cpus_per_task=int(study.resources["cpus"]), gpus_per_task=math.ceil(study.resources["gpus"]))
    given = validate(study.slurm, where=study.path)
    opts.update(given)
    opts.update(validate({k: v for k, v in (flags or {}).items() if v is not None}, prefix=""))
    limit_s = opts["time"] * 60
    capped = min(DEFAULTS["signal_delay_s"], limit_s // 2)
    if "signal_delay_s" not in given:
        opts["signal_delay_s"] = capped
    elif opts["signal_delay_s"] >= limit_s:
        raise StudyError(
            f"{opts['signal_delay_s']} s is not shorter than the time limit ({opts['time']} min): SLURM would send "
            "the requeue signal as the job starts",
            where=study.path,
            key="slurm.signal_delay_s",
            fix=f"set it below {limit_s} (e.g. {capped}) or raise the time limit",
        )
    return opts


def executor_parameters(study: Study, opts: dict) -> dict:
    """submitit SlurmExecutor parameters (the sbatch lines)."""
    params: dict[str, Any] = {
        "job_name": f"harness-{study.name}",
        "time": opts["time"],
        "cpus_per_task": opts["cpus_per_task"],
        "array_parallelism": opts["array_parallelism"],
        "signal_delay_s": opts["signal_delay_s"],
    }
    if opts["gpus_per_task"]:
        params["gpus_per_node"] = opts["gpus_per_task"]  # one task per job, so per node = per task
    if opts["mem_gb"]:
        params["mem"] = f"{math.ceil(opts['mem_gb'] * 1024)}M"
    for key in ("partition", "account", "qos"):
        if opts[key]:
            params[key] = opts[key]
    if opts["setup"]:
        params["setup"] = list(opts["setup"])
    if opts["sbatch"]:
        params["additional_parameters"] = dict(opts["sbatch"])
    return params


# ----------------------------------------------------------------------------- the job


def __getattr__(name: str) -> Any:
    """`TrialJob` lives in slurm_job (it subclasses a submitit class); jobs pickled under this name still load."""
    if name == "TrialJob":
        from harness.backends.slurm_job import TrialJob

        return TrialJob
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ----------------------------------------------------------------------------- driver side


def execute(
    trials: Sequence[Trial],
    *,
    rd: ResultsDir,
    study: Study,
    slurm: dict | None = None,
    wait: bool = True,
    claims: claimlib.Claims | None = None,
    **_: object,
) -> Iterator[TrialOutput]:
    if not trials:
        return
    rd = ResultsDir(rd.path.resolve())  # jobs run elsewhere: absolute paths only
    opts = options(study, slurm)
    stamps = {t.trial_id: rd.row_stamp(t.trial_id) for t in trials}
    jobs = submit(trials, rd, study, opts)
    if claims is not None:
        slurm_claims.hand_over(claims, jobs)
    if wait:
        yield from watch({t.trial_id: t for t in trials}, jobs, stamps, rd)


def preflight(study: Study, slurm: dict | None = None, **_: object) -> None:
    """Before anything is written: the options are valid and this machine can submit jobs."""
    options(study, slurm)
    BACKEND.require()
    if shutil.which("sbatch") is None or shutil.which("srun") is None:
        raise StudyError(
            "sbatch/srun not found: --backend slurm runs on a SLURM login node",
            key="--backend",
            fix="run there, or use --backend ray (a Ray cluster) or local",
        )
    why = squeue.controller_answers()
    if why is not None:
        raise StudyError(
            f"the SLURM controller does not answer here: {why}",
            key="--backend",
            fix="check 'sinfo' and slurmctld on this login node, or use --backend ray or local",
        )


def submit(trials: Sequence[Trial], rd: ResultsDir, study: Study, opts: dict) -> dict[str, str]:
    """One job array for the one-worker trials, one multi-task job per multi-worker trial; returns
    trial_id -> SLURM job id ("123_4", "125") and records each submission in jobs.json."""
    ids: dict[str, str] = {}
    single = [t for t in trials if t.resources.get("workers", 1) == 1]
    if single:
        ids.update(_submit(single, rd, study, opts, executor_parameters(study, opts)))
    for t in trials:
        if t.resources.get("workers", 1) > 1:
            ids.update(_submit([t], rd, study, opts, data_parallel_parameters(study, opts, t.resources)))
    return ids


def data_parallel_parameters(study: Study, opts: dict, resources: dict) -> dict:
    """One job of `workers` tasks over `nodes` nodes (submitit runs the trial in every task; the
    tasks form the process group from its JobEnvironment), each task with its worker's CPUs and GPU."""
    params = executor_parameters(study, opts)
    params.pop("array_parallelism")
    per_node = resources["workers"] // resources.get("nodes", 1)
    gpus = opts["gpus_per_task"] or int(resources.get("gpus", 0))
    params.update(
        nodes=resources.get("nodes", 1), ntasks_per_node=per_node, cpus_per_task=opts["cpus_per_task"] or resources["cpus"]
    )
    params.pop("gpus_per_node", None)
    if gpus:
        params["gpus_per_node"] = gpus * per_node
    return params


def _submit(trials: Sequence[Trial], rd: ResultsDir, study: Study, opts: dict, params: dict) -> dict[str, str]:
    import submitit

    logs = rd.slurm_logs
    executor = submitit.SlurmExecutor(folder=logs, max_num_timeout=opts["max_timeouts"] if opts["checkpoint_every"] else 0)
    executor.update_parameters(**params)
    submitted = time.time()
    try:
        from harness.backends.slurm_job import TrialJob

        job = TrialJob(str(rd.path), opts["checkpoint_every"], opts["time"])
        jobs = executor.map_array(job, list(trials)) if "array_parallelism" in params else [executor.submit(job, trials[0])]
    except (submitit.core.utils.FailedJobError, subprocess.CalledProcessError) as e:
        raise StudyError(
            f"sbatch refused the job array: {str(e).strip().splitlines()[-1]}",
            key="slurm",
            fix="check partition/account/qos/time/gpus against 'sinfo' and your association",
        ) from None
    ids = {t.trial_id: j.job_id for t, j in zip(trials, jobs)}
    _record(
        rd,
        {
            "array_job": jobs[0].job_id.split("_")[0],
            "submitted_at": submitted,
            "submitted_after_s": time.time() - submitted,
            "parameters": params,
            "checkpoint_every": opts["checkpoint_every"],
            "trials": ids,
        },
    )
    return ids


def watch(trials: dict[str, Trial], jobs: dict[str, str], stamps: dict, rd: ResultsDir) -> Iterator[TrialOutput]:
    """Yield each trial's row as its job stores it; a job that ends without one becomes a failed row here."""
    gone: dict[str, int] = {}
    asked = -math.inf
    while jobs:
        for tid in list(jobs):
            if rd.row_stamp(tid) != stamps[tid]:
                jobs.pop(tid)
                yield TrialOutput(row=rd.read_row(tid))
        if jobs and time.monotonic() - asked >= squeue.SQUEUE_EVERY_S:
            asked = time.monotonic()
            active = squeue.active(jobs.values())
            for tid, job in list(jobs.items()) if active is not None else []:
                gone[tid] = 0 if job in active else gone.get(tid, 0) + 1
                # absent from squeue this many answers in a row (a requeue is listed as PENDING) and still no row
                if gone[tid] >= GONE_POLLS and rd.row_stamp(tid) == stamps[tid]:
                    jobs.pop(tid)
                    yield _lost(trials[tid], job, rd)
        if jobs:
            time.sleep(POLL_S)


def _lost(trial: Trial, job: str, rd: ResultsDir) -> TrialOutput:
    """The job ended (cancelled, killed, node failure, crashed outside run_trial) without storing a row."""
    import submitit

    from harness.backends import failed_output

    state = job_state(job) or "ended"
    err = submitit.core.utils.JobPaths(rd.slurm_logs, job_id=job, task_id=0).stderr
    last = ""
    if err.exists():
        lines = [x for x in err.read_text(errors="replace").splitlines() if x.strip() and not x.startswith("submitit")]
        last = lines[-1].strip()[:300] if lines else ""
    out = failed_output(trial, f"SLURM job {job} {state} without a result" + (f": {last}" if last else f" (log: {err})"))
    out.row["slurm_job"] = job
    rd.write(out)
    slurm_claims.release(rd, trial.trial_id, job)  # the job cannot release it any more
    return out


def job_state(job: str) -> str | None:
    """Final or current state from squeue --states=all (finished jobs stay there for MinJobAge)."""
    return (squeue.states([job], finished=True, fresh=True) or {}).get(job)


# ----------------------------------------------------------------------------- manifest + status


def _record(rd: ResultsDir, submission: dict) -> None:
    """Append one submission to slurm/jobs.json (atomic rewrite under the claims lock)."""
    with claimlib.locked(rd.claims):
        manifest = rd.read_json(rd.slurm_jobs, {"submissions": []})
        manifest["submissions"].append(submission)
        rd.write_json(rd.slurm_jobs, manifest)


def latest_jobs(rd: ResultsDir) -> dict[str, str]:
    """trial_id -> its most recent SLURM job id, from jobs.json."""
    out: dict[str, str] = {}
    for sub in rd.read_json(rd.slurm_jobs, {"submissions": []})["submissions"]:
        out.update(sub["trials"])
    return out


def job_states(rd: ResultsDir) -> dict[str, str]:
    """trial_id -> "queued" | "running" for trials whose latest job squeue still lists."""
    jobs = latest_jobs(rd)
    states = squeue.states({j.split("_")[0] for j in jobs.values()}) or {}  # one squeue for every array of the study
    out = {}
    for tid, job in jobs.items():
        st = states.get(job)
        if st in QUEUED:
            out[tid] = "queued"
        elif st in RUNNING:
            out[tid] = "running"
    return out


# ----------------------------------------------------------------------------- the protocol


class Slurm(Backend):
    name = "slurm"
    requires = "submitit"
    install = "pip install submitit"
    writes_rows = True  # each job stores its own row (the results directory is on a shared filesystem)
    flags = FLAGS
    detaches = True  # --no-wait: the job array runs on without the driver
    holder = slurm_claims.HOLDER  # claims handed to the jobs live while squeue lists them

    def check_section(self, study: Study) -> None:
        options(study)

    def validate_options(self, study: Study, flags: dict | None = None, wait: bool = True) -> None:
        super().validate_options(study, flags, wait)
        options(study, flags)

    def preflight(self, study: Study, flags: dict | None = None, *, address: str | None = None) -> None:
        preflight(study, flags)

    def execute(self, trials: Sequence[Trial], *, flags: dict | None = None, **kw: Any) -> Iterator[TrialOutput]:
        return execute(trials, slurm=flags, **kw)

    def in_flight(self, rd: ResultsDir) -> dict[str, str]:
        return job_states(rd)

    def interrupted_note(self, rd: ResultsDir) -> str:
        return f"SLURM jobs keep running ('harness status {rd.path}')"


BACKEND = Slurm()
