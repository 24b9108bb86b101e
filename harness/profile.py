"""Throughput, latency, peak memory and MFU of a model: the one profiler `harness profile` and trials use.

Method, written down (nanoGPT/airbench style):
1. Compile (with `compile`): the first call of the compiled step is timed on its own and reported
   as `*_compile_s`; it never hides in warm-up or in throughput.
2. Warm up: `warmup` untimed steps (allocator growth, cuDNN/oneDNN kernel choice, lazy init).
3. Timed blocks: `iters` steps split into `blocks` equal blocks; each block is bracketed by clock reads
   that synchronise the device first (CUDA events on GPU, perf_counter after a no-op sync on
   CPU). One reading per block, not per step, keeps clock and sync cost out of the steps and
   lets the GPU queue run as it would in training. Per-step time = block time / steps.
4. Spread: median and IQR over blocks, and CV = stdev / mean. When CV > `cv_threshold`
   (5%) another round of blocks runs, up to `max_rounds` rounds; `*_extended` says it did, and
   `*_unstable` that the CV is still above the threshold at the end (trust the median, not
   the mean, and rerun on a quiet machine). Fewer than 3 blocks (smoke runs) are not judged.
5. Out of memory: the measurement is recorded as failed (`*_status = "oom"`) with the batch
   size tried. The batch is never shrunk; `search_max_batch` finds the largest batch that
   fits as a separate, explicit measurement.

Peak memory: CUDA `max_memory_allocated` per mode (weights + gradients + optimizer state +
activations); on CPU the growth of the process's peak resident set (VmHWM, reset through
/proc/self/clear_refs) over the resident set before the model was built. `peak_mem_kind` says
which. FLOPs: forward and training MACs per image counted on the meta device
(harness/flops.py, harness/flops_train.py); achieved TFLOP/s = 2 FLOPs per MAC x MACs/img x
img/s, and MFU divides it by the device peak of harness/hardware.py (NaN with a reason on CPUs).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F

from harness import hardware
from harness.errors import StudyError
from harness.flops import input_shape
from harness.flops_train import built_train_gmacs
from harness.profile_memory import PeakMemory, free_cache, is_oom, mem_available_mb
from harness.profile_timing import BLOCKS, CV_THRESHOLD, MAX_ROUNDS, Clock, Timing, clock_for, measure, spread, sync

PRECISIONS = ("fp32", "tf32", "bf16", "fp16", "amp-bf16")
MODES = ("infer", "train", "both")
LATENCY_ITERS_MIN = 5
CPU_MEM_HEADROOM = 0.8  # max-batch search on CPU: never try a batch predicted to need > 80% of MemAvailable


# ----------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Settings:
    batch_size: int = 32
    mode: str = "both"  # infer | train | both
    precision: str = "fp32"  # fp32 | tf32 | bf16 | fp16 | amp-bf16
    channels_last: bool = False
    compile: bool = False
    threads: int | None = None  # None: keep torch's current setting (trials set one per CPU)
    warmup: int = 3
    iters: int = 10  # timed steps per round
    blocks: int = BLOCKS
    cv_threshold: float = CV_THRESHOLD
    max_rounds: int = MAX_ROUNDS
    latency: bool = True  # batch-1 inference latency, measured with its own blocks of one step

    @property
    def modes(self) -> tuple[str, ...]:
        return ("infer", "train") if self.mode == "both" else (self.mode,)


def trial_precision(device: torch.device) -> str:
    """What harness.train.autocast runs: bf16 autocast on CUDA, fp32 on CPU."""
    return "amp-bf16" if device.type == "cuda" else "fp32"


def check_settings(s: Settings, device: torch.device) -> str:
    """Raise StudyError for what cannot be measured; return the note a measurement must carry."""
    if s.mode not in MODES:
        raise StudyError(f"unknown mode {s.mode!r}", key="--mode", fix=f"one of {', '.join(MODES)}")
    if s.precision not in PRECISIONS:
        raise StudyError(f"unknown precision {s.precision!r}", key="--precision", fix=f"one of {', '.join(PRECISIONS)}")
    for key, v in (("batch_size", s.batch_size), ("iters", s.iters), ("blocks", s.blocks), ("max_rounds", s.max_rounds)):
        if not isinstance(v, int) or v < 1:
            raise StudyError(
                f"{key} must be a positive integer, got {v!r}", key=f"--{key.replace('_', '-')}", fix="use a whole number > 0"
            )
    if s.threads is not None and s.threads < 1:
        raise StudyError(f"threads must be >= 1, got {s.threads}", key="--threads", fix="e.g. --threads 2")
    if device.type == "cpu":
        if s.precision == "fp16":
            raise StudyError(
                "fp16 on CPU is not measured: CPU fp16 kernels are reference paths, not what anyone trains with",
                key="--precision",
                fix="use fp32, bf16 or amp-bf16 on CPU, fp16 on a GPU",
            )
        if s.precision == "tf32":
            raise StudyError("tf32 is a CUDA tensor-core mode", key="--precision", fix="use fp32 on CPU")
        if s.precision in ("bf16", "amp-bf16"):
            return hardware.cpu_bf16_note()
    if device.type == "cuda" and s.precision in ("bf16", "amp-bf16") and not torch.cuda.is_bf16_supported():
        return f"{hardware.device_name(device)} has no native bf16: emulated, far below fp16 speed"
    return ""


@contextlib.contextmanager
def precision_mode(precision: str, device: torch.device) -> Iterator[None]:
    """On CUDA, fp32 means strict fp32 and tf32 means TF32 matmuls and convolutions, whatever the
    process default (matmul off, cuDNN on in torch): one precision, one peak to divide by."""
    if device.type != "cuda" or precision not in ("fp32", "tf32"):
        yield
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = precision == "tf32"
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@contextlib.contextmanager
def num_threads(threads: int | None) -> Iterator[None]:
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def autocast_for(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    return torch.autocast(device.type, dtype=torch.bfloat16) if precision == "amp-bf16" else nullcontext()


# ----------------------------------------------------------------------------- steps


@dataclass
class Workload:
    """A model on its device in its precision and layout, with the steps we time."""

    model: torch.nn.Module  # possibly compiled
    settings: Settings
    device: torch.device
    in_chans: int
    image_size: int
    num_classes: int
    optimizer: torch.optim.Optimizer | None = None
    dtype: torch.dtype = torch.float32
    frames: int = 0  # video models: clips [B, C, frames, H, W]; a "sample" is then a clip

    def inputs(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        shape = input_shape(batch, self.in_chans, self.image_size, self.frames)
        x = torch.randn(shape, device=self.device, dtype=self.dtype)
        if self.settings.channels_last and not self.frames:  # channels_last is a 4-D layout
            x = x.contiguous(memory_format=torch.channels_last)
        return x, torch.randint(0, self.num_classes, (batch,), device=self.device)

    def infer_step(self, x: torch.Tensor) -> Callable[[], object]:
        model, cast = self.model, autocast_for(self.settings.precision, self.device)

        def step() -> object:
            with torch.no_grad(), cast:
                return model(x)

        return step

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> Callable[[], object]:
        model, cast = self.model, autocast_for(self.settings.precision, self.device)
        if self.optimizer is None:  # lr tiny: weights barely move, so every step costs the same
            # fused on CUDA, as the trainer's (harness.train.make_optimizer): one update kernel per step
            self.optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6, fused=self.device.type == "cuda")
        opt = self.optimizer

        def step() -> object:
            with cast:
                loss = F.cross_entropy(model(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return loss

        return step


def make_workload(
    build: Callable[[], torch.nn.Module],
    s: Settings,
    device: torch.device,
    *,
    in_chans: int,
    image_size: int,
    num_classes: int,
    frames: int = 0,
) -> Workload:
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(s.precision, torch.float32)
    model = build().to(device=device, dtype=dtype)
    if s.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if s.compile:
        torch._dynamo.reset()  # compile time is measured from scratch, not from an earlier profile's cache
        model = torch.compile(model)
    return Workload(model, s, device, in_chans, image_size, num_classes, dtype=dtype, frames=frames)


# ----------------------------------------------------------------------------- measurement


@dataclass
class ModeResult:
    mode: str
    status: str  # ok | oom
    batch_size: int
    timing: Timing | None = None
    peak_mem_mb: float = math.nan
    peak_mem_kind: str = ""
    error: str = ""

    def columns(self, gmacs_per_img: float, peak: float) -> dict:
        p, t = self.mode, self.timing
        if t is None:
            nan = math.nan
            return {
                f"{p}_status": self.status,
                f"{p}_error": self.error,
                f"{p}_img_s": nan,
                f"{p}_img_s_iqr": nan,
                f"{p}_step_ms": nan,
                f"{p}_step_ms_iqr": nan,
                f"{p}_cv": nan,
                f"{p}_steps": 0,
                f"{p}_extended": False,
                f"{p}_unstable": False,
                f"{p}_compile_s": nan,
                f"{p}_peak_mem_mb": self.peak_mem_mb,
                f"{p}_tflops_s": nan,
                f"{p}_mfu": nan,
            }
        med_s, iqr_s, cv = spread(t.per_step_s)
        img_s, img_iqr, _ = spread([self.batch_size / s for s in t.per_step_s])
        achieved = 2 * gmacs_per_img * 1e9 * img_s  # 2 FLOPs per MAC, as device peaks count
        return {
            f"{p}_status": self.status,
            f"{p}_error": self.error,
            f"{p}_img_s": img_s,
            f"{p}_img_s_iqr": img_iqr,
            f"{p}_step_ms": med_s * 1e3,
            f"{p}_step_ms_iqr": iqr_s * 1e3,
            f"{p}_cv": cv,
            f"{p}_steps": t.steps,
            f"{p}_extended": t.extended,
            f"{p}_unstable": t.unstable,
            f"{p}_compile_s": t.compile_s,
            f"{p}_peak_mem_mb": self.peak_mem_mb,
            f"{p}_tflops_s": achieved / 1e12,
            f"{p}_mfu": achieved / peak,
        }


def _timing_kwargs(s: Settings) -> dict:
    return {
        "warmup": s.warmup,
        "iters": s.iters,
        "blocks": s.blocks,
        "cv_threshold": s.cv_threshold,
        "max_rounds": s.max_rounds,
        "compile_first": s.compile,
    }


def measure_mode(w: Workload, mode: str, clock: Clock, mem: PeakMemory) -> ModeResult:
    """One mode at the settings' batch size; out of memory is a result, not an exception."""
    s = w.settings
    w.model.train(mode == "train")
    mem.reset()
    try:
        x, y = w.inputs(s.batch_size)
        step = w.train_step(x, y) if mode == "train" else w.infer_step(x)
        timing = measure(step, clock, **_timing_kwargs(s))
    except Exception as e:
        if not is_oom(e):
            raise
        free_cache(w.device)
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        return ModeResult(mode, "oom", s.batch_size, error=f"out of memory at batch_size={s.batch_size} ({mode}): {first}")
    peak, kind = mem.read()
    return ModeResult(mode, "ok", s.batch_size, timing, peak, kind)


