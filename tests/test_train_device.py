"""The trainer of issue 10: device-resident batches and sync-free steps on CUDA, unchanged on CPU.

CPU: the current trainer must reproduce, to the bit, the numbers of the trainer before issue 10
(per-step `.item()`, host batches), taken from git history and run on the same machine
(tests/pre_issue_10.py says why not a recorded table). GPU (`-m gpu`, skipped without
CUDA; scripts/gpu_check.sh runs them, < 60 s on one H100): batches gathered on the device, no host
sync per step, a NaN named with its step window, the compile column, resume from a checkpoint.
"""

from __future__ import annotations

import math
import types
import warnings
from pathlib import Path

import pytest
import torch

from harness import data, spec, zoo
from harness import train as train_mod
from harness.data import DEBIAN_FASHION, FASHION_FILES
from harness.trial import run_trial

from . import pre_issue_10

HAS_FASHION = (DEBIAN_FASHION / FASHION_FILES["train_images"]).is_file()
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

SYNTHETIC = """
name: golden_syn
dataset: {name: synthetic, num_classes: 4, channels: 1, image_size: 16, train_size: 256, test_size: 64}
grid: {model: [resnet@xs, vit@xs, mixer@xs, convnext@xs], data_size: [96], image_size: [16], seed: [0]}
train: {steps: 12, batch_size: 16, lr: 1.0e-3, warmup_steps: 2, eval_every: 4, augment: flip_shift, label_smoothing: 0.1}
profile: {enabled: false}
"""
FASHION = """
name: golden_fashion
dataset: {name: fashion_mnist, root: /usr/share/datasets/fashion-mnist}
grid: {model: [resnet@xs, vit@xs], data_size: [500], image_size: [28], seed: [1]}
train: {steps: 30, batch_size: 64, lr: 2.0e-3, warmup_steps: 5, eval_every: 10, eval_size: 1000, curve_eval_size: 500}
profile: {enabled: false}
"""


def _trials(tmp_path: Path, text: str) -> list[spec.Trial]:
    path = tmp_path / "study.yaml"
    path.write_text(text)
    return spec.expand(spec.load_study(path))


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """The pre-issue-10 trainer's numbers for both studies, computed on this machine (tests/pre_issue_10.py)."""
    if not pre_issue_10.available():
        pytest.skip(f"needs git history with commit {pre_issue_10.COMMIT} (a shallow clone lacks it)")
    studies = [SYNTHETIC] + ([FASHION] if HAS_FASHION else [])
    return pre_issue_10.reference(studies, tmp_path_factory.mktemp("pre_issue_10"))


def _golden(trial: spec.Trial, reference: dict[str, dict]) -> None:
    out = run_trial(trial)
    assert out.ok, out.row["error"]
    want = reference[f"{trial.dataset['name']}/{trial.model.name}"]
    assert pre_issue_10.summary(out.row, out.curve) == want  # to the bit


def test_cpu_results_are_the_pre_issue_10_numbers_to_the_bit(tmp_path: Path, reference: dict[str, dict]) -> None:
    for trial in _trials(tmp_path, SYNTHETIC):  # flip_shift augmentation, label smoothing, 3 curve points
        _golden(trial, reference)


@pytest.mark.skipif(not HAS_FASHION, reason="Fashion-MNIST not installed")
def test_cpu_fashion_mnist_results_are_the_pre_issue_10_numbers_to_the_bit(tmp_path: Path, reference: dict[str, dict]) -> None:
    for trial in _trials(tmp_path, FASHION):
        _golden(trial, reference)


def test_the_cuda_code_path_run_on_cpu_gives_the_same_numbers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reference: dict[str, dict]
) -> None:
    """CUDA's loop logic without a GPU: losses read back every 50 steps (flushed at every curve
    point) and batches drawn through the device-side sampler (`next_on`): still the golden numbers."""
    monkeypatch.setattr(train_mod, "check_every", lambda device: 50)
    monkeypatch.setattr(data, "is_resident", lambda split: True)
    draws = []
    next_on = data.EpochSampler.next_on
    monkeypatch.setattr(data.EpochSampler, "next_on", lambda self, device: draws.append(1) or next_on(self, device))
    for trial in _trials(tmp_path, SYNTHETIC)[:2]:
        _golden(trial, reference)
    assert len(draws) == 2 * 12


