"""The local launcher of a data-parallel trial: `resources.workers` ranks as processes on this
machine (multiprocessing spawn), each joining one gloo/NCCL process group and calling the same
`run_trial`. What the local backend and the tests use; Ray and SLURM start their ranks with their
own machinery (Ray Train's TorchTrainer, SLURM tasks through submitit). `run_ranks` starts any
function the same way: the profiler's scaling measurement (harness/profile_scaling.py) uses it.

Faults: every rank's exit is watched. A rank that dies (kill -9, OOM killer) or fails ends the
trial: the ranks still alive get GRACE_S to notice (a collective with a dead peer fails at once
on gloo, or after HARNESS_DDP_TIMEOUT_S), then are terminated, and the trial becomes one failed
row naming the rank that died first (a killed rank is named over the ranks that failed because of
it). Nothing hangs and the driver lives on.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import signal
import socket
import tempfile
from collections.abc import Callable
from multiprocessing.connection import wait
from pathlib import Path
from typing import TYPE_CHECKING

from harness.backends import failed_output

if TYPE_CHECKING:
    from harness.spec import Trial
    from harness.store import TrialOutput

GRACE_S = 10.0  # after the first rank ends badly, how long the others get to end on their own
FAILED_EXIT = 3  # a rank whose run_trial returned a failed row exits with this code


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_data_parallel(trial: Trial, *, checkpoint_path: Path | None = None, checkpoint_every: int = 0) -> TrialOutput:
    """Run `trial` as `resources.workers` local ranks; rank 0's output, or a failed row naming the rank."""
    world = int(trial.resources.get("workers", 1))
    with tempfile.TemporaryDirectory(prefix="harness-ddp-") as tmp:
        codes = _start_and_watch(
            world, lambda r, port: (rank_main, (r, world, port, trial, tmp, checkpoint_path, checkpoint_every))
        )
        return _outcome(trial, codes, Path(tmp))


def _start_and_watch(world: int, target: Callable[[int, int], tuple[Callable[..., None], tuple]]) -> dict[int, int]:
    """Start `world` ranks (`target(rank, port)` -> the function and arguments of that rank's process),
    watch them to the end (`_watch`), stop any left; their exit codes by rank."""
    ctx = mp.get_context("spawn")  # a fresh interpreter per rank: no forked torch/OpenMP state
    port = free_port()
    procs = [ctx.Process(target=fn, args=args, name=f"rank{r}") for r, (fn, args) in ((r, target(r, port)) for r in range(world))]
    try:
        for p in procs:
            p.start()
        return _watch(procs)
    finally:
        _stop(procs)


def _watch(procs: list) -> dict[int, int]:
    """Exit codes by rank; once one rank ends badly, the others get GRACE_S before they are stopped
    (after a clean exit, the collective timeout: a rank may still be evaluating)."""
    from harness import distributed

    pending = {p.sentinel: r for r, p in enumerate(procs)}
    codes: dict[int, int] = {}
    while pending:
        bad = any(c != 0 for c in codes.values())
        limit = GRACE_S if bad else (distributed.timeout().total_seconds() if codes else None)
        ready = wait(list(pending), timeout=limit)
        if not ready:
            break
        for s in ready:
            r = pending.pop(s)
            procs[r].join()
            codes[r] = procs[r].exitcode
    return codes


def _stop(procs: list) -> None:
    procs = [p for p in procs if p.pid is not None]  # started ones only
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(5)
        if p.is_alive():
            p.kill()
            p.join()