def measure_latency(w: Workload, clock: Clock) -> Timing:
    """Batch-1 inference, one step per block: a latency is a single request's time."""
    s = w.settings
    w.model.eval()
    x, _ = w.inputs(1)
    iters = max(s.iters, LATENCY_ITERS_MIN)
    return measure(
        w.infer_step(x),
        clock,
        warmup=s.warmup,
        iters=iters,
        blocks=iters,  # batch 1 recompiles:
        cv_threshold=s.cv_threshold,
        max_rounds=s.max_rounds,
        compile_first=s.compile,
    )  # timed apart


def profile(
    build: Callable[[], torch.nn.Module],
    settings: Settings,
    device: torch.device,
    *,
    in_chans: int,
    image_size: int,
    num_classes: int,
    gmacs: tuple[float, float] | None = None,
    clock: Clock | None = None,
    frames: int = 0,
) -> dict:
    """One flat record: settings, FLOPs, per-mode speed and spread, latency, memory, MFU, fingerprint.

    `gmacs` = (forward, forward + backward) MACs per image in units of 1e9; counted on the meta
    device from `build` when not given. `frames` > 0: a video model fed [B, C, frames, H, W]
    clips; every per-image number (img/s, GMACs/img) is then per clip (`sample_unit` "clip")."""
    note = check_settings(settings, device)
    dims = {"in_chans": in_chans, "image_size": image_size, "num_classes": num_classes, "frames": frames}
    fwd, train = gmacs if gmacs is not None else built_train_gmacs(build, **dims)
    with num_threads(settings.threads), precision_mode(settings.precision, device):
        clock = clock or clock_for(device)
        mem = PeakMemory(device)
        w = make_workload(build, settings, device, **dims)
        results = {m: measure_mode(w, m, clock, mem) for m in settings.modes}
        infer_ok = "infer" in results and results["infer"].status == "ok"
        lat = measure_latency(w, clock) if settings.latency and infer_ok else None
        rec = _record(settings, dims, fwd, train, note, results, lat, device)
        rec.update(hardware.fingerprint(device))  # inside: threads and TF32 as measured
    return rec