def _tiny(tmp_path: Path, model: str = "vit@xs", steps: int = 12, train: str = "", gpus: int = 0) -> spec.Trial:
    text = SYNTHETIC.replace("[resnet@xs, vit@xs, mixer@xs, convnext@xs]", f"[{model}]").replace("steps: 12", f"steps: {steps}")
    if "eval_every:" in train:  # the extra replaces the base's eval_every (a duplicate YAML key is refused)
        text = text.replace("eval_every: 4, ", "")
    text = text.replace("label_smoothing: 0.1", f"label_smoothing: 0.1{train}") + f"resources: {{cpus: 1, gpus: {gpus}}}\n"
    return _trials(tmp_path, text)[0]


def _train(trial: spec.Trial, device: str = "cpu", model: torch.nn.Module | None = None, **kw: object) -> train_mod.TrainResult:
    torch.manual_seed(0)
    model = model if model is not None else zoo.build(trial.model, image_size=16, in_chans=1, num_classes=4)
    return train_mod.train(
        model,
        data.load(trial.dataset),
        image_size=16,
        data_size=trial.data_size,
        seed=0,
        cfg=trial.train,
        device=torch.device(device),
        **kw,
    )


def test_reading_the_loss_every_step_changes_nothing(tmp_path: Path) -> None:
    trial = _tiny(tmp_path)
    a, b = _train(trial), _train(trial, sync_every_step=True)
    strip = lambda r: [{k: v for k, v in p.items() if k != "elapsed_s"} for p in r.curve]  # noqa: E731
    assert strip(a) == strip(b) and (a.test_acc, a.train_loss) == (b.test_acc, b.train_loss)


class NanAfter(torch.nn.Module):
    """The wrapped model, whose training outputs turn NaN after `after` calls (a diverging run, on cue)."""

    def __init__(self, inner: torch.nn.Module, after: int) -> None:
        super().__init__()
        self.inner, self.after, self.calls = inner, after, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.inner(x)
        if self.training:
            self.calls += 1
            if self.calls > self.after:
                out = out * float("nan")
        return out


def test_cpu_nan_fails_at_its_exact_step(tmp_path: Path) -> None:
    trial = _tiny(tmp_path)
    model = NanAfter(zoo.build(trial.model, image_size=16, in_chans=1, num_classes=4), after=5)
    with pytest.raises(train_mod.NonFiniteLoss, match=r"^loss became nan at step 5 \(lr [0-9.e-]+\)$"):
        _train(trial, model=model)


def test_losses_read_back_in_windows_name_the_step_and_the_window() -> None:
    values: list[float] = []
    record = train_mod._Losses(values, lambda s: 1e-3, every=50)
    for step in range(120):
        if step == 70:
            with pytest.raises(train_mod.NonFiniteLoss, match=r"loss became nan at step 70 .*between steps 50 and 100"):
                for s in range(70, 100):
                    record.add(torch.tensor(float("nan") if s >= 70 else 1.0))
            break
        record.add(torch.tensor(float(step)))
    assert values == [float(s) for s in range(50)]  # the first window was read and kept


