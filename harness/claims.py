"""Per-trial claims: two drivers of one study never run the same trial at once.

    results/<study>/claims/<trial_id>   JSON {host, pid, pid_started, since, token[, <holder key>]}

A driver creates the claim (O_CREAT|O_EXCL) before it hands a trial to its backend and removes
it after the trial's row is stored. A claim is *live* while its holder is:
  - a process on this host: its pid exists and started when the claim says (pid reuse is not life);
  - a process on another host: its heartbeat (the file's mtime, refreshed every LEASE_S/4 by the
    holder) is younger than LEASE_S;
  - an external holder (the claim was handed to it at submission, e.g. a SLURM job): the claim
    names it under its kind's key, and the kind's liveness callback still lists it.
A claim that is not live is stale (its driver was kill -9'd, its job ended without a row) and is
taken over. Take-overs, hand-overs and releases happen under an exclusive flock on claims/.lock,
so two drivers cannot both take over one stale claim; each such section lasts milliseconds.

`run_exclusive` is the loop the runner drives: claim what is free, run it on the backend, and
wait for trials another driver (or an external holder) holds until each has a new row, taking over
any whose holder went away without one.

Claims knows no backend: the kinds of external holder (`HolderKind`: a claim-file key, a label and
a liveness callback) are passed in by the caller, which gets them from the backends
(`harness.backends.holder_kinds()`; the SLURM one is harness/backends/slurm_claims.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from harness.store import ResultsDir, TrialOutput, atomic_write

if TYPE_CHECKING:  # spec imports torch; `harness status` reads claims without it
    from harness.spec import Trial

LEASE_S = 300.0  # a claim from another host with no heartbeat for this long is stale
# An unreadable claim (0 bytes, garbled: written by a version that did not write claims atomically,
# or by hand) names no holder to check. Claims are written whole (temp + link), so one this old is
# no writer's work in progress: stale, taken over, never a 300 s wait.
UNREADABLE_GRACE_S = 5.0
POLL_S = 1.0  # how often a driver looks at trials held by others
HOST = socket.gethostname()

Results = str | Path | ResultsDir  # a results directory, as a path or already wrapped
Liveness = Callable[[Iterable[str]], "set[str] | None"]


@dataclass(frozen=True)
class HolderKind:
    """A kind of holder outside any driver process (a scheduler's job) that a claim can be handed to."""

    key: str  # the claim-file key naming the holder (the SLURM backend's "slurm_job", as older drivers wrote it)
    label: str  # how `describe` names one, e.g. "SLURM job"
    active: Liveness  # those of the given holder ids still alive; None when it cannot say (never a guess)


Kinds = Sequence[HolderKind]


def claims_dir(out_dir: Results) -> Path:
    return ResultsDir.at(out_dir).claims


def row_stamp(out_dir: Results, trial_id: str) -> tuple[int, int] | None:
    """Identity of the trial's row file (inode, mtime): a change means a new result was stored."""
    return ResultsDir.at(out_dir).row_stamp(trial_id)


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}  # unreadable: no holder we can check, so only the lease can keep it