def _record(
    s: Settings,
    dims: dict,
    fwd: float,
    train: float,
    note: str,
    results: dict[str, ModeResult],
    lat: Timing | None,
    device: torch.device,
) -> dict:
    peak, reason = hardware.peak_flops(hardware.device_name(device), s.precision)
    rec: dict = {
        **dims,
        "sample_unit": "clip" if dims.get("frames") else "img",  # what img_s and GMACs/img count
        "batch_size": s.batch_size,
        "mode": s.mode,
        "precision": s.precision,
        "precision_note": note,
        "channels_last": s.channels_last,
        "compile": s.compile,
        "warmup": s.warmup,
        "iters": s.iters,
        "blocks": s.blocks,
        "cv_threshold": s.cv_threshold,
        "fwd_gmacs": fwd,
        "train_gmacs": train,
        "train_fwd_ratio": train / fwd if fwd else math.nan,
        "peak_tflops": peak / 1e12,
        "mfu_reason": reason,
    }
    for mode, r in results.items():
        rec.update(r.columns(fwd if mode == "infer" else train, peak))
    if "train" not in results:
        rec["mfu_reason"] = reason or "training not measured (mode infer): see infer_mfu"
    main = results.get("train") or results["infer"]
    rec["mfu"] = rec.get("train_mfu", math.nan)
    rec["peak_mem_mb"], rec["peak_mem_kind"] = main.peak_mem_mb, main.peak_mem_kind
    rec["extended"] = any(r.timing is not None and r.timing.extended for r in results.values())
    rec["unstable"] = any(r.timing is not None and r.timing.unstable for r in results.values())
    rec["status"] = "ok" if all(r.status == "ok" for r in results.values()) else "oom"
    rec["error"] = "; ".join(r.error for r in results.values() if r.error)
    if lat is not None:
        med, iqr, cv = spread(lat.per_step_s)
        rec.update(
            {"latency_ms_p50": med * 1e3, "latency_ms_iqr": iqr * 1e3, "latency_cv": cv, "latency_compile_s": lat.compile_s}
        )
    else:
        rec.update(
            {"latency_ms_p50": math.nan, "latency_ms_iqr": math.nan, "latency_cv": math.nan, "latency_compile_s": math.nan}
        )
    return rec