def _outcome(trial: Trial, codes: dict[int, int], tmp: Path) -> TrialOutput:
    world = int(trial.resources.get("workers", 1))
    killed = [r for r, c in codes.items() if c is not None and c < 0]
    if killed:  # the root cause: a rank that a signal ended (the others failed because of it)
        r = killed[0]
        return failed_output(
            trial, f"RankDied: rank {r} of {world} was killed by {signal.Signals(-codes[r]).name}; the trial was stopped"
        )
    failed = sorted(r for r, c in codes.items() if c != 0)
    if len(codes) < world and not failed:
        failed = [r for r in range(world) if r not in codes]
    if failed:
        r = failed[0]
        out = _read(tmp, r)
        if out is None:
            how = f"ended with exit code {codes[r]}" if r in codes else "did not finish after the other ranks had"
            return failed_output(trial, f"RankDied: rank {r} of {world} {how}")
        out.row["error"] = f"rank {r} of {world}: {out.row['error']}"[:500]
        return out
    out = _read(tmp, 0)
    return out if out is not None else failed_output(trial, "RankDied: rank 0 wrote no result")


def _read(tmp: Path, rank: int) -> TrialOutput | None:
    path = tmp / f"rank{rank}.pkl"
    return pickle.loads(path.read_bytes()) if path.exists() else None


def rank_main(
    rank: int, world: int, port: int, trial: Trial, tmp: str, checkpoint_path: Path | None, checkpoint_every: int
) -> None:
    """One rank (in its own process): join the group, run the trial; rank 0 (or a failed rank) hands
    its output back through `tmp`. A rank sees one GPU: the rank-th of those visible to the driver."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if trial.resources.get("gpus", 0) > 0:
        ids = visible.split(",") if visible else [str(i) for i in range(world)]
        os.environ["CUDA_VISIBLE_DEVICES"] = ids[rank % len(ids)]
    from harness import distributed
    from harness.trial import pick_device, run_trial

    distributed.init(rank, world, "127.0.0.1", port, pick_device(trial))
    try:
        out = run_trial(trial, checkpoint_path=checkpoint_path, checkpoint_every=checkpoint_every)
    finally:
        distributed.shutdown()
    if rank == 0 or out.row["status"] != "ok":
        part = Path(tmp) / f".rank{rank}.part"
        part.write_bytes(pickle.dumps(out))
        part.rename(Path(tmp) / f"rank{rank}.pkl")
    if out.row["status"] != "ok":
        raise SystemExit(FAILED_EXIT)


def run_ranks(fn: Callable[..., object], world: int, device_type: str, *args: object) -> object:
    """`fn(ctx, *args)` on `world` local ranks joined in one process group, started and watched as a
    trial's ranks are (spawn, the collective timeout, GRACE_S after a rank ends badly); rank 0's
    return value. Rank r uses cuda:r on CUDA. A rank that dies or raises raises RuntimeError naming it."""
    with tempfile.TemporaryDirectory(prefix="harness-ranks-") as tmp:
        codes = _start_and_watch(world, lambda r, port: (_generic_rank, (r, world, port, device_type, tmp, fn, args)))
        bad = sorted(r for r in range(world) if codes.get(r) != 0)
        if bad:
            r = next((r for r in bad if (codes.get(r) or 0) < 0), bad[0])  # a killed rank is the root cause
            why = (Path(tmp) / f"rank{r}.err").read_text() if (Path(tmp) / f"rank{r}.err").exists() else ""
            how = f"exit code {codes[r]}" if r in codes else "did not finish"
            raise RuntimeError(f"rank {r} of {world} failed ({how}){': ' + why if why else ''}")
        return pickle.loads((Path(tmp) / "rank0.pkl").read_bytes())


def _generic_rank(rank: int, world: int, port: int, device_type: str, tmp: str, fn: Callable[..., object], args: tuple) -> None:
    import torch

    from harness import distributed

    device = torch.device("cuda", rank) if device_type == "cuda" else torch.device("cpu")
    ctx = distributed.init(rank, world, "127.0.0.1", port, device)
    try:
        out = fn(ctx, *args)
    except Exception as e:
        (Path(tmp) / f"rank{rank}.err").write_text(f"{type(e).__name__}: {e}"[:500])
        raise SystemExit(FAILED_EXIT) from None
    finally:
        distributed.shutdown()
    if rank == 0:
        part = Path(tmp) / ".rank0.part"
        part.write_bytes(pickle.dumps(out))
        part.rename(Path(tmp) / "rank0.pkl")