def _pid_started(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def external(info: dict | None, kinds: Kinds) -> HolderKind | None:
    """The kind of external holder the claim was handed to, if any."""
    return next((k for k in kinds if info and info.get(k.key)), None)


def active_holders(infos: Iterable[dict | None], kinds: Kinds) -> dict[str, set[str] | None]:
    """kind key -> the live ones of the holders these claims name: one liveness call per kind for many claims."""
    infos = list(infos)
    out: dict[str, set[str] | None] = {}
    for kind in kinds:
        ids = [i[kind.key] for i in infos if external(i, kinds) is kind]
        out[kind.key] = kind.active(ids) if ids else set()
    return out


def is_live(
    info: dict | None,
    age_s: float,
    lease_s: float = LEASE_S,
    kinds: Kinds = (),
    active: Mapping[str, set[str] | None] | None = None,
) -> bool:
    """`active`: the answer of one `active_holders` call for many claims (default: ask for this one)."""
    if info is None:
        return False
    if not info:  # unreadable: no holder to ask
        return age_s < UNREADABLE_GRACE_S
    kind = external(info, kinds)
    if kind is not None:
        alive = (active_holders([info], kinds) if active is None else active)[kind.key]
        return True if alive is None else info[kind.key] in alive  # unknown: never run a trial twice on a guess
    if info.get("host") == HOST and "pid" in info:
        started = _pid_started(int(info["pid"]))
        return started is not None and abs(started - float(info.get("pid_started") or started)) < 1.0
    return age_s < lease_s


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def describe(info: dict, kinds: Kinds = ()) -> str:
    kind = external(info, kinds)
    if kind is not None:
        return f"{kind.label} {info[kind.key]}"
    since = time.strftime("%H:%M:%S", time.localtime(info.get("since", 0)))
    return f"pid {info.get('pid', '?')} on {info.get('host', '?')} since {since}"


class Claims:
    """The claims this driver holds, kept fresh by a heartbeat thread; released on close."""

    def __init__(self, out_dir: Results, lease_s: float = LEASE_S, kinds: Kinds = ()) -> None:
        self.rd = ResultsDir.at(out_dir)
        self.dir = self.rd.claims
        self.lease_s = lease_s
        self.kinds = tuple(kinds)
        self.token = uuid.uuid4().hex
        self.me = {"host": HOST, "pid": os.getpid(), "pid_started": _pid_started(os.getpid()), "token": self.token}
        self.held: set[str] = set()
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, name="claims-heartbeat", daemon=True)
        self._beat.start()

    def acquire(self, trial_ids: Iterable[str]) -> tuple[list[str], dict[str, dict]]:
        """(claimed by us, {trial_id: holder} of those another live holder has)."""
        mine, others = [], {}
        with locked(self.dir):
            infos = {tid: _read(self.dir / tid) for tid in trial_ids}
            active = active_holders(infos.values(), self.kinds)
            for tid, info in infos.items():
                path = self.dir / tid
                if info is not None:
                    if info.get("token") == self.token and not external(info, self.kinds):
                        mine.append(tid)  # already ours
                        continue
                    if is_live(info, _age(path), self.lease_s, self.kinds, active):
                        others[tid] = info
                        continue
                    path.unlink(missing_ok=True)  # stale: its holder is gone
                    self.rd.sweep_temporaries(tid)
                # whole or not at all (a full disk never leaves a 0-byte claim); fails if it exists.
                # row_before: a waiter knows our result by a changed row
                atomic_write(
                    path, json.dumps(dict(self.me, since=time.time(), row_before=self.rd.row_stamp(tid))), exclusive=True
                )
                self.held.add(tid)
                mine.append(tid)
        return mine, others

    def hand_over(self, kind: HolderKind, holders: dict[str, str]) -> None:
        """External holders (trial_id -> holder id) now hold these trials: the claims outlive this
        driver and end with the holders (`release_external`, or their liveness callback)."""
        with locked(self.dir):
            for tid, holder in holders.items():
                info = _read(self.dir / tid) or dict(self.me)
                atomic_write(self.dir / tid, json.dumps(dict(info, since=time.time(), **{kind.key: holder})))
                self.held.discard(tid)

    def release(self, tid: str) -> None:
        with locked(self.dir):
            info = _read(self.dir / tid)
            if info and info.get("token") == self.token and not external(info, self.kinds):
                (self.dir / tid).unlink(missing_ok=True)
            self.held.discard(tid)

    def close(self) -> None:
        self._stop.set()
        for tid in list(self.held):
            self.release(tid)

    def __enter__(self) -> Claims:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.lease_s / 4):
            for tid in list(self.held):
                with contextlib.suppress(FileNotFoundError):
                    os.utime(self.dir / tid)


def release_external(out_dir: Results, trial_id: str, kind: HolderKind, holder: str) -> None:
    """Called by (or for) an external holder after its row is stored: drop the claim if it still holds it."""
    directory = claims_dir(out_dir)
    with locked(directory):
        info = _read(directory / trial_id)
        if info and info.get(kind.key) == holder:
            (directory / trial_id).unlink(missing_ok=True)


def holders(out_dir: Results, lease_s: float = LEASE_S, kinds: Kinds = ()) -> dict[str, dict]:
    """trial_id -> holder, for the live claims of a results directory (for `harness status`)."""
    directory = claims_dir(out_dir)
    paths = sorted(directory.glob("[!.]*")) if directory.is_dir() else []
    infos = {p.name: _read(p) for p in paths}
    active = active_holders(infos.values(), kinds)
    return {
        tid: info or {}
        for tid, info in infos.items()
        if info is not None and is_live(info, _age(directory / tid), lease_s, kinds, active)
    }


def died_error(info: dict, kinds: Kinds = ()) -> str:
    """The failed row's error of a trial whose holder died without storing a row."""
    return (
        f"died without a row: {describe(info, kinds)} is gone (killed: out of memory, SIGKILL; or aborted); a re-run retries it"
    )


