"""The small checks every part of a study uses, carrying where the value was written.

A `Where` holds the study file (or `<study>`, or a command-line override) so a check raises a
StudyError naming it without every signature threading `where=where` through.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from harness.errors import StudyError, did_you_mean


def is_number(v: Any) -> bool:
    """A finite int or float (not a bool, which YAML gives for yes/no)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def as_list(v: Any) -> list:
    return list(v) if isinstance(v, (list, tuple)) else [v]


@dataclass(frozen=True)
class Where:
    """The location errors name: `path` is the file (StudyError.where), keys are dotted paths inside it."""

    path: str

    def error(self, what: str, key: str = "", fix: str = "") -> StudyError:
        return StudyError(what, where=self.path, key=key, fix=fix)

    def at(self, e: StudyError, key: str = "") -> StudyError:
        """An inner error (which knows the problem) located here (which knows the place)."""
        return e.at(self.path, key)

    def positive_int(self, v: Any, key: str) -> None:
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise self.error(f"must be a positive integer, got {v!r}", key, "use a whole number > 0")

    def nonneg_int(self, v: Any, key: str) -> None:
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise self.error(f"must be a non-negative integer, got {v!r}", key, "use a whole number >= 0")

    def keys(self, section: dict, allowed: Iterable[str], prefix: str) -> None:
        """Every key of `section` is one of `allowed` (else: unknown key, with did-you-mean)."""
        allowed = set(allowed)
        for k in section:
            if k not in allowed:
                path = f"{prefix}.{k}" if prefix else str(k)
                raise self.error(f"unknown key '{k}'", path, did_you_mean(str(k), allowed))

    def section(self, raw: dict, key: str, default: dict) -> dict:
        """A copy of the mapping at `key` (`default` when absent or empty)."""
        value = raw.get(key, default)
        if value is None:
            value = default
        if not isinstance(value, dict):
            raise self.error(f"'{key}' must be a mapping, got {type(value).__name__}", key, f"write it as '{key}: {{...}}'")
        return copy.deepcopy(value)

    def merged(self, raw: dict, key: str, defaults: dict) -> dict:
        """The section at `key` over its defaults; a key the defaults lack is a typo."""
        section = self.section(raw, key, {})
        self.keys(section, defaults, key)
        return {**defaults, **section}
