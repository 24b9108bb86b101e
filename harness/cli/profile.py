"""`harness profile MODEL`: the trials' profiler on one model, from the command line.

    harness profile vit@b16 --batch-size 16 --mode both --threads 2
    harness profile convnext@tiny --precision amp-bf16 --channels-last --json
    harness profile resnet@50 --max-batch            # also: the largest batch that fits, per mode
    harness profile r3d@xs --frames 8                # video: 8-frame clips; rates are clips/s
    harness profile resnet@xs --workers 2            # also: scaling efficiency of 2 data-parallel ranks

Exit codes: 0 measured, 1 a mode ran out of memory (recorded in the output, batch named) or a rank
of --workers failed (scaling_error names it),
2 bad input (unknown model, impossible size, fp16 on CPU, no CUDA).
"""

from __future__ import annotations

import argparse
import json
import math
from typing import TYPE_CHECKING

from harness.cli.verbs import verb
from harness.errors import StudyError

if TYPE_CHECKING:
    import torch

ORDER = 3  # after the analysis verbs
DEFAULT_BATCH = 32
MAX_BATCH_LIMIT = {"cuda": 4096, "cpu": 512}  # --max-batch without a value: where the search stops


def _options(p: argparse.ArgumentParser) -> None:
    """The profiler's defaults come from harness/profile.py, which imports torch: added only when `profile` is named."""
    from harness import models
    from harness.profile import BLOCKS, CV_THRESHOLD, MAX_ROUNDS, MODES, PRECISIONS

    p.add_argument("model", help="family@size, e.g. vit@xs, resnet@50, convnext@tiny (see `harness models`)")
    p.add_argument("--image-size", type=int, default=None, help="default: 224 for ImageNet sizes, 28 for small ones")
    p.add_argument(
        "--batch-size", type=int, default=DEFAULT_BATCH, help=f"images per step (default {DEFAULT_BATCH}); never shrunk on OOM"
    )
    p.add_argument("--mode", choices=MODES, default="both")
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="fp32 (strict: TF32 off on CUDA) | tf32 | bf16 / fp16 (weights and inputs cast) | amp-bf16 (autocast)",
    )
    p.add_argument("--channels-last", action="store_true", help="NHWC memory format for model and input")
    p.add_argument("--compile", action="store_true", help="torch.compile the model; compile time gets its own column")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's current setting)")
    p.add_argument(
        "--frames", type=int, default=None, help="video models: frames per clip (default 16); img/s then counts clips/s"
    )
    p.add_argument("--in-chans", type=int, default=None, help=models.dims_help("channels"))
    p.add_argument("--num-classes", type=int, default=None, help=models.dims_help("classes"))
    p.add_argument("--device", default="auto", help="auto (cuda if available) | cpu | cuda | cuda:N")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps before timing (default 3)")
    p.add_argument("--iters", type=int, default=10, help="timed steps per round (default 10)")
    p.add_argument("--blocks", type=int, default=BLOCKS, help=f"timed blocks the steps are split into (default {BLOCKS})")
    p.add_argument(
        "--cv-threshold",
        type=float,
        default=CV_THRESHOLD,
        help=f"measure another round while the CV of block times is above this (default {CV_THRESHOLD})",
    )
    p.add_argument("--max-rounds", type=int, default=MAX_ROUNDS, help=f"rounds of blocks at most (default {MAX_ROUNDS})")
    p.add_argument("--no-latency", action="store_true", help="skip the batch-1 latency measurement")
    p.add_argument(
        "--max-batch",
        type=int,
        nargs="?",
        const=0,
        default=None,
        metavar="LIMIT",
        help="also search the largest batch that fits per mode, up to LIMIT "
        f"(default {MAX_BATCH_LIMIT['cuda']} on CUDA, {MAX_BATCH_LIMIT['cpu']} on CPU)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="also measure data-parallel training at 1 and N ranks (the trials' launcher; gloo on CPU, NCCL on CUDA): "
        "scaling efficiency = img/s at N / (N x img/s at 1); --batch-size is the global batch",
    )
    p.add_argument("--json", action="store_true", help="one JSON object (NaN written as null)")


def pick_device(name: str) -> torch.device:
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise StudyError(f"unknown device {name!r}", key="--device", fix="auto, cpu or cuda[:N]") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise StudyError("CUDA requested but torch sees no GPU", key="--device", fix="use --device cpu (or auto)")
    if device.type not in ("cpu", "cuda"):
        raise StudyError(f"device type {device.type!r} is not supported", key="--device", fix="auto, cpu or cuda[:N]")
    return device


@verb(
    "profile",
    "throughput, latency, memory, FLOPs and MFU of one model (the profiler trials use)",
    _options,
    description="Median and spread of img/s over timed blocks after warm-up, batch-1 latency, peak "
    "memory, forward and training GMACs, achieved TFLOP/s and MFU, and a hardware fingerprint.",
)
def run(args: argparse.Namespace) -> int:
    import torch

    from harness import flops, flops_train, models, zoo
    from harness.profile import Settings, max_batch, profile

    ms = zoo.resolve(args.model)
    size = args.image_size or zoo.default_image_size(ms)
    if args.frames is not None and args.frames < 1:
        raise StudyError(f"must be a positive integer, got {args.frames}", key="--frames", fix="e.g. --frames 16")
    if args.frames and not zoo.is_video(ms):
        raise StudyError(f"{ms.name} is an image model; it takes no frames", key="--frames", fix="drop --frames")
    frames = (args.frames or zoo.DEFAULT_FRAMES) if zoo.is_video(ms) else 0
    if frames and args.channels_last:  # torch's channels_last is 4-D; video models hold 5-D convs (and 4-D embeddings)
        raise StudyError(f"--channels-last is an image layout; {ms.name} is a video model", key="--channels-last", fix="drop it")
    args.in_chans, args.num_classes = models.count_dims(ms, args.in_chans, args.num_classes)
    dims = {"image_size": size, "in_chans": args.in_chans, "num_classes": args.num_classes, "frames": frames}
    try:
        zoo.check(ms, size, args.in_chans, frames)
    except StudyError as e:
        raise e.at(key="--frames" if "frames" in e.what else "") from None
    device = pick_device(args.device)
    if args.workers is not None:
        from harness.profile_scaling import check

        check(args.workers, args.batch_size, device)  # before minutes of profiling
    settings = Settings(
        batch_size=args.batch_size,
        mode=args.mode,
        precision=args.precision,
        channels_last=args.channels_last,
        compile=args.compile,
        threads=args.threads,
        warmup=args.warmup,
        iters=args.iters,
        blocks=args.blocks,
        cv_threshold=args.cv_threshold,
        max_rounds=args.max_rounds,
        latency=not args.no_latency,
    )

    def build() -> torch.nn.Module:
        torch.manual_seed(0)
        return zoo.build(ms, **dims)

    gmacs = (flops.forward_gmacs(ms, **dims), flops_train.train_gmacs(ms, **dims))
    rec = {"model": ms.name, "family": ms.family, "size": ms.size, "params": flops.param_count(ms, **dims)}
    rec.update(profile(build, settings, device, gmacs=gmacs, **dims))
    if args.max_batch is not None:
        limit = args.max_batch or MAX_BATCH_LIMIT[device.type]
        rec.update(max_batch(build, settings, device, limit=limit, **dims))
    if args.workers is not None:
        from harness.backends.launch import run_ranks
        from harness.profile_scaling import scaling

        rec.update(scaling(run_ranks, ms.name, dims, settings, device, args.workers))
    if args.json:
        print(json.dumps(jsonable(rec), indent=1))
    else:
        from harness.console import out_console

        out_console().print(render(rec))
    return 0 if rec["status"] == "ok" and not rec.get("scaling_error") else 1


def jsonable(rec: dict) -> dict:
    """Strict JSON: NaN becomes null (jq and most parsers reject NaN)."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in rec.items()}


def _num(v: float, fmt: str = ".4g") -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


def render(rec: dict):
    from rich.table import Table

    unit = rec.get("sample_unit", "img")  # "clip" for video models: every per-sample rate counts clips
    clip = f" x {rec['frames']} frames" if rec.get("frames") else ""
    t = Table(
        title=f"{rec['model']} @ {rec['image_size']} px{clip}, batch {rec['batch_size']}, {rec['precision']}"
        f"{', channels-last' if rec['channels_last'] else ''}{', compiled' if rec['compile'] else ''}"
        f" on {rec['device']} ({rec['threads']} threads)"
    )
    for c in (
        "mode",
        "status",
        f"{unit}/s (median)",
        "IQR",
        "CV",
        "step ms",
        "timed steps",
        "compile s",
        "peak MB",
        "TFLOP/s",
        "MFU",
    ):
        t.add_column(c, justify="left" if c in ("mode", "status") else "right")
    for m in ("infer", "train"):
        if f"{m}_status" not in rec:
            continue
        flags = (" extended" if rec[f"{m}_extended"] else "") + (" UNSTABLE" if rec[f"{m}_unstable"] else "")
        t.add_row(
            m,
            rec[f"{m}_status"] + flags,
            _num(rec[f"{m}_img_s"], ".1f"),
            _num(rec[f"{m}_img_s_iqr"], ".1f"),
            _num(rec[f"{m}_cv"], ".1%"),
            _num(rec[f"{m}_step_ms"], ".2f"),
            str(rec[f"{m}_steps"]),
            _num(rec[f"{m}_compile_s"], ".1f"),
            _num(rec[f"{m}_peak_mem_mb"], ".0f"),
            _num(rec[f"{m}_tflops_s"], ".3f"),
            _num(rec[f"{m}_mfu"], ".1%"),
        )
    lines = [
        f"params {rec['params']:,}   forward {rec['fwd_gmacs']:.4g} GMACs/{unit}   training step {rec['train_gmacs']:.4g} "
        f"GMACs/{unit} ({rec['train_fwd_ratio']:.3f}x forward; 1 MAC = 2 FLOPs in TFLOP/s and MFU)",
        (
            f"latency (batch 1) {_num(rec['latency_ms_p50'], '.2f')} ms median, IQR {_num(rec['latency_ms_iqr'], '.2f')} ms, "
            f"CV {_num(rec['latency_cv'], '.1%')}" + (f", compile {rec['latency_compile_s']:.1f} s" if rec["compile"] else "")
            if not math.isnan(rec["latency_ms_p50"])
            else "latency: not measured (--no-latency, or inference did not run)"
        )
        + f"   peak memory: {rec['peak_mem_kind']}",
        f"MFU: peak {_num(rec['peak_tflops'], '.1f')} TFLOP/s" + (f" — {rec['mfu_reason']}" if rec["mfu_reason"] else ""),
    ]
    if rec["precision_note"]:
        lines.append(f"precision: {rec['precision_note']}")
    if rec["error"]:
        lines.append(f"[red]{rec['error']}[/]")
    for m in ("infer", "train"):
        if f"max_batch_{m}" in rec:
            fails = rec[f"max_batch_{m}_fails"]
            lines.append(
                f"max batch ({m}): {rec[f'max_batch_{m}']}"
                + (f", {fails} does not fit" if fails else f" (no failure up to the limit {rec['max_batch_limit']})")
                + (f"; {rec[f'max_batch_{m}_note']}" if rec[f"max_batch_{m}_note"] else "")
            )
    if "scaling_workers" in rec:
        lines.append(_scaling_line(rec, unit))
    lines.append(
        f"{rec['cpu_model']} ({rec['cpu_count']} CPUs, {rec['cpu_capability']}), {rec['device_count']} GPUs"
        f"{', driver ' + rec['driver'] if rec['driver'] else ''}; torch {rec['torch_version']}"
        f"{', CUDA ' + rec['cuda_version'] if rec['cuda_version'] else ''}; TF32 {rec['tf32']}"
    )
    t.caption = "\n".join(lines)
    return t


def _scaling_line(rec: dict, unit: str) -> str:
    return (
        f"scaling ({rec['scaling_backend']}, global batch {rec['batch_size']} = {rec['scaling_workers']} x "
        f"{rec['scaling_batch_per_rank']}, {rec['scaling_threads_per_rank']} threads per rank): training "
        f"{_num(rec['scaling_img_s_1'], '.1f')} {unit}/s at 1 rank, {_num(rec['scaling_img_s_n'], '.1f')} at "
        f"{rec['scaling_workers']}; efficiency {_num(rec['scaling_efficiency'], '.2f')}"
        + (" UNSTABLE" if rec["scaling_unstable"] else "")
        + (f" [red]{rec['scaling_error']}[/]" if rec["scaling_error"] else "")
    )
