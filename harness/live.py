"""Live curve points: the trainer's learning-curve points as they are evaluated, to whoever listens.

The runner listens (`listening`) while a study with a `tracking:` section runs: a trial that trains
in the driver's process (the local backend) hands each point straight to its tracker. Worker
processes (SLURM jobs, Ray workers, data-parallel ranks) inherit `HARNESS_TRACKING` (the study's
tracking section as JSON) and log their own points (`harness.trial` builds that listener). Either
way the driver logs the finished trial as before, which replaces the live run: the final export
stays the stored row and curve. Listening never fails a trial: a listener's error is its own to report.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator

ENV = "HARNESS_TRACKING"
Listener = Callable[[dict, list], None]  # (the trial's row so far, its curve so far)

_listeners: list[Listener] = []


@contextlib.contextmanager
def listening(listener: Listener, tracking: dict) -> Iterator[None]:
    """`listener` gets every point emitted in this process; worker processes started meanwhile get `tracking`."""
    before = os.environ.get(ENV)
    os.environ[ENV] = json.dumps(tracking, sort_keys=True)
    _listeners.append(listener)
    try:
        yield
    finally:
        _listeners.remove(listener)
        if before is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = before


def listeners() -> list[Listener]:
    return list(_listeners)


def inherited() -> dict:
    """The tracking section a worker process inherited ({} without one, or when it is unreadable)."""
    try:
        tracking = json.loads(os.environ.get(ENV) or "{}")
    except ValueError:
        return {}
    return tracking if isinstance(tracking, dict) else {}


class Curve(list):
    """A learning curve that tells `on_point` about each point appended. Pickles as a plain list
    (a checkpoint carries the curve, never the callback)."""

    def __init__(self, points: list, on_point: Callable[[dict], None]) -> None:
        super().__init__(points)
        self.on_point = on_point

    def append(self, point: dict) -> None:
        super().append(point)
        self.on_point(point)

    def __reduce__(self) -> tuple:
        return (list, (list(self),))
