"""Rows of several backbones (supervised, SimCLR, untrained; issue 16) read by the analysis verbs:
labels name the objective, the report has a probe section."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from harness import spec
from harness.analysis import io as aio
from harness.analysis.io import mark_variants


def _row(model: str, seed: int, train: dict, test_acc: float, probe: float) -> dict:
    cfg = {"model": {"family": model.split("@")[0]}, "seed": seed, "train": {"lr": 2e-3, **train}}
    return {
        "study": "s",
        "trial_id": f"{model}-{seed}-{json.dumps(train)}",
        "status": "ok",
        "error": "",
        "family": model.split("@")[0],
        "model": model,
        "data_size": 1000,
        "image_size": 28,
        "seed": seed,
        "test_acc": test_acc,
        "probe_acc": probe,
        "fewshot_10_acc": probe - 0.1,
        "config_json": json.dumps(cfg),
    }


def _backbones() -> pd.DataFrame:
    rows = []
    for seed in (0, 1):
        rows.append(_row("resnet@xs", seed, {"steps": 200}, 0.8, 0.8))  # supervised: objective left out (its default)
        rows.append(
            _row("resnet@xs", seed, {"steps": 200, "objective": "simclr", "temperature": 0.2, "proj_dim": 128}, float("nan"), 0.7)
        )
        rows.append(_row("resnet@xs", seed, {"steps": 0}, float("nan"), 0.5))
    return pd.DataFrame(rows)


def test_left_out_keys_are_read_at_the_default_spec_leaves_out() -> None:
    for key, default in aio.LEFT_OUT.items():
        assert spec.UNHASHED_DEFAULTS[key.removeprefix("train.")] == default
    for key in aio.ONLY_WHERE_SET:
        assert spec.UNHASHED_DEFAULTS[key.removeprefix("train.")] is None


def test_backbones_are_labelled_by_objective_not_by_missing_keys() -> None:
    labels = set(mark_variants(_backbones())["variant"])
    assert labels == {
        "train.objective=supervised, train.steps=200",
        "train.objective=simclr, train.steps=200",
        "train.objective=supervised, train.steps=0",
    }


def test_report_has_a_probe_section_with_each_backbone(tmp_path: Path) -> None:
    from harness.analysis.report import build_report, to_md

    df = mark_variants(_backbones())
    md = to_md(build_report(df, pd.DataFrame(), tmp_path, bootstrap=10, source=str(tmp_path)))
    probes = md.split("## Probes of the frozen backbone")[1].split("\n## ")[0]
    assert "probe_acc" in probes and "fewshot_10_acc" in probes
    assert "train.objective=simclr, train.steps=200" in probes and "70.0 ± 0.0 (2)" in probes