def reap(out_dir: Results, identity: Mapping[str, dict] | None = None, lease_s: float = LEASE_S, kinds: Kinds = ()) -> list[str]:
    """The next look after a hard death (OOM kill, abort): every stale claim whose trial got no row since
    it was claimed becomes a failed row naming the dead holder, and the claim is removed; a stale claim
    whose row did arrive is just removed. `identity`: trial_id -> the row's identifying columns (model,
    data_size, ...) where the caller knows the trials. Returns the trials given a failed row."""
    rd = ResultsDir.at(out_dir)
    directory = rd.claims
    if not directory.is_dir():
        return []
    reaped = []
    with locked(directory):
        infos = {p.name: _read(p) for p in sorted(directory.glob("[!.]*"))}
        active = active_holders(infos.values(), kinds)
        for tid, info in infos.items():
            if info is None or external(info, kinds) or is_live(info, _age(directory / tid), lease_s, kinds, active):
                continue  # live, unreadable (acquire's grace decides), or an external holder's (its backend reports it)
            if rd.row_stamp(tid) == row_before(info, rd, tid) and rd.row_value(tid, "status") not in ("ok", "pruned"):
                row = {"study": rd.path.name, **(identity or {}).get(tid, {}), "trial_id": tid}
                rd.write(TrialOutput(dict(row, status="failed", error=died_error(info, kinds))))
                reaped.append(tid)
            (directory / tid).unlink(missing_ok=True)
            rd.sweep_temporaries(tid)
    return reaped


# ----------------------------------------------------------------------------- the driver loop


@dataclass
class Event:
    """What `run_exclusive` yields: our own output to store, or a trial another holder finished."""

    trial_id: str
    output: TrialOutput | None = None  # ours: the runner stores it (unless the backend already did)
    by: str = ""  # someone else's: who held it


def run_exclusive(
    trials: Sequence[Trial],
    execute: Callable[[list[Trial], Claims], Iterator[TrialOutput]],
    out_dir: Results,
    *,
    wait: bool = True,
    on_others: Callable[[dict[str, dict]], None] | None = None,
    lease_s: float = LEASE_S,
    poll_s: float = POLL_S,
    kinds: Kinds = (),
) -> Iterator[Event]:
    """Run each trial exactly once across concurrent drivers.

    `execute(trials, claims)` runs the trials we claimed and yields their outputs. Each of ours
    is yielded before its claim is released, so the caller stores the row first. With
    wait=False (a detaching backend's --no-wait) we return after our own submission and leave
    others alone. `kinds`: the external holders claims may be handed to (their liveness callbacks).
    """
    out_dir = ResultsDir.at(out_dir)
    todo = {t.trial_id: t for t in trials}
    planned = {tid: row_stamp(out_dir, tid) for tid in todo}
    with Claims(out_dir, lease_s, kinds) as claims:
        while todo:
            mine, others = claims.acquire(list(todo))
            for tid in [t for t in mine if _stored_meanwhile(out_dir, t, planned[t])]:
                claims.release(tid)  # another driver finished it after we planned and before we claimed
                mine.remove(tid)
                todo.pop(tid)
                yield Event(tid, by="another driver")
            stamps = {tid: row_before(info, out_dir, tid) for tid, info in others.items()}
            if others and on_others:
                on_others(others)
            if mine:
                for out in execute([todo[t] for t in mine], claims):
                    tid = out.row["trial_id"]
                    yield Event(tid, output=out)
                    claims.release(tid)
                    todo.pop(tid, None)
            if not wait:
                return
            lost = [t for t in mine if t in todo]
            if lost:
                raise RuntimeError(f"backend returned without a result for {len(lost)} trials: {', '.join(lost[:5])}")
            yield from _wait_for_others(others, stamps, todo, out_dir, lease_s, poll_s, claims.kinds)


def _stored_meanwhile(out_dir: ResultsDir, tid: str, planned: tuple[int, int] | None) -> bool:
    """A new row since the caller planned (a retried failure), or an ok row (finished just before planning)."""
    now = row_stamp(out_dir, tid)
    if now is None:
        return False
    if now != planned:
        return True
    return out_dir.row_value(tid, "status") in ("ok", "pruned")  # pruned: successive halving decided it


def row_before(info: dict, out_dir: Results, tid: str) -> tuple[int, int] | None:
    """The row its holder found when it claimed the trial: any other row is the holder's result."""
    if "row_before" in info:
        return tuple(info["row_before"]) if info["row_before"] is not None else None
    return row_stamp(out_dir, tid)  # a claim without it (hand-made): the row as we first saw it


def _wait_for_others(
    others: dict[str, dict], stamps: dict, todo: dict, out_dir: ResultsDir, lease_s: float, poll_s: float, kinds: Kinds
) -> Iterator[Event]:
    """Until each trial held elsewhere has a new row (done) or a stale claim (ours to take)."""
    waiting = dict(others)
    directory = claims_dir(out_dir)
    while waiting:
        infos = {tid: _read(directory / tid) for tid in waiting}
        active = active_holders(infos.values(), kinds)
        for tid, info in infos.items():
            if row_stamp(out_dir, tid) != stamps[tid]:
                yield Event(tid, by=describe(waiting.pop(tid), kinds))
                todo.pop(tid, None)
            elif not is_live(info, _age(directory / tid), lease_s, kinds, active) and row_stamp(out_dir, tid) == stamps[tid]:
                waiting.pop(tid)  # its holder went away without a row: claim it in the next round
        if waiting:
            time.sleep(poll_s)
