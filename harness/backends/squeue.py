"""The one place that runs `squeue`: job states for the SLURM backend, job liveness for claims.

Clusters ask users not to hammer the controller, so one call answers many jobs and an answer
is reused for SQUEUE_EVERY_S. No submitit here: claims and `harness status` use it cheaply.
"""

from __future__ import annotations

import getpass
import shutil
import subprocess
import time
from collections.abc import Iterable

SQUEUE_EVERY_S = 5.0  # at most one squeue per this many seconds for the same jobs
TIMEOUT_S = 30.0  # a controller that does not answer in this long is "cannot say", never a hang
QUEUED = frozenset({"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "SUSPENDED", "RESV_DEL_HOLD", "STOPPED"})
RUNNING = frozenset({"RUNNING", "COMPLETING", "SIGNALING", "STAGE_OUT", "RESIZING"})

_cache: dict[tuple[frozenset, bool], tuple[float, dict[str, str]]] = {}


def states(job_ids: Iterable[str], *, finished: bool = False, fresh: bool = False) -> dict[str, str] | None:
    """Job ("123_4", or an array "123" for all its tasks) -> SLURM state, for the jobs squeue lists.

    `finished`: also jobs that ended (squeue --states=all keeps them for MinJobAge). None when squeue
    cannot say (not installed here, controller unreachable or too slow): callers must not guess."""
    ids = frozenset(job_ids)
    if not ids:
        return {}
    now = time.monotonic()
    for (asked, fin), (when, answer) in list(_cache.items()):
        if now - when >= SQUEUE_EVERY_S:
            del _cache[(asked, fin)]
        elif not fresh and fin == finished and ids <= asked:  # one answer serves every subset of its jobs
            return {job: st for job, st in answer.items() if job in ids or job.split("_")[0] in ids}
    if shutil.which("squeue") is None:
        return None
    cmd = ["squeue", "-h", "-r", "-o", "%i %T", "-j", ",".join(sorted(ids))] + (["--states=all"] if finished else [])
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return None
    if p.returncode == 0:
        out = dict(line.split()[:2] for line in p.stdout.splitlines() if len(line.split()) >= 2)
    elif "Invalid job id" in p.stderr:  # all finished and purged (MinJobAge), or never existed
        out = {}
    else:
        return None  # controller unreachable: cannot tell
    _cache[(ids, finished)] = (time.monotonic(), out)
    return out


def active(job_ids: Iterable[str]) -> set[str] | None:
    """Those of `job_ids` ("123_4") squeue still lists (pending, running, requeued, completing...);
    None when squeue cannot say."""
    ids = set(job_ids)
    listed = states(ids)
    return None if listed is None else set(listed) & ids


def controller_answers(timeout_s: float | None = None) -> str | None:
    """None when `squeue` reaches the controller; else why not, in a few words (for preflight)."""
    timeout_s = TIMEOUT_S if timeout_s is None else timeout_s
    if shutil.which("squeue") is None:
        return "squeue not found"
    try:
        p = subprocess.run(
            ["squeue", "-h", "-o", "%i", "-u", getpass.getuser()], capture_output=True, text=True, timeout=timeout_s
        )
    except subprocess.TimeoutExpired:
        return f"squeue had no answer from the controller in {timeout_s:.0f} s"
    except OSError as e:
        return f"squeue could not run ({e.strerror or e})"
    if p.returncode != 0:
        last = (p.stderr.strip().splitlines() or [f"exit code {p.returncode}"])[-1]
        return f"squeue failed: {last}"
    return None