def test_compile_time_is_its_own_column_never_in_train_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a stand-in compiler whose first call 'takes' 100 s of a fake clock that otherwise stands
    still: compile_s gets exactly those 100 s and train_time_s none of them."""
    clock = [0.0]

    class SlowFirstCall(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner, self.called = inner, False

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if not self.called:
                self.called, clock[0] = True, clock[0] + 100.0
            return self.inner(x)

    monkeypatch.setattr(train_mod, "time", types.SimpleNamespace(perf_counter=lambda: clock[0]))
    monkeypatch.setattr(torch, "compile", SlowFirstCall)
    trial = _tiny(tmp_path, train=", compile: true")
    assert trial.train["compile"] is True
    res = _train(trial)
    assert (res.compile_s, res.train_time_s) == (100.0, 0.0)
    assert math.isnan(_train(_tiny(tmp_path)).compile_s)  # no compile: NaN


def test_compile_key_is_checked_and_its_default_keeps_trial_ids(tmp_path: Path) -> None:
    base = _tiny(tmp_path)
    assert "compile" not in base.train  # the default stays out of the hashed config
    assert _tiny(tmp_path, train=", compile: false").trial_id == base.trial_id
    assert _tiny(tmp_path, train=", compile: true").trial_id != base.trial_id
    with pytest.raises(spec.StudyError, match="train.compile"):
        _tiny(tmp_path, train=", compile: yes please")


def test_sampler_indices_on_a_device_are_the_host_indices() -> None:
    a, b = data.EpochSampler(10, 4, seed=3), data.EpochSampler(10, 4, seed=3)
    for _ in range(7):  # across passes (a new permutation every 2 batches)
        assert torch.equal(a.next(), b.next_on(torch.device("cpu")))
    twin = b.copy()
    assert torch.equal(twin.next_on(torch.device("cpu")), b.next_on(torch.device("cpu")))


# ----------------------------------------------------------------------------- CUDA (-m gpu)


@pytest.mark.gpu
@needs_cuda
def test_cuda_batches_are_gathered_resized_and_augmented_on_the_device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen, uploads = [], []
    call, pin = data.Batcher.__call__, torch.Tensor.pin_memory

    def spy(
        self: data.Batcher, images: torch.Tensor, train: bool = False, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        if train:
            seen.append((images.device.type, generator.device.type))
        return call(self, images, train, generator)

    def counted_pin(self: torch.Tensor, *a: object, **kw: object) -> torch.Tensor:
        uploads.append(self.numel())
        return pin(self, *a, **kw)

    monkeypatch.setattr(data.Batcher, "__call__", spy)
    monkeypatch.setattr(torch.Tensor, "pin_memory", counted_pin)
    res = _train(_tiny(tmp_path), "cuda")  # 96 images, batch 16: 6 steps a pass, 12 steps
    assert seen == [("cuda", "cuda")] * 12
    assert uploads == [96, 96]  # the permutation, once per pass; nothing per step
    assert res.samples_seen == 12 * 16 and 0 <= res.test_acc <= 1


def _syncs(trial: spec.Trial, monkeypatch: pytest.MonkeyPatch) -> tuple[int, int]:
    """(CUDA syncs flagged by torch's sync debug mode, torch.cuda.synchronize calls) in one run."""
    calls = []
    real = torch.cuda.synchronize
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: (calls.append(1), real(*a))[1])
    _train(trial, "cuda")  # warm: CUDA context, kernels, allocator
    calls.clear()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _train(trial, "cuda")
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught), len(calls)


@pytest.mark.gpu
@needs_cuda
def test_cuda_training_steps_do_not_synchronise_the_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """100 more steps add 2 loss read-backs (every 50 steps), not 100: syncs do not grow per step."""
    no_curve = ", eval_every: 1000"
    short, long = (_syncs(_tiny(tmp_path, steps=n, train=no_curve), monkeypatch) for n in (60, 160))
    assert train_mod.CHECK_EVERY == 50
    assert long[0] - short[0] <= 8, (short, long)  # per-step syncs would add >= 100
    assert long[1] == short[1], (short, long)  # explicit synchronize: only where the clock is read


@pytest.mark.gpu
@needs_cuda
def test_cuda_nan_is_caught_with_its_step_window(tmp_path: Path) -> None:
    trial = _tiny(tmp_path, steps=120, train=", eval_every: 1000")
    model = NanAfter(zoo.build(trial.model, image_size=16, in_chans=1, num_classes=4), after=70)
    with pytest.raises(train_mod.NonFiniteLoss, match=r"loss became nan at step 70 .*between steps 50 and 100"):
        _train(trial, "cuda", model=model)


@pytest.mark.gpu
@needs_cuda
def test_cuda_trial_row_with_compile_column(tmp_path: Path) -> None:
    out = run_trial(_tiny(tmp_path, model="mlp@xs", steps=8, train=", compile: true", gpus=1))
    assert out.ok, out.row["error"]
    r = out.row
    assert r["dtype"] == "bf16-autocast" and r["device"] != "cpu"
    assert math.isfinite(r["compile_s"]) and r["compile_s"] > 0 and math.isfinite(r["train_time_s"])
    assert 0 <= r["test_acc"] <= 1 and r["samples_seen"] == 8 * 16