# ----------------------------------------------------------------------------- max batch


def search_max_batch(fits: Callable[[int], bool], start: int, limit: int) -> tuple[int, int | None]:
    """(largest batch <= limit that fits, smallest batch seen not to fit or None).

    Doubling from `start` until a batch fails or `limit` fits, then bisection; if `start`
    itself fails, bisection below it. Assumes memory grows with the batch."""
    lo, hi = 0, None
    b = max(1, min(start, limit))
    while True:
        if not fits(b):
            hi = b
            break
        lo = b
        if b >= limit:
            break
        b = min(2 * b, limit)
    while hi is not None and hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return lo, hi


@dataclass
class BatchProbe:
    """fits(b): two steps at batch b run without running out of memory.

    On CPU an allocation too large for the machine rarely raises: Linux overcommits and the
    OOM killer ends the process (and may hit a neighbour). So on CPU a batch is first predicted
    from the largest one that ran, proportionally (an overestimate: weights do not grow), and
    one needing more than CPU_MEM_HEADROOM of MemAvailable is declared not to fit untried."""

    w: Workload
    mode: str
    mem: PeakMemory
    seen: dict[int, float] = field(default_factory=dict)  # batch -> peak MB of the runs that fitted
    predicted: list[int] = field(default_factory=list)  # batches declared too big without running

    def __call__(self, b: int) -> bool:
        if self.w.device.type == "cpu" and self.seen:
            ref = max(self.seen)
            if self.seen[ref] * b / ref > CPU_MEM_HEADROOM * mem_available_mb():
                self.predicted.append(b)
                return False
        self.w.model.train(self.mode == "train")
        self.mem.reset()
        try:
            x, y = self.w.inputs(b)
            step = self.w.train_step(x, y) if self.mode == "train" else self.w.infer_step(x)
            for _ in range(2):  # the second step holds optimizer state and gradients together
                step()
            sync(self.w.device)
        except Exception as e:
            if not is_oom(e):
                raise
            free_cache(self.w.device)
            return False
        self.seen[b] = self.mem.read()[0]
        return True


