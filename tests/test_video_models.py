"""Video (issue 17): the frames axis, the video families (R3D, R(2+1)D, ViViT joint / factorised),
their counted FLOPs against torchvision's published numbers, the clip batch path and video rows."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pandas as pd
import pytest
import torch
import torchvision.models.video as tvv
from torch.utils.flop_counter import FlopCounterMode

from harness import data, flops, flops_train, spec, zoo
from harness.cli import main
from harness.errors import StudyError

VIDEO = [f for f in zoo.families() if zoo.is_video(f)]
SMALL = ["xs", "s", "m", "l"]
aten = torch.ops.aten

# torchvision's own record of its Kinetics-400 models (the numbers its model table prints):
# parameters, and "GFLOPS" at 16 x 112 x 112, which are MACs (our count, fvcore's convention).
TORCHVISION = {
    "r3d@18": (tvv.r3d_18, tvv.R3D_18_Weights.KINETICS400_V1),
    "r2plus1d@18": (tvv.r2plus1d_18, tvv.R2Plus1D_18_Weights.KINETICS400_V1),
}


def test_video_families_are_registered_with_a_ladder_and_published_sizes() -> None:
    assert VIDEO == ["r3d", "r2plus1d", "vivit", "vivit_fact"]
    for f in VIDEO:
        assert zoo.sizes(f)[:4] == SMALL
        assert zoo.default_image_size(zoo.resolve(f"{f}@xs")) == 32  # the ladder's clips
    assert zoo.default_image_size(zoo.resolve("r3d@18")) == 112 and zoo.default_image_size(zoo.resolve("vivit@b")) == 224
    assert zoo.resolve("vivit@xs").shape["attention"] == "joint"
    fact = zoo.resolve({"family": "vivit", "size": "xs", "attention": "factorised"})
    assert fact.name == "vivit@xs{attention=factorised}" and fact.shape == zoo.resolve("vivit_fact@xs").shape


@pytest.mark.parametrize("family", VIDEO)
def test_every_video_size_runs_on_meta_at_several_clip_lengths(family: str) -> None:
    for size in zoo.sizes(family):
        ms = zoo.resolve(f"{family}@{size}")
        px = zoo.default_image_size(ms)
        for t in (2, 8) if not ms.canonical else (16,):
            with torch.device("meta"):
                model = zoo.build(ms, image_size=px, in_chans=3, num_classes=7, frames=t)
                x = torch.empty(2, 3, t, px, px)
                assert model(x).shape == (2, 7)
                pooled = model.forward_head(model.forward_features(x), pre_logits=True)  # timm's feature API (probes)
            assert pooled.shape == (2, model.num_features) and model.num_classes == 7


@pytest.mark.parametrize("family", VIDEO)
def test_xs_trains_a_step_on_cpu(family: str) -> None:
    torch.manual_seed(0)
    model = zoo.build(zoo.resolve(f"{family}@xs"), image_size=32, in_chans=1, num_classes=5, frames=4)
    x, y = torch.randn(2, 1, 4, 32, 32), torch.tensor([0, 3])
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    assert math.isfinite(loss.item())
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_canonical_video_resnets_match_torchvision(name: str) -> None:
    builder, weights = TORCHVISION[name]
    ms = zoo.resolve(name)
    assert ms.canonical
    with torch.device("meta"):
        theirs = builder(num_classes=400)
    dims = {"image_size": 112, "in_chans": 3, "num_classes": 400, "frames": 16}
    params = flops.param_count(ms, **dims)
    assert params == flops.count_params(theirs) == weights.meta["num_params"]  # to the unit
    # torchvision's "GFLOPS" (40.697 / 40.519) are MACs at 16x112x112; we count convs + linears only
    assert flops.forward_gmacs(ms, **dims) == pytest.approx(weights.meta["_ops"], rel=1e-3)


def _attention_macs(ms: zoo.ModelSpec, frames: int, image_size: int = 32, batch: int = 1) -> int:
    """MACs of the attention matmuls alone (q@k^T and attn@v are bmm; linears are addmm/mm)."""
    with torch.device("meta"):
        model = flops.unfuse_attention(zoo.build(ms, image_size=image_size, in_chans=1, num_classes=10, frames=frames))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.empty(batch, 1, frames, image_size, image_size, device="meta"))
    return counter.get_flop_counts()["Global"].get(aten.bmm, 0) // 2


def test_joint_attention_is_quadratic_in_frames_and_factorised_linear_plus_its_temporal_term() -> None:
    joint, fact = zoo.resolve("vivit@xs"), zoo.resolve("vivit_fact@xs")
    d, depth, n = 64, 4, (32 // 4) ** 2  # width, blocks, tokens per frame at 32 px, patch 4
    for t in (4, 8, 16, 32):
        tt = t // 2  # 2-frame tubelets
        assert _attention_macs(joint, t) == depth * 2 * (tt * n) ** 2 * d  # q@k^T + attn@v over T'·N tokens
        assert _attention_macs(fact, t) == depth * 2 * d * (tt * n * n + n * tt * tt)  # spatial + temporal
    # doubling the clip: joint x4 exactly; factorised x2 in its spatial term, so x(2 + small)
    assert _attention_macs(joint, 32) == 4 * _attention_macs(joint, 16)
    growth = _attention_macs(fact, 32) / _attention_macs(fact, 16)  # N·T'·(N + T'): T' = 8 -> 16, N = 64
    assert growth == pytest.approx(2 * (n + 16) / (n + 8)) and growth < 2.25
    # the whole forward pass: joint super-linear, the others about linear (4 -> 32 frames = 8x)
    dims = {"image_size": 32, "in_chans": 1, "num_classes": 10}
    ratio = {
        f: flops.forward_gmacs(zoo.resolve(f"{f}@xs"), frames=32, **dims)
        / flops.forward_gmacs(zoo.resolve(f"{f}@xs"), frames=4, **dims)
        for f in VIDEO
    }
    assert ratio["vivit"] > 20 and all(7 < ratio[f] < 8.5 for f in ("r3d", "r2plus1d", "vivit_fact"))


@pytest.mark.parametrize("family", VIDEO)
def test_agrees_with_fvcore_on_cpu(family: str) -> None:
    # fvcore traces a real CPU forward; its conv handle takes 3-D kernels, and attention is unfused here
    fvcore = pytest.importorskip("fvcore.nn")
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    ms = zoo.resolve(f"{family}@xs")
    model = flops.unfuse_attention(zoo.build(ms, image_size=32, in_chans=1, num_classes=10, frames=8)).eval()
    analysis = fvcore.FlopCountAnalysis(model, torch.randn(1, 1, 8, 32, 32))
    by_op = analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).by_operator()
    theirs = sum(v for op, v in by_op.items() if op in ("conv", "linear", "matmul", "bmm", "addmm", "einsum"))
    assert flops.forward_gmacs(ms, image_size=32, in_chans=1, num_classes=10, frames=8) * 1e9 == theirs  # exact


def test_training_count_includes_conv3d_and_attention_backward() -> None:
    dims = {"image_size": 32, "in_chans": 1, "num_classes": 10, "frames": 8}
    for f in VIDEO:
        ms = zoo.resolve(f"{f}@xs")
        ratio = flops_train.train_gmacs(ms, **dims) / flops.forward_gmacs(ms, **dims)
        assert 2.8 < ratio <= 3.0, (f, ratio)  # backward = 2x forward, minus the stem's grad_input


def test_frames_checks() -> None:
    vivit, vit = zoo.resolve("vivit@xs"), zoo.resolve("vit@xs")
    with pytest.raises(StudyError, match="not a multiple of the tubelet length 2.*use frames 6 or 8"):
        zoo.build(vivit, image_size=32, in_chans=1, num_classes=10, frames=7)
    with pytest.raises(StudyError, match="needs frames >= 1"):
        zoo.build(vivit, image_size=32, in_chans=1, num_classes=10)
    with pytest.raises(StudyError, match="is an image model"):
        zoo.build(vit, image_size=32, in_chans=1, num_classes=10, frames=4)


VIDEO_STUDY = """
name: {name}
dataset: {dataset}
grid:
  model: {models}
  data_size: [20]
  image_size: [16]
{axes}
train: {{steps: 2, batch_size: 10, warmup_steps: 1, augment: flip_shift}}
profile: {{enabled: {profile}, batch_size: 2, warmup: 1, iters: 1}}
"""
SYNTH_VIDEO = "{name: synthetic, frames: 8, num_classes: 2, channels: 1, image_size: 16, train_size: 40, test_size: 10}"
SYNTH_IMAGE = "{name: synthetic, num_classes: 2, channels: 1, image_size: 16, train_size: 40, test_size: 10}"


def _study(
    tmp_path: Path,
    models: str = "[vivit@xs]",
    axes: str = "",
    dataset: str = SYNTH_VIDEO,
    profile: str = "false",
    name: str = "vid",
) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(VIDEO_STUDY.format(name=name, models=models, axes=axes, dataset=dataset, profile=profile))
    return path


@pytest.mark.parametrize(
    "models, axes, dataset, message",
    [
        ("[vit@xs]", "  frames: [4]", SYNTH_IMAGE, "grid.frames: frames is an axis of video datasets; synthetic holds images"),
        ("[vit@xs]", "  frame_stride: [2]", SYNTH_IMAGE, "grid.frame_stride: frame_stride is an axis of video datasets"),
        ("[vit@xs, r3d@xs]", "", SYNTH_IMAGE, "grid.model[1]: r3d@xs is a video model; synthetic holds images"),
        (
            "[r3d@xs]",
            "  frames: [4, 8]\n  frame_stride: [2]",
            SYNTH_VIDEO,
            "grid.frames[1] x grid.frame_stride[0]: 8 frames at stride 2 need clips of 15",
        ),
        ("[r3d@xs]", "  frames: [0]", SYNTH_VIDEO, "grid.frames[0]"),
        ("[r3d@xs]", "  frame_stride: [1.5]", SYNTH_VIDEO, "grid.frame_stride[0]"),
        ("[r3d@xs, vivit@xs]", "  frames: [4, 5]", SYNTH_VIDEO, "grid.model[1] x grid.frames[1]: vivit@xs cannot take 5 frames"),
        ("[vit@xs]", "", SYNTH_VIDEO, "grid.model[0] x grid.frames[0]: vit@xs cannot take 8 frames: vit@xs is an image model"),
    ],
)
def test_frames_axis_validation(tmp_path: Path, models: str, axes: str, dataset: str, message: str) -> None:
    with pytest.raises(StudyError, match=message.replace("[", r"\[").replace("]", r"\]")):
        spec.load_study(_study(tmp_path, models, axes, dataset))


def test_frames_axes_expand_and_hash_only_for_video(tmp_path: Path) -> None:
    study = spec.load_study(_study(tmp_path, "[r3d@xs]", "  frames: [2, 4]\n  frame_stride: [1, 2]"))
    trials = spec.expand(study)
    assert [(t.frames, t.frame_stride) for t in trials] == [(2, 1), (2, 2), (4, 1), (4, 2)]
    assert len({t.trial_id for t in trials}) == 4 and trials[0].config()["frames"] == 2
    default = spec.expand(spec.load_study(_study(tmp_path, "[r3d@xs]", name="d")))
    assert [(t.frames, t.frame_stride) for t in default] == [(8, 1)]  # the dataset's native clip length
    # a clip spans (T - 1) * s + 1 native frames: 3 frames at stride 3 are frames 0, 3, 6 of an 8-frame clip
    widest = spec.expand(spec.load_study(_study(tmp_path, "[r3d@xs]", "  frames: [3]\n  frame_stride: [3]", name="w")))
    assert [(t.frames, t.frame_stride) for t in widest] == [(3, 3)]
    image = spec.expand(spec.load_study(_study(tmp_path, "[vit@xs]", dataset=SYNTH_IMAGE, name="i")))[0]
    assert image.frames is None and "frames" not in image.config() and "frames" not in image.dataset


def test_image_study_ids_did_not_change() -> None:
    # recorded with the harness before issue 17 (commit 3d6b25b)
    study = spec.load_study(Path(__file__).resolve().parent.parent / "studies" / "attention_cost_small.yaml")
    assert study.study_hash == "f19ba633b891"
    assert [t.trial_id for t in spec.expand(study)][:3] == ["be5cfb202e43", "1ca4b0a1bf87", "442f7ba60c33"]


def test_synthetic_clips_and_the_batcher() -> None:
    cfg = {"name": "synthetic", "frames": 6, "num_classes": 3, "channels": 1, "image_size": 8, "train_size": 12, "test_size": 6}
    ds = data.load(cfg)
    assert ds.info.frames == 6 and ds.info.config["frames"] == 6 and ds.train.images.shape == (12, 6, 1, 8, 8)
    assert "frames" not in data.describe({k: v for k, v in cfg.items() if k != "frames"}).config  # image ids unchanged
    clips = torch.arange(6, dtype=torch.uint8).view(1, 6, 1, 1, 1).expand(2, 6, 1, 8, 8).contiguous() * 40
    b = data.Batcher(ds, 16, torch.device("cpu"), "flip_shift", frames=3, frame_stride=2)
    x = b(clips)
    assert x.shape == (2, 1, 3, 16, 16)
    frame_value = x[0, 0, :, 8, 8] * ds.std[0] + ds.mean[0]  # frames 0, 2, 4 of the clip
    assert torch.allclose(frame_value, torch.tensor([0.0, 80.0, 160.0]) / 255, atol=1e-5)
    # augmentation: one flip/shift per clip, the same on each of its frames
    ramp = torch.arange(8, dtype=torch.uint8).view(1, 1, 1, 1, 8).expand(64, 6, 1, 8, 8).contiguous() * 30
    y = b(ramp, train=True, generator=torch.Generator().manual_seed(0))
    assert torch.equal(y[:, :, 0], y[:, :, 1]) and torch.equal(y[:, :, 0], y[:, :, 2])
    assert not all(torch.equal(y[0], y[i]) for i in range(64))  # clips differ from each other
    with pytest.raises(ValueError, match="need clips of 13 frames"):
        data.Batcher(ds, 8, torch.device("cpu"), frames=7, frame_stride=2)(clips)


def test_video_trial_rows_say_frames_and_clips(tmp_path: Path) -> None:
    path = _study(tmp_path, "[vivit@xs]", "  frames: [4]\n  frame_stride: [2]", profile="true", name="rows")
    assert main(["run", str(path), "--backend", "local", "--results", str(tmp_path), "--no-report"]) == 0
    row = pd.read_parquet(next((tmp_path / "rows" / "trials").glob("*.parquet"))).iloc[0]
    assert row["status"] == "ok" and row["frames"] == 4 and row["frame_stride"] == 2 and row["sample_unit"] == "clip"
    dims = {"image_size": 16, "in_chans": 1, "num_classes": 2, "frames": 4}
    assert row["fwd_gmacs"] == pytest.approx(flops.forward_gmacs(zoo.resolve("vivit@xs"), **dims))
    assert row["train_img_s"] > 0 and math.isfinite(row["test_acc"])


def test_models_lists_video_families_at_a_clip_length(capsys: pytest.CaptureFixture) -> None:
    assert main(["models", "--frames", "8", "--image-size", "32", "--json", "--in-chans", "1", "--num-classes", "10"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["family"] for r in rows} == set(VIDEO) and all(r["frames"] == 8 for r in rows)
    xs = {r["name"]: r for r in rows if r["size"] == "xs"}
    assert xs["vivit@xs"]["fwd_gmacs"] == pytest.approx(
        flops.forward_gmacs(zoo.resolve("vivit@xs"), image_size=32, in_chans=1, num_classes=10, frames=8), abs=1e-6
    )
    assert main(["models", "--family", "vit", "--frames", "8"]) == 2
    assert "vit is an image family" in capsys.readouterr().err
    assert main(["models", "--family", "vivit", "--frames", "7"]) == 2


def test_cost_plot_against_frames(tmp_path: Path) -> None:
    from harness.analysis.plots import make_plot

    rows = [
        {
            "status": "ok",
            "family": f,
            "model": f"{f}@xs",
            "params": 1,
            "frames": t,
            "image_size": 32,
            "fwd_gmacs": g * t,
            "infer_img_s": 100 / t,
        }
        for f, g in (("r3d", 0.01), ("vivit", 0.02))
        for t in (4, 8, 16)
    ]
    out = make_plot(pd.DataFrame(rows), pd.DataFrame(), "cost", tmp_path, x="frames")
    assert [p.name for p in out.paths] == ["cost_vs_frames.png", "cost_vs_frames.svg"]
    with pytest.raises(StudyError, match="cost cannot plot against 'data_size'"):
        make_plot(pd.DataFrame(rows), pd.DataFrame(), "cost", tmp_path, x="data_size")


def test_a_zip_group_pairs_models_with_their_clip_lengths(tmp_path: Path) -> None:
    # vivit cannot take 3 frames, r3d can: paired, no cell asks vivit for 3
    axes = "  zip: [{model: [r3d@xs, vivit@xs], frames: [3, 4]}]"
    path = tmp_path / "zip.yaml"
    path.write_text(
        VIDEO_STUDY.format(name="zip", models="[r3d@xs]", axes=axes, dataset=SYNTH_VIDEO, profile="false").replace(
            "  model: [r3d@xs]\n", ""
        )
    )
    trials = spec.expand(spec.load_study(path))
    assert [(t.model.name, t.frames) for t in trials] == [("r3d@xs", 3), ("vivit@xs", 4)]


def test_profile_cli_counts_clips(capsys: pytest.CaptureFixture) -> None:
    args = ["profile", "r3d@xs", "--frames", "4", "--image-size", "16", "--in-chans", "1", "--num-classes", "2"]
    fast = [
        "--batch-size",
        "2",
        "--warmup",
        "1",
        "--iters",
        "2",
        "--blocks",
        "1",
        "--max-rounds",
        "1",
        "--no-latency",
        "--mode",
        "infer",
    ]
    assert main([*args, *fast, "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["sample_unit"] == "clip" and rec["frames"] == 4 and rec["infer_img_s"] > 0
    assert rec["fwd_gmacs"] == pytest.approx(
        flops.forward_gmacs(zoo.resolve("r3d@xs"), image_size=16, in_chans=1, num_classes=2, frames=4)
    )
    assert main([*args, "--channels-last"]) == 2 and "--channels-last" in capsys.readouterr().err
    assert main(["profile", "vit@xs", "--frames", "4"]) == 2 and "image model" in capsys.readouterr().err


def test_tables_of_clip_rows_say_clips_per_second() -> None:
    import pandas as pd

    from harness.analysis.tables import build_table

    def row(unit: str, model: str) -> dict:
        return {"study": "v", "trial_id": model, "status": "ok", "error": "", "family": model.split("@")[0], "model": model,
                "data_size": 100, "image_size": 32, "seed": 0, "test_acc": 0.5, "params": 1000, "fwd_gmacs": 0.01,
                "infer_img_s": 50.0, "sample_unit": unit}  # fmt: skip

    clips = build_table(pd.DataFrame([row("clip", "r3d@xs")]))
    assert "infer clips/s" in clips.columns and "infer img/s" not in clips.columns
    images = build_table(pd.DataFrame([row("img", "resnet@xs")]))
    assert "infer img/s" in images.columns


def test_a_table_across_frames_keeps_data_sizes_apart() -> None:
    import pandas as pd

    from harness.analysis.tables import build_table

    rows = [
        {"study": "v", "trial_id": f"{n}-{t}", "status": "ok", "error": "", "family": "r3d", "model": "r3d@xs",
         "data_size": n, "image_size": 32, "frames": t, "seed": 0, "test_acc": acc, "sample_unit": "clip"}
        for n, t, acc in ((100, 1, 0.1), (100, 8, 0.3), (1000, 1, 0.2), (1000, 8, 0.9))
    ]  # fmt: skip
    t = build_table(pd.DataFrame(rows), cols="frames")
    assert "data_size" in t.columns and len(t.rows) == 2  # one row per data size, never averaged as seeds
    assert [r[-1] for r in t.rows] == ["30.0", "90.0"]
