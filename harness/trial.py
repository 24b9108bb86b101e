"""`run_trial`: the one function every backend's worker calls.

build model (zoo) -> count params/FLOPs (flops) -> profile (profile) -> train + evaluate
(data, train) -> one row + learning curve. Any exception (OOM, NaN loss, a bug) becomes a
`status="failed"` row carrying the config and the error, never a crashed study. It knows
nothing of backends or files: it returns a `TrialOutput` and the caller stores it.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import socket
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

from harness import data, distributed, flops, flops_train, hardware, live, ssl, zoo
from harness.profile import profile_model
from harness.spec import Trial, total_steps, views_per_sample
from harness.store import SCHEMA_VERSION, TrialOutput
from harness.train import BranchPoint, TrainResult, train
from harness.version import __version__, git_sha


def pick_device(trial: Trial) -> torch.device:
    """CUDA when the trial was given a GPU (or a share of one) and one is visible; else CPU."""
    if trial.resources.get("gpus", 0) > 0 and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def base_row(trial: Trial) -> dict:
    """Identity, config and provenance: filled for ok and failed rows alike."""
    import timm

    device = pick_device(trial)
    cfg = trial.train
    return {
        "study": trial.study,
        "trial_id": trial.trial_id,
        "status": "failed",
        "error": "",
        "schema_version": SCHEMA_VERSION,
        "family": trial.model.family,
        "size": trial.model.size,
        "model": trial.model.name,
        "image_size": trial.image_size,
        "frames": trial.frames,  # video only (None -> NA for images); a clip is frames 0, s, ..., (T-1)s
        "frame_stride": trial.frame_stride,
        "sample_unit": "img" if trial.frames is None else "clip",  # what infer_img_s / train_img_s count
        "data_size": trial.data_size,
        "seed": trial.seed,
        "steps": total_steps(cfg, trial.data_size),
        "batch_size": trial.batch_size,
        "lr": cfg["lr"],
        "dataset": trial.dataset["name"],
        "config_json": json.dumps(trial.config(), sort_keys=True),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "dtype": "bf16-autocast" if device.type == "cuda" else "fp32",
        "threads": torch.get_num_threads(),
        "world_size": int(trial.resources.get("workers", 1)),  # data-parallel ranks (harness.distributed)
        "niceness": os.nice(0),
        "torch_version": torch.__version__,
        "timm_version": timm.__version__,
        "harness_version": __version__,
        "git_sha": git_sha(),
        "host": socket.gethostname(),
        "study_hash": trial.study_hash,
    }


def describe_error(e: BaseException, trial: Trial) -> str:
    if isinstance(e, torch.OutOfMemoryError):
        # out-of-memory is data (STYLE 7): say which batch did not fit, never retry smaller
        return f"OutOfMemoryError: batch_size={trial.train['batch_size']} (profile batch {trial.profile['batch_size']}) does not fit on {pick_device(trial)}"
    last = str(e).strip().splitlines()[-1] if str(e).strip() else ""
    return f"{type(e).__name__}: {last}"[:500]


def run_trial(trial: Trial, *, checkpoint_path: Path | None = None, checkpoint_every: int = 0) -> TrialOutput:
    """`checkpoint_path`/`checkpoint_every`: see harness.train (the SLURM backend resumes requeued jobs)."""
    torch.set_num_threads(int(trial.resources.get("cpus", 1)))  # one thread per allocated CPU
    started = time.time()
    row = base_row(trial)
    row["world_size"] = distributed.current().world  # the ranks this run trains with (resources.workers when launched)
    # milliseconds: a trial re-run within the same second (a retry after a node death) still sorts as the later
    # run, and "did this run start after event X" can be answered from the row
    row["started_at"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")
    curve: list[dict] = []
    tracker = _live_tracker()
    try:
        on_point = _on_point(row, tracker)
        row.update(_measure_and_train(trial, curve, checkpoint_path, checkpoint_every, on_point))
        row["status"] = "ok"
    except Exception as e:  # NonFiniteLoss, torch.OutOfMemoryError, bugs: all become failed rows
        row["error"] = describe_error(e, trial)
        row["traceback"] = traceback.format_exc(limit=-8)
        if pick_device(trial).type == "cuda":
            torch.cuda.empty_cache()
    finally:
        if tracker is not None:
            tracker.finish(trial.trial_id)
    row["duration_s"] = time.time() - started
    return TrialOutput(row=row, curve=curve)


def _live_tracker() -> object:
    """In a worker process of a study with `tracking:` (harness.live.ENV): its own tracker for live
    points (None in the driver's process, which listens itself, on ranks > 0, or without tracking)."""
    tracking = live.inherited()
    if live.listeners() or not tracking or not distributed.current().is_main:
        return None
    from harness.analysis.export import Tracker

    try:
        return Tracker(tracking, lambda msg: print(f"harness: {msg}", file=sys.stderr, flush=True))
    except Exception as e:  # noqa: BLE001 - a tracker that cannot start never fails the trial
        print(f"harness: live tracking off in this worker ({type(e).__name__}: {e})", file=sys.stderr, flush=True)
        return None


def _on_point(row: dict, tracker: object) -> Callable[[dict], None] | None:
    """Each curve point as it is evaluated, with the row so far (status "running"), to this process's
    listeners (harness.live): the driver's tracker, or this worker's own; None when nobody listens."""
    targets = live.listeners() if distributed.current().is_main else []
    if tracker is not None:
        targets = [tracker.live]  # type: ignore[attr-defined]
    if not targets:
        return None
    points: list[dict] = []

    def on_point(point: dict) -> None:
        points.append(dict(point))
        snapshot = dict(row, status="running")
        for listener in targets:
            listener(snapshot, list(points))

    return on_point


def _measure_and_train(
    trial: Trial,
    curve: list[dict],
    checkpoint_path: Path | None = None,
    checkpoint_every: int = 0,
    on_point: Callable[[dict], None] | None = None,
) -> dict:
    device = pick_device(trial)
    ds = data.load(trial.data_config())
    dims = {
        "image_size": trial.image_size,
        "in_chans": ds.info.in_chans,
        "num_classes": ds.info.num_classes,
        "frames": trial.frames or 0,
    }

    def build() -> torch.nn.Module:
        torch.manual_seed(trial.seed)  # same init for the profiled copy and the trained one
        return zoo.build(trial.model, **dims)

    out = _measure(trial, build, dims, device)
    if trial.train["steps"] == 0 and not trial.eval:
        # profile-only and nothing probed: no weights are needed, only their number, counted on the meta
        # device (initialising vit@h14's 632M weights only to count them took 8 s of a 12 s trial on CPU)
        from harness import evals

        out["params"] = flops.param_count(trial.model, **dims)
        out.update(evals.NOT_EVALUATED)  # what _evals gives a trial without an eval section
        return out
    model = build()
    out["params"] = flops.count_params(model)
    if trial.train["steps"] == 0:  # profile-only study: nothing to train; the eval section probes the untrained model
        out.update(_evals(trial, model, ds, device))
        return out
    res = train(
        model,
        ds,
        image_size=trial.image_size,
        frames=dims["frames"],
        frame_stride=trial.frame_stride or 1,
        data_size=trial.data_size,
        seed=trial.seed,
        cfg=trial.train,
        device=device,
        checkpoint_every=checkpoint_every,
        objective=ssl.objective(trial.train, ds.info.in_chans, trial.image_size),
        on_point=on_point,
        **{"checkpoint_path": checkpoint_path, **_branch_args(trial, checkpoint_path)},
    )
    curve.extend(res.curve)
    if "points" in trial.branch or "start_from" in trial.branch:  # a wsd trunk (0) or branch: steps from the trunk
        out["trunk_steps_reused"] = res.trunk_steps_reused
    if checkpoint_path is not None and checkpoint_every > 0:  # resume marker: only rows of checkpointed runs have it
        out.update({"resumes": res.resumes, "resumed_from_step": res.resumed_from_step})
    out.update(_train_columns(trial, res, dims, out.get("mfu", math.nan)))
    out.update(_evals(trial, model, ds, device))
    return out


def _branch_args(trial: Trial, checkpoint_path: Path | None) -> dict:
    """train()'s branch arguments from what the runner scheduled (trial.branch): a trunk's branch
    points and its own checkpoint (a killed trunk resumes), a branch's trunk checkpoint, or a
    halving rung's checkpoint and step."""
    b = trial.branch
    if not b:
        return {}
    if "start_from" in b:
        return {"start_from": Path(b["start_from"])}
    if "points" not in b:  # a halving rung (stop_at) or a survivor continuing from its rung checkpoint
        return {"checkpoint_path": checkpoint_path or Path(b["checkpoint"]), "stop_at": int(b.get("stop_at", 0))}
    points = [BranchPoint(int(step), int(total), Path(path)) for step, total, path in b["points"]]
    return {"branches": points, "checkpoint_path": checkpoint_path or Path(b["checkpoint"])}


def _measure(trial: Trial, build: Callable[[], torch.nn.Module], dims: dict, device: torch.device) -> dict:
    """Counted forward/training MACs, and the profiler's columns when the study profiles."""
    out: dict = {
        "fwd_gmacs": flops.forward_gmacs(trial.model, **dims),
        "train_gmacs": flops_train.train_gmacs(trial.model, **dims),
    }
    if trial.profile["enabled"]:
        p = trial.profile
        out.update(
            profile_model(
                build,
                in_chans=dims["in_chans"],
                image_size=trial.image_size,
                num_classes=dims["num_classes"],
                frames=dims["frames"],
                batch_size=p["batch_size"],
                warmup=p["warmup"],
                iters=p["iters"],
                device=device,
                gmacs=(out["fwd_gmacs"], out["train_gmacs"]),
            )
        )
    return out


def _train_columns(trial: Trial, res: TrainResult, dims: dict, mfu: float) -> dict:
    """The row's training columns from the trainer's result."""
    views = views_per_sample(trial.train)
    return {
        "test_acc": res.test_acc,
        "test_loss": res.test_loss,
        "train_loss": res.train_loss,
        "best_test_acc": res.best_test_acc,
        "steps": res.steps,
        "samples_seen": res.samples_seen,
        "epochs": res.epochs,
        "train_time_s": res.train_time_s,
        "max_steps": res.max_steps,
        # validation split (train.val_size; NaN without): selection and early stopping never look at the test split
        "val_acc": res.val_acc,
        "val_loss": res.val_loss,
        "best_val_acc": res.best_val_acc,
        "best_val_step": res.best_val_step if trial.train.get("val_size") else math.nan,
        "test_acc_at_best_val": res.test_acc_at_best_val,
        "compile_s": res.compile_s,  # train.compile: the compiling first step, kept out of train_time_s (NaN without)
        # counted fwd+bwd MACs x images through the backbone (SimCLR: two views per sample; its head is not counted)
        "train_flops": flops_train.train_flops(trial.model, res.samples_seen * views, **dims),
        "mfu": mfu,  # the profiled training step's MFU; NaN (+ mfu_reason) where the peak is unknown
        **_data_parallel_columns(trial, res, dims),
    }


def _data_parallel_columns(trial: Trial, res: TrainResult, dims: dict) -> dict:
    """The training loop's measured throughput: images/s of the whole run (every rank of a
    data-parallel trial together, communication included), and its MFU against world_size x the
    device's peak (NaN where the peak is unknown). Scaling efficiency = dp_img_s at N / (N x dp_img_s at 1)."""
    world = int(trial.resources.get("workers", 1))
    if not res.train_time_s > 0:
        return {"dp_img_s": math.nan, "dp_mfu": math.nan}
    device = pick_device(trial)
    precision = "amp-bf16" if device.type == "cuda" else "fp32"
    peak, _ = hardware.peak_flops(hardware.device_name(device), precision)
    views = views_per_sample(trial.train)
    # 2 FLOPs per counted MAC, as device peaks count (harness/profile.py)
    achieved = 2 * flops_train.train_flops(trial.model, res.samples_seen * views, **dims) / res.train_time_s
    return {"dp_img_s": res.samples_seen / res.train_time_s, "dp_mfu": achieved / (world * peak)}


def _evals(trial: Trial, model: torch.nn.Module, ds: data.Dataset, device: torch.device) -> dict:
    """The eval section's probe and few-shot columns (harness/evals.py); NaN without one."""
    from harness import evals

    if not trial.eval:
        return dict(evals.NOT_EVALUATED)
    return dict(evals.NOT_EVALUATED) | evals.run_evals(
        model,
        ds,
        trial.eval,
        image_size=trial.image_size,
        data_size=trial.data_size,
        seed=trial.seed,
        val_size=trial.train.get("val_size", 0),
        eval_size=trial.train["eval_size"],
        device=device,
        sources=trial.eval_source,
        frames=trial.frames or 0,
        frame_stride=trial.frame_stride or 1,
    )