def max_batch(
    build: Callable[[], torch.nn.Module],
    settings: Settings,
    device: torch.device,
    *,
    in_chans: int,
    image_size: int,
    num_classes: int,
    limit: int,
    frames: int = 0,
) -> dict:
    """Largest batch per mode that fits (<= limit), reported apart from the throughput record."""
    check_settings(settings, device)
    dims = {"in_chans": in_chans, "image_size": image_size, "num_classes": num_classes, "frames": frames}
    out: dict = {"max_batch_limit": limit}
    with num_threads(settings.threads), precision_mode(settings.precision, device):
        for mode in settings.modes:
            w = make_workload(build, replace(settings, compile=False), device, **dims)  # probes need no compile
            probe = BatchProbe(w, mode, PeakMemory(device))
            fits, fails = search_max_batch(probe, settings.batch_size, limit)
            out[f"max_batch_{mode}"] = fits
            out[f"max_batch_{mode}_fails"] = fails  # smallest batch that did not fit (None: none up to limit)
            out[f"max_batch_{mode}_note"] = (
                f"batches {sorted(set(probe.predicted))} not tried: predicted from peak RSS to "
                f"exceed {CPU_MEM_HEADROOM:.0%} of MemAvailable"
                if probe.predicted
                else ""
            )
            del w, probe
            free_cache(device)
    return out


# ----------------------------------------------------------------------------- trials


TRIAL_KEYS = (
    "infer_img_s",
    "infer_img_s_iqr",
    "infer_step_ms",
    "infer_cv",
    "train_img_s",
    "train_img_s_iqr",
    "train_step_ms",
    "train_cv",
    "latency_ms_p50",
    "latency_cv",
    "extended",
    "unstable",
    "peak_mem_mb",
    "peak_mem_kind",
    "infer_tflops_s",
    "train_tflops_s",
    "infer_mfu",
    "mfu",
    "mfu_reason",
    "peak_tflops",
    "precision",
    "train_gmacs",
    # fingerprint columns the trial row does not already carry (device, threads, torch_version)
    "device_count",
    "driver",
    "cpu_model",
    "cpu_count",
    "cpu_capability",
    "cuda_version",
    "cudnn_version",
    "tf32",
)
TRIAL_RENAMES = {"extended": "profile_extended", "unstable": "profile_unstable", "precision": "profile_precision"}


def profile_model(
    build: Callable[[], torch.nn.Module],
    *,
    in_chans: int,
    image_size: int,
    num_classes: int,
    batch_size: int,
    warmup: int,
    iters: int,
    device: torch.device,
    gmacs: tuple[float, float] | None = None,
    frames: int = 0,
) -> dict:
    """The trial's profile step: both modes at the precision training uses; the row's columns.

    Out of memory raises torch.OutOfMemoryError naming the batch, so the trial becomes a failed
    row that says which batch did not fit (STYLE 7) rather than an ok row with holes."""
    s = Settings(batch_size=batch_size, mode="both", precision=trial_precision(device), warmup=warmup, iters=iters)
    rec = profile(build, s, device, in_chans=in_chans, image_size=image_size, num_classes=num_classes, gmacs=gmacs, frames=frames)
    if rec["status"] != "ok":
        raise torch.OutOfMemoryError(rec["error"])
    out = {TRIAL_RENAMES.get(k, k): rec[k] for k in TRIAL_KEYS}
    out["profile_batch_size"] = batch_size
    return out
