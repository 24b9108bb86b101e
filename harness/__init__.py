"""harness: architecture scaling studies in computer vision (see DESIGN in the docs).

The Python API (harness/api.py), exported lazily so `import harness` stays cheap (no torch, no
pandas until a function runs):

    import harness
    res = harness.run("studies/quickstart.yaml", overrides=["train.steps=20"], backend="local")
    res = harness.load("results/quickstart")   # .trials, .curves, .table(), .fit(), .plot(), .report()
    harness.fit(res, y="test_acc", x="data_size", by="family")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harness.version import __version__

if TYPE_CHECKING:
    from harness.api import Results, fit, load, run

__all__ = ["Results", "__version__", "fit", "load", "run"]
_API = frozenset({"Results", "fit", "load", "run"})


def __getattr__(name: str) -> Any:
    if name in _API:
        from harness import api

        return getattr(api, name)
    raise AttributeError(f"module 'harness' has no attribute {name!r}")
