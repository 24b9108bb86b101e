"""The package version, in a leaf module: code inside harness imports it from here, never from the
package top level (which is the Python API's face and imports the layers below it)."""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

__version__ = "0.1.0"


@functools.lru_cache(maxsize=1)
def git_sha() -> str:
    """sha of the harness checkout (+ '-dirty' when it has local changes); HARNESS_GIT_SHA wins."""
    if os.environ.get("HARNESS_GIT_SHA"):
        return os.environ["HARNESS_GIT_SHA"]
    repo = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if sha.returncode != 0:
            return "unknown"
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
        return sha.stdout.strip()[:12] + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def version_line() -> str:
    """`harness --version`: the package version and the checkout's sha (as every row records it)."""
    return f"harness {__version__} (git {git_sha()})"
