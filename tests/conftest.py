"""Shared fixtures: tiny synthetic studies written to a temporary directory."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # see ../shared/ci/NOTES.md (token auth trap)
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

TINY = """
name: {name}
dataset: {{name: synthetic, num_classes: 4, channels: 1, image_size: 16, train_size: 256, test_size: 64}}
grid:
  model: {models}
  data_size: {data_sizes}
  image_size: [16]
  seed: [0]
train: {{steps: {steps}, batch_size: 16, lr: {lr}, warmup_steps: 1, eval_every: 2}}
profile: {{batch_size: 4, warmup: 1, iters: 2}}
resources: {{cpus: 1, gpus: 0}}
"""


def write_study(
    directory: Path,
    name: str = "tiny",
    models: str = "[resnet@xs, vit@xs]",
    data_sizes: str = "[32, 64]",
    steps: int = 4,
    lr: str = "1.0e-3",
    extra: str = "",
) -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(TINY.format(name=name, models=models, data_sizes=data_sizes, steps=steps, lr=lr) + textwrap.dedent(extra))
    return path


@pytest.fixture(autouse=True, scope="session")
def one_thread() -> Iterator[None]:
    # Tiny models gain nothing from intra-op threads, and on a shared 2-core machine (Ray trials
    # alongside) OpenMP threads spin against each other: measured under load, a convnext@l step
    # took 2.7 s with 2 threads and 0.07 s with 1. (run_trial sets its own thread count anyway.)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_study(tmp_path: Path) -> Path:
    return write_study(tmp_path)


@pytest.fixture(scope="session")
def embedded_ray() -> Iterator[None]:
    """One embedded Ray for the tests that run the ray backend in this process, started the way the
    backend starts its own (ray_backend._init: trials at the driver's niceness, no dashboard). The
    backend finds it running and leaves it up, so the next test reuses it and its task workers, torch
    already imported: a tiny study took 20-30 s on a Ray of its own (start, cold workers, shutdown) and
    1 s on a warm one, on 2 busy cores."""
    pytest.importorskip("ray")
    import ray

    from harness.backends import ray_backend

    started = ray_backend._init(None)
    yield
    if started:
        ray.shutdown()


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests on the shared embedded Ray run last, one after another, so that its daemons (4% of a
    core while idle) never run beside the rest of the suite."""
    users = {id(i) for i in items if "embedded_ray" in getattr(i, "fixturenames", ())}
    items[:] = [i for i in items if id(i) not in users] + [i for i in items if id(i) in users]
