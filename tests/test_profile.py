"""The profiler: timing logic on a fake clock, out-of-memory records, max-batch search, the CLI, trials.

No test asserts on wall-clock speed (DESIGN: measured, not assumed); benchmarks/ compares speeds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from harness import flops_train, spec, zoo
from harness.cli import main
from harness.errors import StudyError
from harness.profile import (
    Settings,
    check_settings,
    max_batch,
    profile,
    profile_model,
    search_max_batch,
)
from harness.profile_timing import WallClock, measure, spread
from harness.trial import run_trial
from tests.conftest import write_study

CPU = torch.device("cpu")


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models; a shared 2-core machine (see test_flops.py)
    yield
    torch.set_num_threads(threads)


class FakeTime:
    """A clock that moves only when a fake step says so."""

    def __init__(self) -> None:
        self.t = 0.0
        self.calls = 0

    def now(self) -> float:
        return self.t

    def step(self, duration: Callable[[int], float]) -> Callable[[], None]:
        def run() -> None:
            self.t += duration(self.calls)
            self.calls += 1

        return run


def test_warmup_is_not_timed_and_blocks_split_the_steps() -> None:
    fake = FakeTime()
    # 3 warm-up steps of 100 s (lazy init, allocator growth), then 0.1 s per step
    t = measure(fake.step(lambda i: 100.0 if i < 3 else 0.1), WallClock(CPU, fake.now), warmup=3, iters=10, blocks=5)
    assert fake.calls == 13 and t.steps == 10 and len(t.per_step_s) == 5
    assert t.median_s == pytest.approx(0.1) and t.cv == pytest.approx(0.0, abs=1e-9)
    assert t.rounds == 1 and not t.extended and not t.unstable and math.isnan(t.compile_s)


def test_compile_call_is_its_own_number() -> None:
    fake = FakeTime()
    t = measure(
        fake.step(lambda i: 50.0 if i == 0 else 0.2), WallClock(CPU, fake.now), warmup=2, iters=4, blocks=2, compile_first=True
    )
    assert t.compile_s == pytest.approx(50.0) and t.median_s == pytest.approx(0.2)
    assert fake.calls == 1 + 2 + 4


def test_high_spread_measures_longer_and_says_so() -> None:
    fake = FakeTime()
    # blocks of 2 steps alternate between 0.1 s and 0.3 s per step: CV ~ 50% whatever we do
    t = measure(
        fake.step(lambda i: 0.1 if (i // 2) % 2 else 0.3),
        WallClock(CPU, fake.now),
        warmup=0,
        iters=10,
        blocks=5,
        cv_threshold=0.05,
        max_rounds=3,
    )
    assert t.rounds == 3 and t.steps == 30 and t.extended and t.unstable and t.cv > 0.3


def test_extension_stops_once_the_spread_is_low() -> None:
    fake = FakeTime()
    # one slow block in the first round (CV 6.5%); a second quiet round brings it to 4.7%
    durations = [1.0, 1.0, 1.0, 1.0, 1.15] + [1.0] * 20
    t = measure(
        fake.step(lambda i: durations[i]), WallClock(CPU, fake.now), warmup=0, iters=5, blocks=5, cv_threshold=0.05, max_rounds=3
    )
    assert t.rounds == 2 and t.extended and not t.unstable and t.median_s == pytest.approx(1.0)


def test_spread() -> None:
    med, iqr, cv = spread([1.0, 2.0, 3.0, 4.0, 5.0])
    assert (med, iqr) == (3.0, 2.0) and cv == pytest.approx(1.5811388 / 3)
    one = spread([2.0])
    assert one[0] == 2.0 and math.isnan(one[1]) and math.isnan(one[2])


class Hungry(nn.Module):
    """Runs out of memory above `fits` images, as a GPU would (CPUs rarely raise: they get killed)."""

    def __init__(self, fits: int) -> None:
        super().__init__()
        self.fits = fits
        self.head = nn.Linear(3 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > self.fits:
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {x.shape[0]} GiB")
        return self.head(x.flatten(1))


DIMS = {"in_chans": 3, "image_size": 4, "num_classes": 10}
TINY = Settings(batch_size=8, warmup=1, iters=2, blocks=2)


def test_oom_is_a_failed_measurement_with_the_batch_never_a_smaller_batch() -> None:
    rec = profile(lambda: Hungry(fits=4), TINY, CPU, gmacs=(1e-6, 3e-6), **DIMS)
    assert rec["status"] == "oom" and rec["batch_size"] == 8
    for mode in ("infer", "train"):
        assert rec[f"{mode}_status"] == "oom" and "batch_size=8" in rec[f"{mode}_error"]
        assert math.isnan(rec[f"{mode}_img_s"]) and rec[f"{mode}_steps"] == 0
    assert math.isnan(rec["latency_ms_p50"])  # not measured at batch 1 behind the user's back
    with pytest.raises(torch.OutOfMemoryError, match="batch_size=8"):  # a trial's row says which batch failed
        profile_model(lambda: Hungry(fits=4), batch_size=8, warmup=1, iters=2, device=CPU, gmacs=(1e-6, 3e-6), **DIMS)


def test_fitting_batch_is_measured() -> None:
    rec = profile(lambda: Hungry(fits=8), TINY, CPU, gmacs=(1e-6, 3e-6), **DIMS)
    assert rec["status"] == "ok" and rec["infer_img_s"] > 0 and rec["train_img_s"] > 0 and rec["latency_ms_p50"] > 0
    assert rec["infer_steps"] >= 2 and rec["train_tflops_s"] == pytest.approx(2 * 3e-6 * 1e9 * rec["train_img_s"] / 1e12)


@pytest.mark.parametrize(
    "start,limit,expect", [(8, 4096, (37, 38)), (64, 4096, (37, 38)), (1, 20, (20, None)), (37, 37, (37, None))]
)
def test_max_batch_search(start: int, limit: int, expect: tuple[int, int | None]) -> None:
    tried: list[int] = []

    def fits(b: int) -> bool:
        tried.append(b)
        return b <= 37

    assert search_max_batch(fits, start, limit) == expect
    assert max(tried) <= limit and len(tried) < 20


def test_max_batch_nothing_fits() -> None:
    assert search_max_batch(lambda b: False, 16, 64) == (0, 1)


def test_max_batch_is_reported_apart_from_the_measurement() -> None:
    out = max_batch(lambda: Hungry(fits=37), TINY, CPU, limit=100, **DIMS)
    assert out["max_batch_infer"] == 37 and out["max_batch_infer_fails"] == 38
    assert out["max_batch_train"] == 37 and out["max_batch_limit"] == 100


def test_precision_rules_on_cpu() -> None:
    with pytest.raises(StudyError, match="fp16 on CPU"):
        check_settings(Settings(precision="fp16"), CPU)
    with pytest.raises(StudyError, match="tf32"):
        check_settings(Settings(precision="tf32"), CPU)
    assert "bf16 on CPU" in check_settings(Settings(precision="amp-bf16"), CPU)
    assert check_settings(Settings(precision="fp32"), CPU) == ""


def test_bf16_on_cpu_runs_and_says_so() -> None:
    rec = profile(
        lambda: Hungry(fits=8),
        Settings(batch_size=4, warmup=1, iters=2, blocks=2, precision="bf16", latency=False),
        CPU,
        gmacs=(1e-6, 3e-6),
        **DIMS,
    )
    assert rec["status"] == "ok" and "bf16 on CPU" in rec["precision_note"] and rec["precision"] == "bf16"


def test_real_model_record() -> None:
    ms = zoo.resolve("vit@xs")
    dims = {"image_size": 28, "in_chans": 1, "num_classes": 10}
    rec = profile(
        lambda: zoo.build(ms, **dims), Settings(batch_size=4, warmup=1, iters=2, blocks=2, threads=1), CPU, **dims
    )  # FLOPs counted from the builder on the meta device
    assert rec["status"] == "ok" and rec["threads"] == 1 and rec["device"] == "cpu"
    assert rec["train_gmacs"] == pytest.approx(flops_train.train_gmacs(ms, **dims))
    assert 2.95 < rec["train_fwd_ratio"] <= 3.0
    assert math.isnan(rec["mfu"]) and math.isnan(rec["infer_mfu"]) and "CPU" in rec["mfu_reason"]
    assert rec["infer_tflops_s"] > 0 and rec["peak_mem_kind"] == "cpu_peak_rss_growth"
    assert isinstance(rec["extended"], bool) and rec["cpu_model"]


def test_cli_profile_json(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["profile", "vit@xs", "--json", "--batch-size", "2", "--warmup", "1", "--iters", "2", "--threads", "1"])
    rec = json.loads(capsys.readouterr().out)  # strict JSON: NaN written as null
    assert code == 0 and rec["model"] == "vit@xs" and rec["image_size"] == 28 and rec["batch_size"] == 2
    assert rec["infer_img_s"] > 0 and rec["train_img_s"] > 0 and rec["mfu"] is None and rec["mfu_reason"]
    assert rec["params"] > 0 and rec["fwd_gmacs"] > 0 and rec["threads"] == 1
    assert {
        "infer_cv",
        "train_cv",
        "infer_step_ms_iqr",
        "train_extended",
        "latency_ms_p50",
        "cpu_model",
        "torch_version",
        "tf32",
        "peak_mem_mb",
    } <= set(rec)


def test_cli_profile_table_and_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "profile",
                "resnet@xs",
                "--mode",
                "infer",
                "--batch-size",
                "2",
                "--warmup",
                "0",
                "--iters",
                "1",
                "--no-latency",
                "--threads",
                "1",
            ]
        )
        == 0
    )
    assert "resnet@xs" in capsys.readouterr().out
    assert main(["profile", "vit@xs", "--precision", "fp16", "--device", "cpu"]) == 2
    assert "fp16 on CPU" in capsys.readouterr().err
    assert main(["profile", "vit@xs", "--image-size", "30"]) == 2  # not a multiple of the patch


def test_trial_rows_carry_counted_flops_spread_mfu_and_fingerprint(tmp_path: Path) -> None:
    trial = spec.expand(spec.load_study(write_study(tmp_path, models="[convnext@xs]", data_sizes="[32]", steps=2)))[0]
    r = run_trial(trial).row
    assert r["status"] == "ok", r.get("traceback")
    assert r["train_flops"] == pytest.approx(r["train_gmacs"] * 1e9 * r["samples_seen"])
    assert 2.95 < r["train_gmacs"] / r["fwd_gmacs"] <= 3.0
    assert math.isnan(r["mfu"]) and "CPU" in r["mfu_reason"] and r["profile_precision"] == "fp32"
    assert r["infer_cv"] >= 0 and r["train_cv"] >= 0 and isinstance(r["profile_extended"], bool)
    assert r["cpu_model"] and r["cpu_count"] >= 1 and r["profile_batch_size"] == 4


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_path_events_memory_and_autocast() -> None:
    from harness.profile_timing import CudaEventClock, clock_for

    cuda = torch.device("cuda")
    assert isinstance(clock_for(cuda), CudaEventClock)
    ms = zoo.resolve("vit@xs")
    dims = {"image_size": 32, "in_chans": 3, "num_classes": 10}
    rec = profile(lambda: zoo.build(ms, **dims), Settings(batch_size=8, warmup=2, iters=4, precision="amp-bf16"), cuda, **dims)
    assert rec["status"] == "ok" and rec["peak_mem_kind"] == "cuda_max_allocated" and rec["peak_mem_mb"] > 0
    assert rec["device"] == torch.cuda.get_device_name() and rec["tf32"].startswith("matmul=")
    assert not math.isnan(rec["mfu"]) or rec["mfu_reason"]


def test_attention_cost_smoke_swaps_resolutions_and_keeps_the_trial_count() -> None:
    path = Path(__file__).resolve().parent.parent / "studies" / "attention_cost.yaml"
    study = spec.load_study(path)
    smoked = spec.smoke(study)
    assert max(study.grid["image_size"]) == 1024 and max(smoked.grid["image_size"]) <= 128
    assert len(spec.expand(smoked)) == len(spec.expand(study)) and study.train["steps"] == 0


def test_smoke_sizes_are_validated(tmp_path: Path) -> None:
    bad = write_study(tmp_path, models="[vit@xs]", extra="smoke: {image_size: [30]}\n")
    with pytest.raises(StudyError, match="smoke.image_size"):
        spec.load_study(bad)  # 30 px is not a multiple of vit@xs's patch 4
    two = write_study(tmp_path, name="two", models="[vit@xs]", extra="smoke: {image_size: [16, 32]}\n")
    with pytest.raises(StudyError, match="one per grid.image_size"):
        spec.load_study(two)


class Scratch(nn.Module):
    """Allocates `mb` MB of 1 MB tensors in each forward (heap-sized, below glibc's mmap threshold) and
    keeps them alive until the forward ends, so the step's peak memory is at least `mb`. A small tensor
    allocated after them outlives the forward, as real models' gradients and optimizer state do, so
    the freed megabytes are a hole inside the heap that the allocator keeps (no automatic trim)."""

    def __init__(self, mb: int) -> None:
        super().__init__()
        self.mb = mb
        self.head = nn.Linear(4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = [torch.ones(1 << 18) for _ in range(self.mb)]  # 2**18 float32 = 1 MB each
        self.kept = getattr(self, "kept", []) + [torch.ones(64)]  # above the hole in the heap
        return self.head(x.flatten(1)[:, :4]) + sum(p[0] for p in parts)


def test_cpu_peak_memory_is_right_for_a_second_profile_in_the_same_process() -> None:
    """Trials share a process (local backend, a reused Ray worker): memory a first profile freed but the
    allocator kept must not hide the second profile's peak (it read ~0 MB before the heap was trimmed)."""
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs Linux /proc peak-RSS reset")
    s = Settings(batch_size=2, mode="infer", warmup=0, iters=1, blocks=1, latency=False)
    dims = {"in_chans": 1, "image_size": 2, "num_classes": 10}
    first = profile(lambda: Scratch(300), s, CPU, gmacs=(1e-6, 3e-6), **dims)
    second = profile(lambda: Scratch(100), s, CPU, gmacs=(1e-6, 3e-6), **dims)
    assert first["peak_mem_kind"] == second["peak_mem_kind"] == "cpu_peak_rss_growth"
    assert first["peak_mem_mb"] >= 290
    assert 95 <= second["peak_mem_mb"] < 200


# ----------------------------------------------------------------------------- scaling efficiency (--workers)


def test_scaling_record_is_img_s_at_n_over_n_times_img_s_at_1() -> None:
    from harness.profile_scaling import record

    rec = record({1: [0.010, 0.010, 0.012], 2: [0.008, 0.008, 0.008]}, 16, 2, 1, CPU, 0.05)
    assert rec["scaling_img_s_1"] == pytest.approx(1600) and rec["scaling_img_s_n"] == pytest.approx(2000)
    assert rec["scaling_efficiency"] == pytest.approx(2000 / (2 * 1600))
    assert rec["scaling_unstable"] and rec["scaling_batch_per_rank"] == 8 and rec["scaling_backend"] == "gloo"


@pytest.mark.parametrize(
    ("flags", "key"),
    [(["--workers", "1"], "--workers"), (["--workers", "3", "--batch-size", "8"], "--batch-size")],
)
def test_scaling_refuses_what_it_cannot_measure(flags: list[str], key: str, capsys: pytest.CaptureFixture) -> None:
    assert main(["profile", "resnet@xs", *flags]) == 2
    assert key in capsys.readouterr().err


@pytest.mark.slow
def test_profile_workers_2_reports_scaling_efficiency_from_two_gloo_ranks(capsys: pytest.CaptureFixture) -> None:
    """Two spawned ranks through the trials' launcher (gloo); fields exist and are consistent, never a speed."""
    args = ["profile", "resnet@xs", "--workers", "2", "--batch-size", "4", "--mode", "train", "--no-latency"]
    assert main([*args, "--warmup", "1", "--iters", "2", "--blocks", "2", "--threads", "1", "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert (rec["scaling_workers"], rec["scaling_backend"], rec["scaling_batch_per_rank"]) == (2, "gloo", 2)
    assert rec["scaling_threads_per_rank"] == 1 and rec["scaling_img_s_1"] > 0 and rec["scaling_img_s_n"] > 0
    assert rec["scaling_efficiency"] == pytest.approx(rec["scaling_img_s_n"] / (2 * rec["scaling_img_s_1"]))
    assert rec["scaling_step_ms_n"] > 0 and isinstance(rec["scaling_unstable"], bool)


def test_a_failed_rank_is_a_scaling_error_not_a_crash() -> None:
    from harness.profile_scaling import scaling

    def dies(fn: object, world: int, device_type: str, *args: object) -> object:
        if world == 1:
            return [0.01, 0.01]  # the 1-rank baseline ran
        raise RuntimeError(f"rank 1 of {world} failed (exit code -9)")

    rec = scaling(dies, "resnet@xs", {}, Settings(batch_size=4, threads=1), CPU, 2)
    assert rec["scaling_error"] == "rank 1 of 2 failed (exit code -9)" and math.isnan(rec["scaling_efficiency"])


@pytest.mark.slow
def test_run_ranks_names_the_rank_that_failed_and_returns_rank_0s_value() -> None:
    from harness.backends.launch import run_ranks
    from tests.rank_functions import fail_on_rank_1  # a module that imports nothing: each spawned rank loads it

    with pytest.raises(RuntimeError, match=r"rank 1 of 2 failed \(exit code 3\): ValueError: rank 1 cannot"):
        run_ranks(fail_on_rank_1, 2, "cpu")
    assert run_ranks(fail_on_rank_1, 1, "cpu") == "rank 0 done"