@pytest.mark.gpu
@needs_cuda
def test_cuda_trial_is_profiled_with_mfu(tmp_path: Path) -> None:
    trial = _trials(
        tmp_path,
        SYNTHETIC.replace("[resnet@xs, vit@xs, mixer@xs, convnext@xs]", "[resnet@xs]")
        .replace("profile: {enabled: false}", "profile: {batch_size: 32, warmup: 2, iters: 3}")
        .replace("steps: 12", "steps: 6")
        + "resources: {cpus: 1, gpus: 1}\n",
    )[0]
    out = run_trial(trial)
    assert out.ok, out.row["error"]
    assert out.row["train_img_s"] > 0 and out.row["peak_mem_kind"] == "cuda_max_allocated"
    assert math.isfinite(out.row["mfu"]) or out.row["mfu_reason"]  # a peak for the device, or why there is none
    assert math.isnan(out.row["compile_s"])


class Preempted(BaseException):
    pass


def _interrupt_and_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, device: str) -> tuple:
    trial = _tiny(tmp_path, model="mlp@xs", steps=9, train=", eval_every: 2")
    reference = _train(trial, device)
    ckpt, calls, original = tmp_path / "ck" / "t.pt", {"n": 0}, train_mod.EpochSampler.next

    def preempt_at_step_6(self: train_mod.EpochSampler) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] == 6:
            raise Preempted
        return original(self)

    monkeypatch.setattr(train_mod.EpochSampler, "next", preempt_at_step_6)
    with pytest.raises(Preempted):
        _train(trial, device, checkpoint_path=ckpt, checkpoint_every=2)
    monkeypatch.setattr(train_mod.EpochSampler, "next", original)
    torch.manual_seed(123)  # whatever the global RNG now holds, the checkpoint restores it
    resumed = _train(trial, device, checkpoint_path=ckpt, checkpoint_every=2)
    assert (resumed.resumes, resumed.resumed_from_step, resumed.samples_seen) == (1, 4, reference.samples_seen)
    return reference, resumed


def test_resume_with_losses_read_back_in_windows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkpoint holds every loss so far even when they are read back every 50 steps (CUDA's cadence)."""
    monkeypatch.setattr(train_mod, "check_every", lambda device: 50)
    reference, resumed = _interrupt_and_resume(tmp_path, monkeypatch, "cpu")
    strip = lambda r: [{k: v for k, v in p.items() if k != "elapsed_s"} for p in r.curve]  # noqa: E731
    assert strip(resumed) == strip(reference) and resumed.train_loss == reference.train_loss


@pytest.mark.gpu
@needs_cuda
def test_cuda_resume_from_checkpoint_continues_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The device-side augmentation generator and the uploaded permutation are restored too."""
    reference, resumed = _interrupt_and_resume(tmp_path, monkeypatch, "cuda")
    for p, q in zip(resumed.curve, reference.curve, strict=True):  # GPU kernels: equal up to rounding
        assert p["step"] == q["step"] and p["train_loss"] == pytest.approx(q["train_loss"], rel=1e-3, abs=1e-4)


def test_fused_adamw_is_asked_for_only_when_wanted() -> None:
    """The trainer asks for the single-kernel AdamW on CUDA (launch-bound small models); the kwarg must
    reach torch through timm's optimizer factory, and SGD never gets it."""
    model = torch.nn.Linear(4, 2)
    cfg = dict(spec.TRAIN_DEFAULTS)
    assert not train_mod.make_optimizer(model, cfg).defaults.get("fused")
    assert train_mod.make_optimizer(model, cfg, fused=True).defaults["fused"] is True  # torch has a CPU fused AdamW too
    assert not train_mod.make_optimizer(model, dict(cfg, optimizer="sgd"), fused=True).defaults.get("fused")


@needs_cuda
def test_cuda_trials_train_with_fused_adamw(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    real = train_mod.make_optimizer
    monkeypatch.setattr(train_mod, "make_optimizer", lambda *a, **k: seen.append(k.get("fused")) or real(*a, **k))
    ds = data.load({"name": "synthetic", "num_classes": 4, "channels": 1, "image_size": 16, "train_size": 64, "test_size": 16})
    model = zoo.build(zoo.resolve("resnet@xs"), image_size=16, in_chans=1, num_classes=4)
    cfg = dict(spec.TRAIN_DEFAULTS, steps=2, batch_size=16, warmup_steps=1)
    train_mod.train(model, ds, image_size=16, data_size=64, seed=0, cfg=cfg, device=torch.device("cuda"))
    assert seen == [True]
