"""User-facing input errors: one line naming the file, the key, what is wrong and the fix.

The CLI turns a `StudyError` into that line on stderr and exit code 2, before anything is
written. Everything else (a bug, a failing trial) is not a `StudyError`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class StudyError(ValueError):
    """Bad user input. `where` is the file, `key` the dotted key path inside it."""

    def __init__(self, what: str, *, where: str = "", key: str = "", fix: str = "") -> None:
        self.what, self.where, self.key, self.fix = what, where, key, fix
        super().__init__(self.line())

    def line(self) -> str:
        loc = ": ".join(p for p in (self.where, self.key) if p)
        msg = f"{loc}: {self.what}" if loc else self.what
        return f"{msg} — {self.fix}" if self.fix else msg

    def at(self, where: str = "", key: str = "") -> StudyError:
        """The same error, located (inner code knows the problem, outer code the place)."""
        return StudyError(self.what, where=where or self.where, key=key or self.key, fix=self.fix)


def did_you_mean(word: str, choices: Iterable[str], n: int = 3) -> str:
    """'did you mean vit@xs?' followed by the valid names (lm-evaluation-harness style)."""
    choices = sorted(set(choices))
    close = difflib.get_close_matches(word, choices, n=n, cutoff=0.5)
    known = ", ".join(choices) if len(choices) <= 24 else ", ".join(choices[:24]) + ", ..."
    if close:
        return f"did you mean {' or '.join(close)}? (known: {known})"
    return f"use one of: {known}"
