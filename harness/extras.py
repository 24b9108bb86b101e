"""Optional packages: `require("mlflow", "mlflow")` imports one or says which extra installs it.

The trackers, SQL and streaming datasets lean on packages most users of the harness never need
(mlflow, tensorboard, duckdb, webdataset, datasets, av). pyproject.toml lists each as an extra
(`pip install 'harness[mlflow]'`, `[all]` for every one); a verb that needs a missing one calls
`require` where it runs, which raises the one-line `StudyError` (exit 2, nothing written).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from harness.errors import StudyError


def require(module: str, extra: str, *, key: str = "") -> ModuleType:
    """The imported `module`, or a StudyError naming the package and `pip install 'harness[extra]'`.
    `key`: where the need comes from (a flag such as --mlflow, or a study key), for the message."""
    try:
        return importlib.import_module(module)
    except ImportError as e:  # absent, blocked (sys.modules[name] = None) or broken (a dependency missing)
        package = module.split(".")[0]
        missing = getattr(e, "name", None)
        what = (
            f"the '{package}' package is not installed"
            if missing in (None, package, module)
            else f"the '{package}' package cannot be imported ({type(e).__name__}: {e})"
        )
        raise StudyError(what, key=key, fix=f"pip install 'harness[{extra}]' (or pip install 'harness[all]')") from None
