"""Command-line overrides: `harness run studies/x.yaml train.lr=1e-3 grid.seed=[0,1,2] grid.model+=[vit@s]`.

Each override is `dotted.key=VALUE` (set) or `dotted.key+=VALUE` (append to a list), the value
parsed as YAML. They are applied in order to the raw study mapping before it is validated, so the
file's own checks and did-you-mean messages apply; an error they cause names the override
(`blame`). Pure functions on dicts (no torch): `spec.load_study` calls them.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from harness.errors import StudyError
from harness.spec.reading import check_size
from harness.spec.train_keys import BUDGET_KEYS  # a layer that sets one of them replaces the others below it

__all__ = ["BUDGET_KEYS", "Override", "apply", "blame", "parse", "parse_all", "resolved_yaml"]


@dataclass(frozen=True)
class Override:
    text: str  # as typed, for messages and the stored study copy
    path: tuple[str, ...]
    value: Any
    append: bool = False

    @property
    def dotted(self) -> str:
        return ".".join(self.path)

    @property
    def where(self) -> str:
        return f"command-line override '{self.text}'"


class _ValueLoader(yaml.SafeLoader):
    """YAML for one value: PyYAML (YAML 1.1) reads `1e-3` as text; on a command line it means 0.001,
    so an exponent without a '.' is a float here too (YAML 1.2 reads it so)."""


_ValueLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$"),
    list("-+.0123456789"),
)


def parse(text: str) -> Override:
    """`key=value` or `key+=value`; a malformed one is one StudyError line."""
    where = f"command-line override '{text}'"
    if "=" not in text:
        raise StudyError("not KEY=VALUE (no '=')", where=where, fix="e.g. train.lr=1e-3 or grid.seed=[0,1,2]")
    key, _, raw = text.partition("=")
    append = key.endswith("+")
    key = (key[:-1] if append else key).strip()
    path = tuple(key.split("."))
    if not key or not all(p.strip() == p and p for p in path):
        raise StudyError(
            f"bad key {key!r}: dotted names without empty parts or spaces",
            where=where,
            fix="e.g. train.lr=1e-3 (section.key=value)",
        )
    if not raw.strip():
        raise StudyError("no value after '='", where=where, fix=f"give one, or write {key}=null to unset it")
    try:
        value = yaml.load(raw, Loader=_ValueLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as e:
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise StudyError(
            f"cannot read the value {raw!r} as YAML: {problem}",
            where=where,
            fix="quote it for the shell, e.g. 'grid.model=[vit@xs, resnet@xs]', or fix its brackets",
        ) from None
    try:
        check_size(value)
    except StudyError as e:
        raise e.at(where) from None
    if path[:1] == ("train",) and len(path) == 2 and isinstance(value, str) and "," in value:
        items = raw.strip().strip("[]")  # `train.lr=1e-3,3e-3`: several values for one training key is a sweep
        raise StudyError(
            f"several values for {key}: one training key takes one value",
            where=where,
            fix=f"sweep it on the grid: 'grid.{path[1]}=[{items}]'",
        )
    return Override(text=text, path=path, value=value, append=append)


def parse_all(texts: Sequence[str]) -> list[Override]:
    return [parse(t) for t in texts]


def apply(raw: dict, overrides: Sequence[Override]) -> dict:
    """A copy of the study mapping with the overrides applied in order (later ones win)."""
    out = copy.deepcopy(raw)
    for o in overrides:
        parent = out
        for i, k in enumerate(o.path[:-1]):
            nxt = parent.get(k)
            if nxt is None:  # missing, or an empty section (`train:`): the override creates it
                nxt = parent[k] = {}
            elif not isinstance(nxt, dict):
                at = ".".join(o.path[: i + 1])
                raise StudyError(
                    f"'{at}' is {_kind(nxt)} in the study, not a section with keys",
                    where=o.where,
                    key=o.dotted,
                    fix=f"set '{at}' itself, e.g. {at}=...",
                )
            parent = nxt
        leaf = o.path[-1]
        if o.append:
            parent[leaf] = _appended(o, parent.get(leaf))
            continue
        if o.path[:1] == ("train",) and len(o.path) == 2 and leaf in BUDGET_KEYS and o.value is not None:
            for b in BUDGET_KEYS:  # the command line is a layer above the file: its budget replaces the file's
                parent.pop(b, None)
        parent[leaf] = copy.deepcopy(o.value)
    return out


def _appended(o: Override, current: Any) -> list:
    new = list(o.value) if isinstance(o.value, list) else [o.value]
    if isinstance(current, list):
        return current + new
    if current is not None and not isinstance(current, dict) and o.path[0] == "grid":
        return [current, *new]  # a grid axis written as one value (`seed: 0`) is a one-value list
    if current is None:
        raise StudyError(
            f"nothing to append to: '{o.dotted}' is not set in the study file",
            where=o.where,
            key=o.dotted,
            fix=f"set the whole list: {o.dotted}=[...]",
        )
    raise StudyError(
        f"'+=' appends to a list, and '{o.dotted}' is {_kind(current)}",
        where=o.where,
        key=o.dotted,
        fix=f"replace it with '=': {o.dotted}=...",
    )


def _kind(v: Any) -> str:
    if isinstance(v, list):
        return "a list"
    if isinstance(v, dict):
        return "a mapping"
    return f"{v!r} (a {type(v).__name__})"


def blame(e: StudyError, overrides: Sequence[Override]) -> StudyError:
    """The same validation error, located at the override that set the key it names (the last one,
    as later overrides win); one that no override touches keeps the file and lists the overrides."""
    if not overrides or e.where.startswith("command-line override"):
        return e
    hit = [o for o in overrides if _touches(o.dotted, e.key)]
    if hit:
        return StudyError(e.what, where=hit[-1].where, key=e.key, fix=e.fix)
    given = " ".join(o.text for o in overrides)
    return StudyError(e.what, where=f"{e.where} with command-line overrides {given}", key=e.key, fix=e.fix)


def _touches(dotted: str, key: str) -> bool:
    """Whether an error at `key` (e.g. 'grid.model[0] x grid.image_size[1]', 'train') is about `dotted`."""
    for part in (p.strip() for p in key.split(" x ")):
        if not part:
            continue
        if part == dotted or part.startswith((dotted + ".", dotted + "[")) or dotted.startswith(part + "."):
            return True
    return False


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True  # a resolved study reads plainly: no &id001 anchors for values that repeat


def _comment(text: str) -> str:
    """Text safe inside a `#` comment: as typed when printable, else a JSON string. A line break (YAML
    also breaks at \x85, U+2028, U+2029: none printable) would end the comment, so `description='x
    tracking: ...'` broke the stored study or added a live key that its re-run obeyed (issue 27)."""
    return text if text.isprintable() else json.dumps(text, ensure_ascii=True)


def resolved_yaml(raw: dict, overrides: Sequence[Override], source: str) -> str:
    """The study as run: the file's mapping with the overrides applied, and a header naming both.
    `harness run` on it expands to the same trials (its comments are not kept: YAML drops them)."""
    head = [
        f"# resolved from {_comment(source)} with command-line overrides:",
        *(f"#   {_comment(o.text)}" for o in overrides),
        "# (the file's own comments are not kept)",
    ]
    body = yaml.dump(apply(raw, overrides), Dumper=_Dumper, sort_keys=False, default_flow_style=None, allow_unicode=True)
    return "\n".join(head) + "\n" + body
