"""The stdout console of every verb (light: rich only, so `harness --help` stays fast)."""

from __future__ import annotations

import sys

from rich.console import Console


def out_console() -> Console:
    """stdout; wide when piped (rich would otherwise squeeze tables into 80 columns)."""
    return Console() if sys.stdout.isatty() else Console(width=200)
